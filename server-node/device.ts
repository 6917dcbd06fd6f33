/**
 * wslis device SDK, Node entry (`import { dialAndListen } from "wslis"` under Node): the same API as the
 * browser build, with `ws` as the default WebSocket, real upgrade headers, and the refusal status of a
 * failed handshake (401/403 stop reconnection).
 */

import WebSocket from "ws";
import { dialAndListen as dial, listen as listenOn, type DialOptions, type Listener, type Platform } from "../src/client.js";
import type { WebSocketLike } from "../src/transport.js";
import { budgetReads, nodeClock, nodeTransportOptions } from "./node-transport.js";

export const nodePlatform: Platform = {
  WebSocket: WebSocket as unknown as Platform["WebSocket"],
  canSendHeaders: true,
  transportOptions: nodeTransportOptions,
  clock: nodeClock,
  open(Ctor, url, protocols, headers, refused, limits) {
    // The largest message the session's windows let a peer send; `ws`'s own default is 100 MiB.
    const options: Record<string, unknown> = { maxPayload: limits.maxPayload };
    if (headers) options.headers = Object.fromEntries(headers);
    const ws = new Ctor(url, protocols, options);
    if (ws instanceof WebSocket) {
      // Once `ws` has the socket (it emits open from setSocket): a 'data' listener added before its own
      // would make the socket flow, and the bytes that came with the 101 (unshifted by setSocket) would
      // be emitted to this listener alone.
      ws.on("upgrade", (response) => ws.once("open", () => budgetReads(response.socket, ws)));
      ws.on("unexpected-response", (_request, response) => {
        response.destroy();
        refused(response.statusCode ?? 0); // openWebSocket() rejects with the status and closes `ws`
      });
    }
    return ws as WebSocketLike;
  },
};

/** {@inheritDoc dialAndListen} */
export function dialAndListen(url: string | URL, options: DialOptions = {}): Promise<Listener> {
  return dial(url, options, nodePlatform);
}

/** {@inheritDoc listen} */
export function listen(url: string | URL, options: DialOptions = {}): Listener {
  return listenOn(url, options, nodePlatform);
}

export * from "../src/index.js";

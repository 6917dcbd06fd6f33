/**
 * The serving side of node-to-node requests: another node opens a stream to a device connected here (a
 * forwarded dial, which also carries that node's fetches to the device), and this node relays its bytes.
 * Everything is refused without the cluster secret (401, before any byte reaches a device), and a dial
 * for a connection generation this node does not hold (replaced, gone) is answered
 * `ERR_DEVICE_NOT_FOUND`, never sent to another connection of that device.
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { DeviceNotFoundError } from "../../src/errors.js";
import type { Dialer } from "../dialer.js";
import { refuseUpgrade } from "../upgrade.js";
import { bearerSecret, secretDigest, secretMatches, toWire, UPGRADE_TOKEN } from "./wire.js";
import { streamIO, type Conn, type StreamIO } from "../../src/yamux/stream.js";
import type { FleetConn } from "./fleet.js";
import { abortTunnel, tunnel, tunnelIO } from "./tunnel.js";

export interface NodeEndpointOptions {
  node: string;
  secret: string;
  /** The reserved path prefix ("/.wslis/node"). */
  path: string;
  /** The local connection of a device, if it has this generation. */
  localDevice(id: string, generation: number): Dialer | undefined;
  /** A forwarded dial's stream pings the calling node after this long without a word from it, in ms; 0: never. */
  keepAliveInterval: number;
  /** How long such a ping may go unanswered before that node is gone, in ms. */
  keepAliveTimeout: number;
}

export class NodeEndpoint {
  readonly #options: NodeEndpointOptions;
  readonly #secretDigest: Buffer;

  constructor(options: NodeEndpointOptions) {
    this.#options = options;
    this.#secretDigest = secretDigest(options.secret);
  }

  /** Whether a request is node-to-node (under the reserved path). */
  owns(request: IncomingMessage): boolean {
    const path = pathOf(request);
    return path === this.#options.path || path.startsWith(`${this.#options.path}/`);
  }

  #authorized(request: IncomingMessage): boolean {
    return secretMatches(bearerSecret(request.headers.authorization), this.#secretDigest);
  }

  /**
   * A plain request under the reserved path: node-to-node calls are upgrades (see handleUpgrade), so it
   * is refused: 401 without the secret, else 426 (or 404 for a path that is not ours).
   */
  handleRequest(request: IncomingMessage, response: ServerResponse): void {
    const plain = (status: number, text: string, headers: Record<string, string> = {}) => {
      response.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", Connection: "close", ...headers }).end(`${text}\n`);
      request.resume();
    };
    if (!this.#authorized(request)) return plain(401, "node-to-node requests need the cluster secret");
    if (pathOf(request) !== `${this.#options.path}/dial`) return plain(404, "not found");
    plain(426, "node-to-node streams are upgrades", { Upgrade: UPGRADE_TOKEN });
  }

  /** Serves a forwarded dial (an upgrade to `<path>/dial`). */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const refuse = (status: number, body: string, type?: string) => refuseUpgrade(socket, status, body, type);
    if (!this.#authorized(request)) return refuse(401, "node-to-node requests need the cluster secret\n");
    if (pathOf(request) !== `${this.#options.path}/dial` || request.headers.upgrade?.toLowerCase() !== UPGRADE_TOKEN) {
      return refuse(404, "not found\n");
    }
    let id: string;
    try {
      id = decodeURIComponent(String(request.headers["x-wslis-device"] ?? ""));
    } catch {
      return refuse(404, "not found\n");
    }
    const generation = Number(request.headers["x-wslis-generation"]);
    const timeout = Number(request.headers["x-wslis-timeout"]);
    const dialer = this.#options.localDevice(id, generation);
    const fail = (error: unknown) =>
      refuse(error instanceof DeviceNotFoundError ? 404 : 502, JSON.stringify({ error: toWire(error) }), "application/json");
    if (!dialer) {
      return fail(new DeviceNotFoundError(id, `device ${JSON.stringify(id)} (generation ${generation}) is not connected to node ${this.#options.node}`));
    }
    const gone = new AbortController();
    const onClose = () => gone.abort(new DOMException("the calling node went away", "AbortError"));
    socket.once("close", onClose);
    dialer
      .dial({ signal: gone.signal, ...(Number.isFinite(timeout) && timeout > 0 ? { timeout } : {}) })
      .then((stream) => {
        socket.off("close", onClose);
        if (socket.destroyed) return stream.reset();
        socket.write(
          `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${UPGRADE_TOKEN}\r\nX-Wslis-Stream-Id: ${stream.streamID}\r\n\r\n`,
        );
        const conn = tunnel(socket, {
          streamID: stream.streamID,
          id,
          peer: "the calling node",
          head,
          keepAliveInterval: this.#options.keepAliveInterval,
          keepAliveTimeout: this.#options.keepAliveTimeout,
        });
        relay(stream, conn);
      }, fail);
  }
}

function pathOf(request: IncomingMessage): string {
  const url = request.url ?? "/";
  const query = url.indexOf("?");
  return query < 0 ? url : url.slice(0, query);
}

/**
 * Moves bytes both ways between a device's stream and the calling node's tunnel, straight from queue to
 * socket (no web streams: a reader, a writer and promises per chunk would cost a relay more than its
 * bytes). An end is a FIN on the other side, an error a reset: the device's reason goes to the calling
 * node in the tunnel's Reset, and a tunnel that fails (the calling node reset it or went away) resets the
 * device's stream, whose request then sees its signal abort.
 */
function relay(stream: Conn, conn: FleetConn): void {
  const device = streamIO(stream);
  const node = tunnelIO(conn);
  if (!device || !node) {
    void stream.readable.pipeTo(conn.writable).catch(() => {});
    void conn.readable.pipeTo(stream.writable).catch(() => {});
    return;
  }
  // A tunnel that failed (reset, or the calling node gone) is seen by the pump reading it, which resets
  // the device's stream; a device stream that failed is seen by the pump reading it, which tells the node.
  void pump(device, node, (error) => abortTunnel(conn, error), () => device.cancel());
  void pump(node, device, () => stream.reset(), () => node.cancel());
}

/** Moves `from`'s bytes to `to` until `from` ends (then `to` sends its FIN) or either side fails. */
async function pump(from: StreamIO, to: StreamIO, readFailed: (error: unknown) => void, writeFailed: () => void): Promise<void> {
  for (;;) {
    let chunk: Uint8Array | null;
    try {
      chunk = await from.read();
    } catch (error) {
      readFailed(error);
      return;
    }
    try {
      if (chunk === null) return await to.close();
      await to.write(chunk);
    } catch {
      writeFailed();
      return;
    }
  }
}

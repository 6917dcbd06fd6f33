/**
 * The serving side of node-to-node requests: another node forwards a fetch or a dial for a device
 * connected here. Everything is refused without the cluster secret (401, before any byte reaches a
 * device), and a request for a connection generation this node does not hold (replaced, gone) is
 * answered `ERR_DEVICE_NOT_FOUND`, never sent to another connection of that device.
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import type { Duplex } from "node:stream";
import { DeviceNotFoundError } from "../../src/errors.js";
import type { Dialer } from "../dialer.js";
import type { ServerLogger } from "../server.js";
import { refuseUpgrade } from "../upgrade.js";
import { bearerSecret, discard, encodeHead, readHead, secretMatches, socketConn, toWire, UPGRADE_TOKEN, type RequestHead } from "./wire.js";

export interface NodeEndpointOptions {
  node: string;
  secret: string;
  /** The reserved path prefix ("/.wslis/node"). */
  path: string;
  /** The local connection of a device, if it has this generation. */
  localDevice(id: string, generation: number): Dialer | undefined;
  logger: ServerLogger;
}

export class NodeEndpoint {
  readonly #options: NodeEndpointOptions;

  constructor(options: NodeEndpointOptions) {
    this.#options = options;
  }

  /** Whether a request is node-to-node (under the reserved path). */
  owns(request: IncomingMessage): boolean {
    const path = pathOf(request);
    return path === this.#options.path || path.startsWith(`${this.#options.path}/`);
  }

  #authorized(request: IncomingMessage): boolean {
    return secretMatches(bearerSecret(request.headers.authorization), this.#options.secret);
  }

  /** Serves a forwarded fetch (`POST <path>/fetch`). */
  handleRequest(request: IncomingMessage, response: ServerResponse): void {
    const plain = (status: number, text: string) => {
      response.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", Connection: "close" }).end(`${text}\n`);
      request.resume();
    };
    if (!this.#authorized(request)) return plain(401, "node-to-node requests need the cluster secret");
    if (pathOf(request) !== `${this.#options.path}/fetch`) return plain(404, "not found");
    if (request.method !== "POST") return plain(405, "method not allowed");
    this.#fetch(request, response).catch((error: unknown) => {
      this.#options.logger.warn(`wslis: forwarded fetch failed on node ${this.#options.node}: ${(error as Error).message}`);
      response.destroy();
    });
  }

  async #fetch(request: IncomingMessage, response: ServerResponse): Promise<void> {
    // When the calling node goes away (or aborts), so does the request to the device.
    const gone = new AbortController();
    response.on("close", () => {
      if (!response.writableFinished) gone.abort(new DOMException("the calling node went away", "AbortError"));
    });
    const answer = (head: unknown) => {
      response.writeHead(200, { "Content-Type": "application/octet-stream" });
      response.write(encodeHead(head));
    };
    const incoming = (Readable.toWeb(request) as ReadableStream<Uint8Array>).getReader();
    const { head, rest } = await readHead<RequestHead>(incoming);
    const dialer = typeof head.id === "string" && Number.isFinite(head.generation) ? this.#options.localDevice(head.id, head.generation) : undefined;
    if (!dialer) {
      answer({ error: toWire(new DeviceNotFoundError(String(head.id), `device ${JSON.stringify(head.id)} (generation ${head.generation}) is not connected to node ${this.#options.node}`)) });
      response.end();
      void discard(rest);
      return;
    }
    // Without a body the rest is just the message's end: read it, or the connection cannot serve another request.
    if (!head.body) void discard(rest);
    let res: Response;
    try {
      res = await dialer.fetch(head.url, {
        method: head.method,
        headers: head.headers,
        ...(head.body ? { body: rest, duplex: "half" } : {}),
        timeout: head.timeout,
        signal: gone.signal,
      } as RequestInit);
    } catch (error) {
      if (response.destroyed) return;
      answer({ error: toWire(error) });
      response.end();
      if (head.body) void discard(rest);
      return;
    }
    answer({ status: res.status, statusText: res.statusText, headers: [...res.headers] });
    if (!res.body) {
      response.end();
      return;
    }
    const body = Readable.fromWeb(res.body as import("node:stream/web").ReadableStream<Uint8Array>);
    body.on("error", () => response.destroy());
    body.pipe(response);
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
        const conn = socketConn(socket, stream.streamID, head);
        // Both directions; an end is a FIN, an error a reset, on either side.
        void stream.readable.pipeTo(conn.writable).catch(() => {});
        void conn.readable.pipeTo(stream.writable).catch(() => {});
      }, fail);
  }
}

function pathOf(request: IncomingMessage): string {
  const url = request.url ?? "/";
  const query = url.indexOf("?");
  return query < 0 ? url : url.slice(0, query);
}

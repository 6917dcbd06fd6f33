/**
 * The serving side of node-to-node requests: another node forwards a fetch or a dial for a device
 * connected here. Everything is refused without the cluster secret (401, before any byte reaches a
 * device), and a request for a connection generation this node does not hold (replaced, gone) is
 * answered `ERR_DEVICE_NOT_FOUND`, never sent to another connection of that device.
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex, Readable } from "node:stream";
import { DeviceNotFoundError, HttpError } from "../../src/errors.js";
import type { Dialer } from "../dialer.js";
import { fetchAnswer, type Answer, type FetchInit } from "../http.js";
import type { ServerLogger } from "../server.js";
import { refuseUpgrade } from "../upgrade.js";
import {
  bearerSecret,
  encodeHead,
  ERROR_TRAILER,
  HeadReader,
  secretDigest,
  secretMatches,
  toWire,
  UPGRADE_TOKEN,
  type RequestHead,
} from "./wire.js";
import { tunnel } from "./tunnel.js";

export interface NodeEndpointOptions {
  node: string;
  secret: string;
  /** The reserved path prefix ("/.wslis/node"). */
  path: string;
  /** The local connection of a device, if it has this generation. */
  localDevice(id: string, generation: number): Dialer | undefined;
  logger: ServerLogger;
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

  /** Serves a forwarded fetch (`POST <path>/fetch`). */
  handleRequest(request: IncomingMessage, response: ServerResponse): void {
    const plain = (status: number, text: string) => {
      response.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", Connection: "close" }).end(`${text}\n`);
      request.resume();
    };
    if (!this.#authorized(request)) return plain(401, "node-to-node requests need the cluster secret");
    if (pathOf(request) !== `${this.#options.path}/fetch`) return plain(404, "not found");
    if (request.method !== "POST") return plain(405, "method not allowed");
    // The head, read off the message's chunks as they come (no web-stream adapter: see peer.ts).
    const heads = new HeadReader<RequestHead>();
    const length = Number(request.headers["content-length"] ?? NaN);
    let received = 0;
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      let got: { head: RequestHead; rest: Buffer } | undefined;
      try {
        got = heads.push(chunk);
      } catch (error) {
        stop();
        return this.#answerError(request, response, error);
      }
      if (!got) return;
      stop();
      // All of the message is here when its length says so: a small body goes on as bytes, not as a stream.
      this.#fetch(request, response, got.head, got.rest, received === length).catch((error: unknown) => {
        this.#options.logger.warn(`wslis: forwarded fetch failed on node ${this.#options.node}: ${(error as Error).message}`);
        response.destroy();
      });
    };
    const onEnd = () => {
      stop();
      this.#answerError(request, response, new HttpError("the node-to-node message ended inside its head"));
    };
    const stop = () => {
      request.off("data", onData);
      request.off("end", onEnd);
      request.pause();
    };
    request.on("data", onData);
    request.on("end", onEnd);
  }

  #answerError(request: IncomingMessage, response: ServerResponse, error: unknown): void {
    if (response.destroyed) return;
    response.writeHead(200, { "Content-Type": "application/octet-stream" });
    response.end(encodeHead({ error: toWire(error) }));
    // Read (and drop) what is left of the request, so the connection serves the next one.
    request.resume();
  }

  async #fetch(request: IncomingMessage, response: ServerResponse, head: RequestHead, rest: Buffer, complete: boolean): Promise<void> {
    const dialer = typeof head.id === "string" && Number.isFinite(head.generation) ? this.#options.localDevice(head.id, head.generation) : undefined;
    if (!dialer) {
      return this.#answerError(
        request,
        response,
        new DeviceNotFoundError(String(head.id), `device ${JSON.stringify(head.id)} (generation ${head.generation}) is not connected to node ${this.#options.node}`),
      );
    }
    let body: Uint8Array | ReadableStream<Uint8Array> | undefined;
    if (!head.body) request.resume();
    else if (complete) {
      body = rest;
      request.resume();
    } else body = requestBody(request, rest);
    const call = fetchAnswer(dialer, head.url, {
      method: head.method,
      // None (a plain GET): no Headers to build.
      ...(Array.isArray(head.headers) && head.headers.length === 0 ? {} : { headers: head.headers }),
      ...(body === undefined ? {} : { body, duplex: "half" }),
      timeout: head.timeout,
      ...(typeof head.bodyTimeout === "number" ? { bodyTimeout: head.bodyTimeout } : {}),
    } as FetchInit);
    // When the calling node goes away (or aborts), so does the request to the device.
    response.once("close", () => {
      if (!response.writableFinished) call.abort(new DOMException("the calling node went away", "AbortError"));
    });
    let res: Answer;
    try {
      res = await call.answer;
    } catch (error) {
      return this.#answerError(request, response, error);
    }
    if (response.destroyed) {
      await res.body?.cancel().catch(() => {});
      return;
    }
    const answer = encodeHead({ status: res.status, statusText: res.statusText, headers: res.fields });
    const whole = res.whole;
    if (whole !== undefined) {
      // The device's body came whole with its head (the usual small answer): it goes on with our head in
      // one write, with a Content-Length. Nothing can fail after it, so no chunked framing and no trailer,
      // and the calling node hands it over whole too.
      response.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": answer.length + whole.length });
      response.end(whole.length === 0 ? answer : Buffer.concat([answer, whole]));
      return;
    }
    response.writeHead(200, { "Content-Type": "application/octet-stream", Trailer: ERROR_TRAILER });
    // Node corks the socket for the rest of this tick: a body already here goes out with the head.
    response.write(answer);
    const reader = res.body!.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (response.destroyed) throw new DOMException("the calling node went away", "AbortError");
        if (!response.write(value)) await drained(response);
      }
    } catch (error) {
      if (response.destroyed) {
        reader.cancel().catch(() => {});
        return;
      }
      // The device's body failed part way: end the answer with the error, as the caller's fetch should see it.
      response.addTrailers({ [ERROR_TRAILER]: encodeURIComponent(JSON.stringify(toWire(error))) });
    }
    response.end();
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

/** Resolves when `response` can take more, or is gone. */
function drained(response: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      response.off("drain", done);
      response.off("close", done);
      resolve();
    };
    response.on("drain", done);
    response.on("close", done);
  });
}

/**
 * The rest of a forwarded request as the device request's body: the bytes that came with the head, then
 * the message's, read as the device takes them. If the device stops reading (it answered early), the rest
 * is read and dropped, so the node-to-node connection serves the next request.
 */
function requestBody(message: Readable, first: Buffer): ReadableStream<Uint8Array> {
  let ended = false;
  let cancelled = false;
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        if (first.length > 0) controller.enqueue(first);
        message.on("data", (chunk: Buffer) => {
          if (cancelled) return;
          controller.enqueue(chunk);
          if ((controller.desiredSize ?? 0) <= 0) message.pause();
        });
        message.on("end", () => {
          ended = true;
          if (!cancelled) controller.close();
        });
        message.on("error", (error) => {
          if (!cancelled && !ended) controller.error(error);
        });
        message.on("close", () => {
          if (!cancelled && !ended) controller.error(new DOMException("the calling node went away", "AbortError"));
          ended = true;
        });
        message.resume();
      },
      pull() {
        message.resume();
      },
      cancel() {
        cancelled = true;
        message.resume();
      },
    },
    { highWaterMark: 64 * 1024, size: (chunk) => chunk.byteLength },
  );
}

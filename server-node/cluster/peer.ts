/**
 * Calls to devices on other nodes, through their node: one hop, straight to the owning node's
 * `advertise` URL. Fetches share pooled keep-alive connections (an undici Agent); a dial is an HTTP
 * upgrade whose connection then carries the stream in frames (tunnel.ts). Each request names the device's
 * fencing generation, so the owning node refuses it when that connection was replaced meanwhile.
 */

import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import { createRequire } from "node:module";
import type { Agent, Dispatcher } from "undici";
import { deadline } from "../../src/deadline.js";
import { ClusterUnavailableError, HttpError, TimeoutError } from "../../src/errors.js";
import { msOption } from "../../src/options.js";
import type { DialOptions } from "../dialer.js";
import { encodeSimpleBody, isSimpleBody, normalizeMethod, wholeBody, type FetchInit } from "../http.js";
import type { Placement } from "./directory.js";
import type { FleetConn, Peers } from "./fleet.js";
import { tunnel } from "./tunnel.js";
import {
  bearer,
  encodeHead,
  ERROR_TRAILER,
  fromWire,
  HeadReader,
  UPGRADE_TOKEN,
  type RequestHead,
  type ResponseHead,
  type WireError,
} from "./wire.js";

/** undici, loaded on first use: a server without `cluster` never loads it. */
const undici = (): typeof import("undici") => createRequire(import.meta.url)("undici");

export interface PeerClientOptions {
  secret: string;
  /** The path prefix nodes serve node-to-node requests under. */
  path: string;
  /** Default `timeout` of a forwarded fetch (ms until the response head). */
  fetchTimeout: number;
  /** Default `bodyTimeout` of a forwarded fetch (ms of waiting for the next body bytes). */
  bodyTimeout: number;
  /** Default `timeout` of a forwarded dial, in ms. */
  dialTimeout: number;
  /** How long an idle node-to-node connection is kept, in ms. */
  idleTimeout: number;
  /** A forwarded dial's stream pings its node after this long without a word from it, in ms; 0: never. */
  keepAliveInterval: number;
  /** How long such a ping may go unanswered before the node is gone, in ms. */
  keepAliveTimeout: number;
}

export class PeerClient implements Peers {
  readonly #options: PeerClientOptions;
  readonly #agent: Agent;
  readonly #authorization: string;
  /** origin and `<path>/fetch` of each advertise URL seen. */
  readonly #routes = new Map<string, { origin: string; path: string }>();

  constructor(options: PeerClientOptions) {
    this.#options = options;
    this.#authorization = bearer(options.secret);
    this.#agent = new (undici().Agent)({
      keepAliveTimeout: options.idleTimeout,
      // Bounded by our own timeouts (head, then each body read); bodies stream as long as they need.
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: { timeout: Math.max(1, Math.min(options.fetchTimeout || 10_000, 10_000)) },
    });
  }

  /**
   * `dialer.fetch` of a device on another node, through that node. Rejects as the local one does (the
   * device's errors keep their code across the hop), and with `ERR_CLUSTER_UNAVAILABLE` when the node does
   * not answer or refuses; a body the node cuts off fails with `ERR_CLUSTER_UNAVAILABLE` too.
   */
  fetch(placement: Placement, input: string | URL | Request, init: FetchInit = {}): Promise<Response> {
    let request: Forwarded;
    try {
      request = forwarded(placement, input, init, this.#options);
    } catch (error) {
      return Promise.reject(error);
    }
    if (request.signal?.aborted) return Promise.reject(request.signal.reason);
    let route = this.#routes.get(placement.advertise);
    if (!route) {
      const url = new URL(placement.advertise);
      route = { origin: url.origin, path: `${url.pathname.replace(/\/+$/, "")}${this.#options.path}/fetch` };
      if (this.#routes.size >= 1024) this.#routes.clear();
      this.#routes.set(placement.advertise, route);
    }
    return new ForwardedFetch(this.#agent, route, this.#authorization, placement, request).start();
  }

  dial(placement: Placement, options: DialOptions = {}): Promise<FleetConn> {
    const timeout = options.timeout ?? this.#options.dialTimeout;
    const signal = options.signal;
    signal?.throwIfAborted();
    const url = new URL(placement.advertise);
    const secure = url.protocol === "https:";
    const port = Number(url.port || (secure ? 443 : 80));
    const host = url.hostname.replace(/^\[|\]$/g, "");
    return new Promise<FleetConn>((resolve, reject) => {
      let settled = false;
      const finish = (error: Error | undefined, conn?: FleetConn) => {
        if (settled) return;
        settled = true;
        cancel();
        if (error) {
          req.destroy();
          reject(error);
        } else resolve(conn!);
      };
      const request = secure ? httpsRequest : httpRequest;
      const req = request({
        host,
        port,
        method: "GET",
        path: `${this.#base(placement)}/dial`,
        headers: {
          Connection: "Upgrade",
          Upgrade: UPGRADE_TOKEN,
          Authorization: bearer(this.#options.secret),
          "X-Wslis-Device": encodeURIComponent(placement.id),
          "X-Wslis-Generation": String(placement.generation),
          "X-Wslis-Timeout": String(timeout),
        },
        // Half-open: the tunnel ends each direction with its own frames, not with TCP's FIN.
        createConnection: () =>
          secure ? tlsConnect({ host, port, servername: host, allowHalfOpen: true } as ConnectionOptions) : netConnect({ host, port, allowHalfOpen: true }),
      });
      const cancel = deadline("dial", timeout, signal, finish);
      req.on("upgrade", (res: IncomingMessage, socket, head: Buffer) => {
        const streamID = Number(res.headers["x-wslis-stream-id"] ?? 0);
        if (settled) return void socket.destroy();
        finish(
          undefined,
          tunnel(socket, {
            streamID,
            id: placement.id,
            peer: `node ${placement.node} (${placement.advertise})`,
            head,
            keepAliveInterval: this.#options.keepAliveInterval,
            keepAliveTimeout: this.#options.keepAliveTimeout,
          }),
        );
      });
      req.on("response", (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size <= 64 * 1024) chunks.push(chunk);
        });
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if (res.statusCode === 409 || res.statusCode === 404 || res.statusCode === 504 || res.statusCode === 502) {
            try {
              return finish(fromWire((JSON.parse(text) as { error: WireError }).error, placement.id));
            } catch {
              // not ours: fall through
            }
          }
          finish(refused(placement, res.statusCode ?? 0, text));
        });
        res.on("error", (error) => finish(unreachable(placement, error)));
      });
      req.on("error", (error) => finish(unreachable(placement, error)));
      req.end();
    });
  }

  #base(placement: Placement): string {
    const base = new URL(placement.advertise).pathname.replace(/\/+$/, "");
    return `${base}${this.#options.path}`;
  }

  async close(): Promise<void> {
    await this.#agent.close().catch(() => {});
  }
}

function unreachable(placement: Placement, error: unknown): ClusterUnavailableError {
  const message = error instanceof Error ? error.message : String(error);
  return new ClusterUnavailableError(`node ${placement.node} (${placement.advertise}) did not answer: ${message}`, { cause: error });
}

function refused(placement: Placement, status: number, text: string): ClusterUnavailableError {
  return new ClusterUnavailableError(
    `node ${placement.node} (${placement.advertise}) refused the node-to-node request with HTTP ${status}: ${text.trim().slice(0, 200)}`,
  );
}

/** A request on its way to another node. */
interface Forwarded {
  head: RequestHead;
  /** Bytes (their length known), a stream (chunked), or none. */
  body: Uint8Array | ReadableStream<Uint8Array> | null;
  signal: AbortSignal | undefined;
  /** ms until the answer's head; 0: none. */
  timeout: number;
  /** ms of waiting for the next body bytes; 0: none. */
  bodyTimeout: number;
}

const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);
/** Bodies up to this size travel in the same write as the head. */
const COALESCE_BYTES = 64 * 1024;
/** How much of a forwarded body waits here for the caller before the node is asked to pause, in bytes. */
const BODY_BUFFER_BYTES = 256 * 1024;

/**
 * The request's parts from fetch's arguments, checked as a local fetch checks them (TypeError). Common
 * bodies (none, a string, bytes, URLSearchParams, a stream) are taken as they are, without a `Request`
 * (which costs an AbortSignal and a stream each); anything else goes through one. Bytes get their
 * Content-Length (and a string its Content-Type) here, so the device sees the framing a local fetch sends.
 */
function forwarded(placement: Placement, input: string | URL | Request, init: FetchInit, defaults: PeerClientOptions): Forwarded {
  const { timeout = defaults.fetchTimeout, bodyTimeout = defaults.bodyTimeout, signal: _signal, ...rest } = init;
  msOption("timeout", timeout, 0);
  msOption("bodyTimeout", bodyTimeout, 0);
  const signal = init.signal ?? (input instanceof Request ? input.signal : undefined) ?? undefined;
  let method: string;
  let url: string;
  let headers: [string, string][];
  let body: unknown = init.body ?? null;
  let contentType: string | undefined;
  if (!(input instanceof Request) && isSimpleBody(body)) {
    const parsed = input instanceof URL ? input : new URL(input);
    if (parsed.username || parsed.password) throw new TypeError("fetch: a URL with credentials is not allowed");
    url = parsed.href;
    method = normalizeMethod(init.method ?? "GET");
    headers = init.headers === undefined ? [] : [...new Headers(init.headers)];
    ({ body, contentType } = encodeSimpleBody(body, method));
  } else {
    const request = new Request(input, { ...rest, ...(rest.body ? { duplex: "half" } : {}) } as RequestInit);
    url = request.url;
    method = request.method;
    headers = [...request.headers];
    body = request.body;
  }
  const protocol = url.slice(0, url.indexOf(":") + 1);
  if (protocol !== "http:" && protocol !== "https:") throw new TypeError(`fetch: URL scheme "${protocol.slice(0, -1)}" is not supported`);
  if (contentType !== undefined && !headers.some(([name]) => name === "content-type")) headers.push(["content-type", contentType]);
  if (body instanceof Uint8Array) {
    headers = headers.filter(([name]) => name !== "content-length");
    headers.push(["content-length", String(body.length)]);
  }
  const head: RequestHead = { id: placement.id, generation: placement.generation, method, url, headers, timeout, bodyTimeout, body: body !== null };
  return { head, body: body as Forwarded["body"], signal, timeout, bodyTimeout };
}

/**
 * One forwarded fetch, from the request to the end of the answer's body, as an undici dispatch handler:
 * no Node stream and no web-stream adapter between the socket and the caller, whose body is the one
 * stream made (each web stream costs tens of µs to make; a hop should cost little more than its round
 * trip). The owning node answers 200 with a head (the device's status and headers, or an error), then
 * the device's body, then, if that body failed part way, the error in the `x-wslis-error` trailer.
 *
 *     waiting for the head --(head)--> reading the body --(end)--> done
 *             |                              |
 *             +---(fail: abort, timeout, error head or trailer, node gone)--> failed
 *
 * An error answered in the head leaves the node-to-node connection reusable (its rest is read and
 * dropped); an abort, a timeout or a cancelled body aborts the request, which closes it.
 */
class ForwardedFetch implements Dispatcher.DispatchHandler {
  readonly #agent: Agent;
  readonly #route: { origin: string; path: string };
  readonly #authorization: string;
  readonly #placement: Placement;
  readonly #request: Forwarded;
  #state: "head" | "body" | "done" | "failed" = "head";
  #resolve!: (response: Response) => void;
  #reject!: (error: unknown) => void;
  /** undici's handle on the request, once it started. */
  #dispatch: Dispatcher.DispatchController | undefined;
  /** Why to abort the request as soon as it starts (it failed before). */
  #abortOnStart: Error | undefined;
  #body: ReadableStreamDefaultController<Uint8Array> | undefined;
  readonly #heads = new HeadReader<ResponseHead>();
  #status = 0;
  /** The answer's Content-Length (a body that came whole on the owning node), if it has one. */
  #length: number | undefined;
  /** Bytes of the answer received while its head was read. */
  #received = 0;
  /** A refusal's text (bounded). */
  #refusal = "";
  #timer: ReturnType<typeof setTimeout> | undefined;
  #uploadReader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  /** The caller's request body failed: that, not the node, is why the request broke. */
  #uploadError: unknown;

  constructor(agent: Agent, route: { origin: string; path: string }, authorization: string, placement: Placement, request: Forwarded) {
    this.#agent = agent;
    this.#route = route;
    this.#authorization = authorization;
    this.#placement = placement;
    this.#request = request;
  }

  start(): Promise<Response> {
    const promise = new Promise<Response>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    const { timeout, signal, body } = this.#request;
    if (timeout > 0) this.#timer = setTimeout(() => this.#fail(new TimeoutError("fetch", timeout)), timeout);
    signal?.addEventListener("abort", this.#onAbort);
    const head = encodeHead(this.#request.head);
    const headers: Record<string, string> = { authorization: this.#authorization, "content-type": "application/octet-stream" };
    let payload: Buffer | AsyncIterable<Uint8Array>;
    if (body === null) payload = head;
    else if (body instanceof Uint8Array) {
      headers["content-length"] = String(head.length + body.length);
      payload = body.length <= COALESCE_BYTES ? Buffer.concat([head, body]) : this.#upload(head, body);
    } else payload = this.#upload(head, body);
    try {
      // undici takes an async iterable body, though its types do not say so.
      this.#agent.dispatch({ origin: this.#route.origin, path: this.#route.path, method: "POST", headers, body: payload as Buffer }, this);
    } catch (error) {
      this.#fail(unreachable(this.#placement, error), false);
    }
    return promise;
  }

  /** The head, then the body (bytes, or the caller's stream read as the node takes it). */
  async *#upload(head: Uint8Array, body: Uint8Array | ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
    yield head;
    if (body instanceof Uint8Array) {
      yield body;
      return;
    }
    const reader = body.getReader();
    this.#uploadReader = reader;
    for (;;) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
        if (!next.done && !(next.value instanceof Uint8Array)) throw new TypeError("a request body chunk must be a Uint8Array");
      } catch (error) {
        this.#uploadError = error;
        throw error;
      }
      if (next.done) return;
      if (next.value.length > 0) yield next.value;
    }
  }

  readonly #onAbort = (): void => {
    this.#fail(this.#request.signal!.reason);
  };

  /** Stops the fetch with `reason`: it rejects, or its body errors; `abort` also aborts the request. */
  #fail(reason: unknown, abort = true): void {
    if (this.#state === "done" || this.#state === "failed") return;
    const state = this.#state;
    this.#state = "failed";
    this.#cleanUp();
    if (state === "head") this.#reject(reason);
    else {
      try {
        this.#body!.error(reason);
      } catch {
        // cancelled by the caller: nothing to tell
      }
    }
    this.#uploadReader?.cancel(reason).catch(() => {});
    if (!abort) return;
    const error = reason instanceof Error ? reason : new Error("the forwarded fetch was abandoned");
    if (this.#dispatch) this.#dispatch.abort(error);
    else this.#abortOnStart = error;
  }

  #cleanUp(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#request.signal?.removeEventListener("abort", this.#onAbort);
  }

  /** Re-arms the body timer: the node sent nothing for `bodyTimeout` while we were reading. */
  #armBodyTimer(): void {
    const ms = this.#request.bodyTimeout;
    if (ms === 0 || this.#state !== "body") return;
    if (this.#timer) this.#timer.refresh();
    else {
      this.#timer = setTimeout(() => this.#fail(new TimeoutError("response body", ms)), ms);
      this.#timer.unref();
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#dispatch = controller;
    if (this.#abortOnStart) controller.abort(this.#abortOnStart);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    this.#status = statusCode;
    const length = headers["content-length"];
    if (typeof length === "string") this.#length = Number(length);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#status !== 200) {
      if (this.#refusal.length < 4096) this.#refusal += chunk.toString("utf8", 0, Math.min(chunk.length, 4096));
      return;
    }
    if (this.#state === "head") {
      this.#received += chunk.length;
      let got: { head: ResponseHead; rest: Buffer } | undefined;
      try {
        got = this.#heads.push(chunk);
      } catch (error) {
        this.#fail(error);
        return;
      }
      if (got) this.#answer(controller, got.head, got.rest);
      return;
    }
    if (this.#state !== "body") return; // the rest of an error answer, or of a body the caller left: dropped
    this.#enqueue(controller, chunk);
  }

  #answer(controller: Dispatcher.DispatchController, head: ResponseHead, rest: Buffer): void {
    if ("error" in head) {
      // Nothing else comes: the connection stays for the next request.
      this.#fail(fromWire(head.error, this.#placement.id), false);
      return;
    }
    const { status, statusText, headers } = head;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (NULL_BODY_STATUS.has(status) || this.#request.head.method === "HEAD") {
      const response = this.#response(null, status, statusText, headers);
      if (!response) return;
      this.#state = "done";
      this.#cleanUp();
      this.#resolve(response);
      return;
    }
    if (this.#received === this.#length) {
      // The whole answer is here (the owning node sends a body that came whole in one write, with its
      // length): handed over as a local fetch hands such a body, with no pulls and no body timer.
      const response = this.#response(wholeBody(rest), status, statusText, headers);
      if (!response) return;
      this.#state = "done";
      this.#cleanUp();
      this.#resolve(response);
      return;
    }
    const stream = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          this.#body = c;
        },
        pull: () => {
          if (this.#dispatch?.paused) {
            this.#armBodyTimer();
            this.#dispatch.resume();
          }
        },
        cancel: () => this.#fail(undefined),
      },
      { highWaterMark: BODY_BUFFER_BYTES, size: (chunk) => chunk.byteLength },
    );
    const response = this.#response(stream, status, statusText, headers);
    if (!response) return;
    this.#state = "body";
    this.#resolve(response);
    this.#armBodyTimer();
    if (rest.length > 0) this.#enqueue(controller, rest);
  }

  /**
   * The caller's Response, built here from the device's fields as a local fetch builds it there; a status
   * or field a Response refuses fails the fetch as it fails a local one (ERR_HTTP).
   */
  #response(body: ReadableStream<Uint8Array> | null, status: number, statusText: string, headers: [string, string][]): Response | undefined {
    try {
      return new Response(body, { status, statusText, headers });
    } catch (error) {
      this.#fail(new HttpError(`reverse HTTP request to the device failed: ${(error as Error).message}`, { cause: error }));
      return undefined;
    }
  }

  #enqueue(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const body = this.#body!;
    body.enqueue(chunk);
    if ((body.desiredSize ?? 0) <= 0) {
      // The caller is behind: stop reading the node until it pulls (TCP holds the node back, and the
      // device behind it by its window). Time spent so does not count against bodyTimeout.
      clearTimeout(this.#timer);
      this.#timer = undefined;
      controller.pause();
    } else this.#armBodyTimer();
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    if (this.#status !== 200) {
      this.#fail(refused(this.#placement, this.#status, this.#refusal), false);
      return;
    }
    if (this.#state === "head") {
      this.#fail(new ClusterUnavailableError(`node ${this.#placement.node} (${this.#placement.advertise}) ended its answer inside the head`), false);
      return;
    }
    if (this.#state !== "body") return;
    const error = trailers[ERROR_TRAILER];
    if (typeof error === "string") {
      let wire: WireError;
      try {
        wire = JSON.parse(decodeURIComponent(error)) as WireError;
      } catch {
        wire = { code: "ERR_HTTP", message: "the device's response body failed" };
      }
      this.#fail(fromWire(wire, this.#placement.id), false);
      return;
    }
    this.#state = "done";
    this.#cleanUp();
    this.#body!.close();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#state === "done" || this.#state === "failed") return;
    if (this.#uploadError !== undefined) {
      // As a local fetch says it: the caller's body broke the request.
      const detail = this.#uploadError instanceof Error ? this.#uploadError.message : String(this.#uploadError);
      this.#fail(new HttpError(`reverse HTTP request to the device failed: ${detail}`, { cause: this.#uploadError }), false);
      return;
    }
    if (this.#state === "head") this.#fail(unreachable(this.#placement, error), false);
    else {
      // The node (or the network) cut the answer off: its device may be fine, the node is not.
      this.#fail(
        new ClusterUnavailableError(`node ${this.#placement.node} (${this.#placement.advertise}) cut off the response body: ${error.message}`, { cause: error }),
        false,
      );
    }
  }
}

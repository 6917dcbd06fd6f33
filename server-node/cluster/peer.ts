/**
 * Calls to devices on other nodes, through their node: one hop, straight to the owning node's
 * `advertise` URL. Fetches share pooled keep-alive connections (an undici Agent); a dial is an HTTP
 * upgrade whose connection then carries the stream. Each request names the device's fencing generation,
 * so the owning node refuses it when that connection was replaced meanwhile.
 */

import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect as netConnect } from "node:net";
import { Readable } from "node:stream";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import { Agent } from "undici";
import { deadline } from "../../src/deadline.js";
import { ClusterUnavailableError, abortReason } from "../../src/errors.js";
import { msOption } from "../../src/options.js";
import type { DialOptions } from "../dialer.js";
import type { FetchInit } from "../http.js";
import type { Placement } from "./directory.js";
import type { FleetConn, Peers } from "./fleet.js";
import { bearer, discard, encodeHead, fromWire, readHead, socketConn, UPGRADE_TOKEN, type RequestHead, type ResponseHead, type WireError } from "./wire.js";

export interface PeerClientOptions {
  secret: string;
  /** The path prefix nodes serve node-to-node requests under. */
  path: string;
  /** Default `timeout` of a forwarded fetch (ms until the response head). */
  fetchTimeout: number;
  /** Default `timeout` of a forwarded dial, in ms. */
  dialTimeout: number;
  /** How long an idle node-to-node connection is kept, in ms. */
  keepAliveTimeout: number;
}

const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);

export class PeerClient implements Peers {
  readonly #options: PeerClientOptions;
  readonly #agent: Agent;

  constructor(options: PeerClientOptions) {
    this.#options = options;
    this.#agent = new Agent({
      keepAliveTimeout: options.keepAliveTimeout,
      // Bounded by our own timeout until the response head; bodies stream as long as they need.
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: { timeout: Math.max(1, Math.min(options.fetchTimeout || 10_000, 10_000)) },
    });
  }

  async fetch(placement: Placement, input: string | URL | Request, init: FetchInit = {}): Promise<Response> {
    const { timeout = this.#options.fetchTimeout, signal, ...rest } = init;
    msOption("timeout", timeout, 0);
    const callerSignal = signal ?? (input instanceof Request ? input.signal : undefined);
    callerSignal?.throwIfAborted();
    // The standard Request parses and checks the input as a local fetch would.
    const request = new Request(input, { ...rest, ...(rest.body ? { duplex: "half" } : {}) } as RequestInit);
    const head: RequestHead = {
      id: placement.id,
      generation: placement.generation,
      method: request.method,
      url: request.url,
      headers: [...request.headers],
      timeout,
      body: request.body !== null,
    };
    // Until the response head: the caller's signal goes on bounding the body, the timeout does not.
    const timedOut = new AbortController();
    const cancel = timeout > 0 ? deadline("fetch", timeout, undefined, (error) => timedOut.abort(error)) : () => {};
    const signals = [timedOut.signal, ...(callerSignal ? [callerSignal] : [])];
    const combined = AbortSignal.any(signals);
    const body = requestBody(encodeHead(head), request.body);
    try {
      let response;
      try {
        response = await this.#agent.request({
          origin: new URL(placement.advertise).origin,
          path: `${this.#base(placement)}/fetch`,
          method: "POST",
          headers: { authorization: bearer(this.#options.secret), "content-type": "application/octet-stream" },
          body: Readable.from(body, { objectMode: false }),
          signal: combined,
        });
      } catch (error) {
        for (const s of signals) if (s.aborted) throw abortReason(s);
        throw unreachable(placement, error);
      }
      if (response.statusCode !== 200) {
        const text = await response.body.text().catch(() => "");
        throw refused(placement, response.statusCode, text);
      }
      const stream = Readable.toWeb(response.body) as ReadableStream<Uint8Array>;
      let answer: { head: ResponseHead; rest: ReadableStream<Uint8Array> };
      try {
        answer = await readHead<ResponseHead>(stream.getReader());
      } catch (error) {
        for (const s of signals) if (s.aborted) throw abortReason(s);
        throw error;
      }
      if ("error" in answer.head) {
        void discard(answer.rest);
        throw fromWire(answer.head.error, placement.id);
      }
      const { status, statusText, headers } = answer.head;
      return new Response(NULL_BODY_STATUS.has(status) || request.method === "HEAD" ? null : answer.rest, {
        status,
        statusText,
        headers,
      });
    } finally {
      cancel();
    }
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
        // Half-open: the device's FIN must not end what the caller still writes.
        createConnection: () =>
          secure ? tlsConnect({ host, port, servername: host, allowHalfOpen: true } as ConnectionOptions) : netConnect({ host, port, allowHalfOpen: true }),
      });
      const cancel = deadline("dial", timeout, signal, finish);
      req.on("upgrade", (res: IncomingMessage, socket, head: Buffer) => {
        const streamID = Number(res.headers["x-wslis-stream-id"] ?? 0);
        if (settled) return void socket.destroy();
        finish(undefined, socketConn(socket, streamID, head));
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

/** The head, then the device request's body. */
async function* requestBody(head: Uint8Array, body: ReadableStream<Uint8Array> | null): AsyncGenerator<Uint8Array> {
  yield head;
  if (!body) return;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
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

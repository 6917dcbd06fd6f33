/**
 * Calls to devices on other nodes, through their node: one hop, straight to the owning node's
 * `advertise` URL. A dial is an HTTP upgrade whose connection then carries the stream in frames
 * (tunnel.ts); a fetch is the local HTTP client on such streams, kept and reused as a local fetch keeps
 * its streams (so the owning node only relays bytes). Each dial names the device's fencing generation, so
 * the owning node refuses it when that connection was replaced meanwhile.
 */

import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import { deadline } from "../../src/deadline.js";
import { ClusterUnavailableError, WslisError } from "../../src/errors.js";
import type { Conn, StreamIO } from "../../src/yamux/stream.js";
import type { DialOptions } from "../dialer.js";
import { DeviceHttp, type DeviceHttpOptions, type FetchInit, type StreamDialer } from "../http.js";
import type { Placement } from "./directory.js";
import type { FleetConn, Peers } from "./fleet.js";
import { failTunnel, tunnel, tunnelIO } from "./tunnel.js";
import { bearer, fromWire, UPGRADE_TOKEN, type WireError } from "./wire.js";

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
  /** The server's HTTP client options (`maxHeadSize`, `connections`), which forwarded fetches share. */
  http?: DeviceHttpOptions;
}

export class PeerClient implements Peers {
  readonly #options: PeerClientOptions;
  readonly #authorization: string;
  /** The devices on other nodes fetched lately, by generation, node and id. */
  readonly #devices = new Map<string, RemoteDevice>();
  /** Every forwarded stream open (dialed by the caller, or a fetch's connection), until it ends. */
  readonly #tunnels = new Set<FleetConn>();
  /** Set once the server shuts down: calls are refused with it. */
  #closing: Error | undefined;

  constructor(options: PeerClientOptions) {
    this.#options = options;
    this.#authorization = bearer(options.secret);
  }

  /**
   * `dialer.fetch` of a device on another node, through that node: the same HTTP client a local fetch
   * runs, on streams that are tunnels through the owning node (see {@link RemoteDevice}). Rejects as the
   * local one does (the device's errors keep their code across the hop), and with
   * `ERR_CLUSTER_UNAVAILABLE` when the node does not answer, refuses, or goes away part way.
   */
  fetch(placement: Placement, input: string | URL | Request, init: FetchInit = {}): Promise<Response> {
    if (this.#closing) return Promise.reject(this.#closing);
    const key = `${placement.generation} ${placement.node} ${placement.advertise} ${placement.id}`;
    let device = this.#devices.get(key);
    if (!device) {
      device = new RemoteDevice(this, placement, this.#options, () => {
        if (this.#devices.get(key) === device) this.#devices.delete(key);
      });
      this.#devices.set(key, device);
    }
    return device.fetch(input, init);
  }

  dial(placement: Placement, options: DialOptions & { onFail?: (error: Error) => void } = {}): Promise<FleetConn> {
    if (this.#closing) return Promise.reject(this.#closing);
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
        path: `${url.pathname.replace(/\/+$/, "")}${this.#options.path}/dial`,
        headers: {
          Connection: "Upgrade",
          Upgrade: UPGRADE_TOKEN,
          Authorization: this.#authorization,
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
        const conn = tunnel(socket, {
          streamID,
          id: placement.id,
          peer: `node ${placement.node} (${placement.advertise})`,
          head,
          keepAliveInterval: this.#options.keepAliveInterval,
          keepAliveTimeout: this.#options.keepAliveTimeout,
          ...(options.onFail ? { onFail: options.onFail } : {}),
        });
        this.#tunnels.add(conn);
        const forget = () => void this.#tunnels.delete(conn);
        conn.closed.then(forget, forget);
        finish(undefined, conn);
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

  /**
   * The server is shutting down: new calls are refused, the streams kept idle for reuse close now, and
   * this resolves once every forwarded stream has ended (the calls in flight are done). New calls are
   * refused with `reason`.
   */
  drain(reason: Error): Promise<void> {
    this.#closing ??= reason;
    for (const device of [...this.#devices.values()]) device.close();
    return Promise.all([...this.#tunnels].map((conn) => conn.closed.catch(() => {}))).then(() => {});
  }

  /** The drain is over: every forwarded stream still open fails with `reason`, at both nodes. */
  close(reason: Error): void {
    this.#closing ??= reason;
    for (const conn of this.#tunnels) failTunnel(conn, reason);
  }
}

/** Codes that mean the device's connection, or the node it is on, is gone: every stream to it is. */
const GONE = new Set([
  "ERR_PROTOCOL",
  "ERR_ABUSIVE_PEER",
  "ERR_SESSION_CLOSED",
  "ERR_CONNECTION_LOST",
  "ERR_KEEPALIVE_TIMEOUT",
  "ERR_REPLACED",
  "ERR_SERVER_SHUTDOWN",
  "ERR_DEVICE_NOT_FOUND",
  "ERR_CLUSTER_UNAVAILABLE",
]);

/**
 * A device connected to another node, as the HTTP client sees it: a stream to it is a tunnel through its
 * node (one TCP connection each, pooled and reused for request after request as a local stream is), and
 * it is gone, as a session is gone, once a tunnel or a dial says the device's connection (or the node)
 * is: calls in flight then fail at once with that reason. Node B only relays bytes: no HTTP is parsed
 * or built between A and the device but A's own.
 */
class RemoteDevice implements StreamDialer {
  readonly session: StreamDialer["session"];
  readonly #peers: PeerClient;
  readonly #placement: Placement;
  readonly #http: DeviceHttp;
  readonly #forget: () => void;
  readonly #idleTimeout: number;
  #closeReason: Error | undefined;
  #resolveClosed!: (reason: Error) => void;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #dialTimeout: number;

  constructor(peers: PeerClient, placement: Placement, options: PeerClientOptions, forget: () => void) {
    this.#peers = peers;
    this.#placement = placement;
    this.#forget = forget;
    this.#dialTimeout = options.dialTimeout;
    this.#idleTimeout = Math.max(options.idleTimeout, 1000);
    const closed = new Promise<Error>((resolve) => (this.#resolveClosed = resolve));
    const self = this;
    this.session = {
      get closeReason() {
        return self.#closeReason;
      },
      closed,
    };
    this.#http = new DeviceHttp(this, {
      ...options.http,
      timeout: options.fetchTimeout,
      bodyTimeout: options.bodyTimeout,
      keepAliveTimeout: options.idleTimeout,
    });
  }

  fetch(input: string | URL | Request, init: FetchInit): Promise<Response> {
    // Forgotten when unused for a while: its idle tunnels are closed then anyway.
    if (this.#idleTimer) this.#idleTimer.refresh();
    else {
      this.#idleTimer = setTimeout(() => this.close(), this.#idleTimeout);
      this.#idleTimer.unref();
    }
    return this.#http.fetch(input, init);
  }

  dial(): Promise<Conn> {
    return this.#peers.dial(this.#placement, { timeout: this.#dialTimeout, onFail: (error) => this.#seen(error) }).catch((error: unknown) => {
      this.#seen(error);
      throw error;
    });
  }

  io(conn: Conn): StreamIO | undefined {
    return tunnelIO(conn);
  }

  /** Stops taking calls; those in flight finish. */
  close(): void {
    clearTimeout(this.#idleTimer);
    this.#forget();
    void this.#http.close();
  }

  /** A tunnel failed, or a dial: if the reason says the device (or its node) is gone, so is this. */
  #seen(error: unknown): void {
    if (this.#closeReason || !(error instanceof WslisError) || !GONE.has(error.code)) return;
    this.#closeReason = error;
    clearTimeout(this.#idleTimer);
    this.#forget();
    this.#resolveClosed(error);
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

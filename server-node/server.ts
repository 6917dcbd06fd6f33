/**
 * The wslis server: devices dial in over WebSocket; for each one the handler gets a {@link Dialer} that
 * opens streams to the device. The server is the yamux client (odd stream IDs), as in Go wslis.
 *
 * Everything that can refuse a device happens before the upgrade, in plain HTTP (no yamux byte is ever
 * sent to a refused device): origin check, device limit, `authorize`. A failing handler or a broken
 * upgrade is logged and closes that one connection; the server itself never throws from an event.
 */

import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import WebSocket, { WebSocketServer } from "ws";
import { withTimeout } from "../src/deadline.js";
import { SessionClosedError } from "../src/errors.js";
import { integerOption, msOption } from "../src/options.js";
import { CloseCode, closeCodeFor, closeError } from "../src/close-codes.js";
import { webSocketTransport } from "../src/transport.js";
import { maxIncomingMessageBytes } from "../src/yamux/outbox.js";
import { Session, sessionSettings, type SessionOptions } from "../src/yamux/session.js";
import { budgetReads, nodeClock, nodeTransportOptions } from "./node-transport.js";
import type { Clock } from "../src/yamux/clock.js";
import { DeviceDialer, type Dialer, type DialOptions } from "./dialer.js";
import type { TypedEventTarget } from "../src/events.js";
import type { DeviceRecord, Directory, FleetEvents } from "./cluster/directory.js";
import type { NodeEndpoint } from "./cluster/endpoint.js";
import type { Fleet, FleetConn } from "./cluster/fleet.js";
import { createFleet, type ClusterOptions } from "./cluster/index.js";
import type { PeerClient } from "./cluster/peer.js";
import type { DeviceHttpOptions, FetchInit } from "./http.js";
import { Metrics, toPrometheus } from "./metrics.js";
import { refuseUpgrade } from "./upgrade.js";

/**
 * What `authorize` may answer: `{ id, data? }` to accept a device whose id comes from its verified
 * credential (`identify` is then not consulted; `data` becomes `dialer.auth`); `true` to accept and let
 * `identify` name it; `false` or a refusal to answer with an HTTP error.
 */
export type Authorization = boolean | AuthorizedDevice | { status: 401 | 403 | number; reason?: string };

/** A device accepted by `authorize`, named by its credential. */
export interface AuthorizedDevice {
  /** The device id, taken from the verified credential (never from what the client merely claims). */
  id: string;
  /** Anything the server wants to keep about the credential (claims, tenant...); available as `dialer.auth`. */
  data?: unknown;
}

export interface ServerLogger {
  info?(message: string, ...details: unknown[]): void;
  warn(message: string, ...details: unknown[]): void;
  error(message: string, ...details: unknown[]): void;
}

export interface ServerOptions {
  /**
   * Decides, before the upgrade, whether a device may connect. Resolve to `{ id, data? }` to take the
   * device id from the verified credential (the safe pattern: `identify` is then not consulted and
   * `data` is `dialer.auth`), `true` to accept and let `identify` name the device, or `false` / a
   * refusal to answer plain HTTP 401/403 (or the status given); the device's listener stops
   * reconnecting on 401/403. Default: everyone, and any client can claim any device id (the server
   * warns once at start).
   */
  authorize?: (request: IncomingMessage) => Authorization | Promise<Authorization>;
  /**
   * Browsers cannot read the HTTP status of a refused WebSocket handshake, so a browser device refused
   * with plain 401/403 cannot tell "refused" from "server down" and keeps retrying. When true, requests
   * that carry an Origin header (browsers) and fail `authorize` are upgraded and closed at once with
   * close code 4401/4403 (no yamux byte is sent), which makes the browser listener stop and surface
   * `ERR_UNAUTHORIZED`. Default false: every refusal is plain HTTP.
   */
  refuseBrowsersWithCloseCode?: boolean;
  /**
   * Browser origins allowed to connect: a list of origins (`"https://kiosk.example.com"`, compared by
   * scheme, host and port) or a predicate. Requests without an Origin header (non-browser devices)
   * always pass. Default: same origin only: the server's own `origin` when set, else the scheme of the
   * connection with the request's Host header.
   */
  allowedOrigins?: string[] | ((origin: string, request: IncomingMessage) => boolean);
  /**
   * The server's own public origin(s) as browsers see them (`"https://kiosk.example.com"`). When set, the
   * default same-origin check compares the Origin header with this instead of trusting the Host header,
   * which a client can forge and a proxy may rewrite (nginx sends the upstream's host by default). Set
   * it behind a proxy or TLS terminator. Default: none (the Host header and the connection's scheme).
   */
  origin?: string | string[];
  /**
   * The device id of a connection `authorize` accepted with `true` (or of every connection without
   * `authorize`). Default: the `deviceId` query param, else the `DeviceId` header, else
   * `anonymous-<random UUID>`. Not consulted when `authorize` resolves to `{ id }`.
   */
  identify?: (request: IncomingMessage) => string | undefined;
  /**
   * Picks the subprotocol to echo from those the device offered (a token may travel there). Default: the
   * first one offered. Return false to echo none.
   */
  selectProtocol?: (protocols: Set<string>, request: IncomingMessage) => string | false;
  /** Only upgrade requests to this path (exact match). Default: any path. */
  path?: string;
  /** Devices connected at once; beyond it upgrades get HTTP 503. Default Infinity. */
  maxDevices?: number;
  /** How long `close()` lets in-flight streams finish after GoAway, in ms. Default 10 000. */
  drainTimeout?: number;
  /** Default timeout of `dialer.dial()`, in ms. Default 10 000. */
  dialTimeout?: number;
  /** Defaults of every `dialer.fetch`/`dialer.agent` (timeout, keep-alive, connections per device). */
  http?: DeviceHttpOptions;
  /**
   * For `listenAndServe`/`listen`: how long a client may take to send its upgrade request, in ms
   * (clients that open TCP and never upgrade are dropped). Default 10 000.
   */
  handshakeTimeout?: number;
  /** For `listenAndServe`/`listen`: largest HTTP head of the upgrade request, in bytes. Default 16 KiB. */
  maxHeaderSize?: number;
  /** yamux settings for every device session; the role is always "client". */
  session?: SessionOptions;
  /** Where problems are reported. Default: `console`. Pass `{ warn() {}, error() {} }` to silence. */
  logger?: ServerLogger;
  /**
   * Many server nodes, one fleet, on Redis: `server.fetch`/`dial`/`lookup`/`fleet()` reach devices on
   * any node, and newest-wins holds across nodes. See {@link ClusterOptions}. Default: this node alone.
   */
  cluster?: ClusterOptions;
}

/** Called once per connected device. Its failure is logged and closes that device's connection. */
export type Handler = (dialer: Dialer) => void | Promise<void>;

/** Events of a {@link Server}. */
export interface ServerEventMap {
  connect: CustomEvent<{ dialer: Dialer }>;
  disconnect: CustomEvent<{ dialer: Dialer; reason: Error }>;
  /** A device id connected again: `previous` is closed with `ERR_REPLACED`, `dialer` is the new one. */
  replace: CustomEvent<{ dialer: Dialer; previous: Dialer }>;
}

/** Live devices by id, read-only. One authoritative session per id: the newest connection wins. */
export interface DeviceRegistry extends Iterable<[string, Dialer]> {
  get(id: string): Dialer | undefined;
  has(id: string): boolean;
  readonly size: number;
  keys(): IterableIterator<string>;
  values(): IterableIterator<Dialer>;
}

/** A read-only view of the server's map of devices; only the server adds and removes them. */
class Registry implements DeviceRegistry {
  readonly #byId: ReadonlyMap<string, Dialer>;
  constructor(byId: ReadonlyMap<string, Dialer>) {
    this.#byId = byId;
  }
  get(id: string): Dialer | undefined {
    return this.#byId.get(id);
  }
  has(id: string): boolean {
    return this.#byId.has(id);
  }
  get size(): number {
    return this.#byId.size;
  }
  keys(): IterableIterator<string> {
    return this.#byId.keys();
  }
  values(): IterableIterator<Dialer> {
    return this.#byId.values();
  }
  [Symbol.iterator](): IterableIterator<[string, Dialer]> {
    return this.#byId.entries();
  }
}

/** Typed `addEventListener`/`removeEventListener` for the events of {@link ServerEventMap}. */
export interface Server {
  addEventListener: TypedEventTarget<ServerEventMap>["addEventListener"];
  removeEventListener: TypedEventTarget<ServerEventMap>["removeEventListener"];
}

export class Server extends EventTarget {
  /** Connected devices by id (read-only; see {@link DeviceRegistry}). */
  readonly devices: DeviceRegistry;
  /** The authoritative device per id (the registry's contents). */
  readonly #byId = new Map<string, DeviceDialer>();
  /** Where every device of the fleet is; this node alone unless `cluster` is set. */
  readonly #directory: Directory;
  readonly #fleet: Fleet;
  readonly #endpoint: NodeEndpoint | undefined;
  readonly #peers: PeerClient | undefined;
  readonly #handler: Handler;
  readonly #options: ServerOptions;
  /** Every timer of the server and its sessions: `session.timers` when given, else Node's. */
  readonly #clock: Clock;
  readonly #logger: ServerLogger;
  readonly #wss: WebSocketServer;
  readonly #metrics = new Metrics();
  /** Every live session, including ones replaced but still draining. */
  readonly #dialers = new Set<DeviceDialer>();
  /** Each live session's WebSocket, to close a replaced one with 4000 before anything else reaches it. */
  readonly #sockets = new Map<Dialer, WebSocket>();
  /** Upgrades past the checks and not yet connected, counted against maxDevices. */
  #upgrading = 0;
  /** Normalized `origin` / `allowedOrigins` (scheme://host:port), or undefined when not given as a list. */
  readonly #origins: Set<string> | undefined;
  readonly #allowed: Set<string> | undefined;
  #http: HttpServer | undefined;
  #closing: Promise<void> | undefined;

  constructor(handler: Handler, options: ServerOptions = {}) {
    super();
    this.devices = new Registry(this.#byId);
    if (typeof handler !== "function") throw new TypeError("wslis: the handler must be a function");
    this.#handler = handler;
    this.#options = options;
    this.#clock = options.session?.timers ?? nodeClock;
    this.#logger = options.logger ?? console;
    if (options.maxDevices !== undefined && options.maxDevices !== Infinity) integerOption("maxDevices", options.maxDevices);
    if (options.maxHeaderSize !== undefined) integerOption("maxHeaderSize", options.maxHeaderSize);
    for (const name of ["drainTimeout", "dialTimeout", "handshakeTimeout"] as const) {
      if (options[name] !== undefined) msOption(name, options[name]);
    }
    const parts = createFleet(this.devices, options.cluster, {
      logger: this.#logger,
      fetchTimeout: options.http?.timeout ?? 30_000,
      bodyTimeout: options.http?.bodyTimeout ?? 30_000,
      dialTimeout: options.dialTimeout ?? 10_000,
      idleTimeout: options.http?.keepAliveTimeout ?? 10_000,
      ...(options.http ? { http: options.http } : {}),
      keepAliveInterval: options.session?.keepAliveInterval ?? 30_000,
      keepAliveTimeout: options.session?.keepAliveTimeout ?? 10_000,
    });
    this.#directory = parts.directory;
    this.#fleet = parts.fleet;
    this.#endpoint = parts.endpoint;
    this.#peers = parts.peers;
    this.#origins = normalizeOrigins("origin", options.origin);
    this.#allowed = Array.isArray(options.allowedOrigins)
      ? normalizeOrigins("allowedOrigins", options.allowedOrigins)
      : undefined;
    if (!options.authorize) {
      this.#logger.warn(
        "wslis: no authorize option: any client can connect and claim any device id (and replace that device). " +
          "Verify a per-device credential in authorize and resolve to { id } (see the README).",
      );
    }
    // Session options fail here, not on a device's connection.
    const window = sessionSettings({ ...options.session, role: "client" }).streamWindow;
    this.#wss = new WebSocketServer({
      noServer: true,
      // What wslis sends in one message (1 MiB), or a Go peer's Data body of up to the largest window
      // it is granted (1 MiB, or streamWindow if larger: see HELLO_PING); ws refuses more with 1009
      // from the frame's header, before buffering it.
      maxPayload: maxIncomingMessageBytes(window),
      perMessageDeflate: false,
      handleProtocols: (protocols, request) => {
        if (this.#options.selectProtocol) return this.#options.selectProtocol(protocols, request);
        const [first] = protocols;
        return first ?? false;
      },
    });
  }

  /**
   * Reverse HTTP to device `id` wherever it is connected (this node, or another node of the cluster):
   * `dialer.fetch` semantics (streaming bodies, `init.signal`, `init.timeout`). Rejects at once with
   * `ERR_DEVICE_NOT_FOUND` when no node has the device, and with `ERR_SERVER_SHUTDOWN` once `close()`
   * was called (the calls already made finish within its drain).
   */
  fetch(id: string, input: string | URL | Request, init?: FetchInit): Promise<Response> {
    if (this.#closing) return Promise.reject(shuttingDown());
    return this.#fleet.fetch(id, input, init);
  }

  /**
   * Opens a stream to device `id` wherever it is connected: `dialer.dial` semantics (`signal`, `timeout`).
   * Rejects at once with `ERR_DEVICE_NOT_FOUND` when no node has the device, and with
   * `ERR_SERVER_SHUTDOWN` once `close()` was called.
   */
  dial(id: string, options?: DialOptions): Promise<FleetConn> {
    if (this.#closing) return Promise.reject(shuttingDown());
    return this.#fleet.dial(id, options);
  }

  /** Where device `id` is connected (`{ id, node, connectedAt, lastSeen }`), or undefined. */
  lookup(id: string): Promise<DeviceRecord | undefined> {
    return this.#fleet.lookup(id);
  }

  /** Every device of the fleet (every node's), once each. */
  fleet(): AsyncIterable<DeviceRecord> {
    return this.#fleet.fleet();
  }

  /** Events of the whole fleet (`connect`, `replace`, `disconnect`), each carrying the device's node. */
  get fleetEvents(): FleetEvents {
    return this.#directory.events;
  }

  /** This node's id in the fleet (`cluster.nodeId`; `"local"` without a cluster). */
  get nodeId(): string {
    return this.#directory.node;
  }

  /** Counters and gauges; see the README's metrics section. */
  metrics(): ReturnType<Metrics["snapshot"]> {
    let streams = 0;
    for (const dialer of this.#dialers) streams += dialer.session.numStreams;
    return this.#metrics.snapshot({ devices: this.devices.size, streams });
  }

  /** The same metrics in the Prometheus text exposition format (serve it on your /metrics route). */
  prometheus(): string {
    return toPrometheus(this.metrics());
  }

  /**
   * Handles an HTTP upgrade request from an existing `http`/`https` server:
   * `httpServer.on("upgrade", (req, socket, head) => server.handleUpgrade(req, socket, head))`.
   */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", (error) => this.#logger.warn(`wslis: upgrade socket error: ${error.message}`));
    if (this.#endpoint?.owns(request)) return this.#endpoint.handleUpgrade(request, socket, head);
    this.#upgrade(request, socket, head).catch((error: unknown) => {
      this.#logger.error("wslis: upgrade failed", error);
      refuse(socket, 500, "internal error");
    });
  }

  async #upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const options = this.#options;
    if (this.#closing) return refuse(socket, 503, "server shutting down");
    if (options.path !== undefined && new URL(request.url ?? "/", "http://x").pathname !== options.path) {
      return refuse(socket, 404, "not found");
    }
    if (!this.#originAllowed(request)) {
      this.#metrics.refused("origin");
      return refuse(socket, 403, "origin not allowed");
    }
    if (this.#dialers.size + this.#upgrading >= (options.maxDevices ?? Infinity)) {
      this.#metrics.refused("capacity");
      return refuse(socket, 503, "too many devices");
    }
    this.#upgrading++;
    try {
      let device: AuthorizedDevice | undefined;
      if (options.authorize) {
        const verdict = await options.authorize(request);
        if (isAuthorizedDevice(verdict)) {
          if (typeof verdict.id !== "string" || verdict.id === "") {
            throw new TypeError("wslis: authorize resolved to { id } without a non-empty string id");
          }
          device = verdict;
        } else if (verdict !== true) {
          const status = verdict === false ? 401 : verdict.status;
          const reason = verdict === false ? "unauthorized" : (verdict.reason ?? "unauthorized");
          this.#metrics.refused("unauthorized");
          if (options.refuseBrowsersWithCloseCode && request.headers.origin !== undefined && (status === 401 || status === 403)) {
            this.#wss.handleUpgrade(request, socket, head, (ws) =>
              ws.close(status === 401 ? CloseCode.Unauthorized : CloseCode.Forbidden, reason.slice(0, 120)),
            );
            return;
          }
          return refuse(socket, status, reason);
        }
      }
      if (this.#closing || socket.destroyed) return refuse(socket, 503, "server shutting down");
      await new Promise<void>((resolve) => {
        this.#wss.handleUpgrade(request, socket, head, (ws) => {
          resolve();
          budgetReads(socket, ws);
          try {
            this.#connected(ws, request, device);
          } catch (error) {
            // A user callback (identify) threw: this device goes, the server stays.
            this.#logger.error("wslis: setting up a connected device failed; closing it", error);
            ws.close(CloseCode.InternalError, "server error");
          }
        });
        // handleUpgrade answers bad requests (wrong version, bad key) itself and never calls back.
        socket.once("close", () => resolve());
      });
    } finally {
      this.#upgrading--;
    }
  }

  #connected(ws: WebSocket, request: IncomingMessage, device: AuthorizedDevice | undefined): void {
    if (this.#closing) {
      ws.close(CloseCode.GoingAway, "server shutdown");
      return;
    }
    const id = device ? device.id : this.#identify(request);
    const transport = webSocketTransport(ws, {
      ...nodeTransportOptions,
      clock: this.#clock,
      closeCode: closeCodeFor,
      closeError: (code, reason, error) => closeError(code, reason, "device", error),
    });
    const session = new Session(this.#metrics.count(transport), {
      ...this.#options.session,
      timers: this.#clock,
      role: "client",
      // The server never accepts streams a device opens: refuse each at once (RST), keep none.
      acceptBacklog: 0,
    });
    session.addEventListener("rtt", (event) => this.#metrics.rtt((event as CustomEvent<number>).detail));
    const dialer = new DeviceDialer(session, request, id, ws.protocol, {
      dialTimeout: this.#options.dialTimeout ?? 10_000,
      http: this.#options.http,
      auth: device?.data,
    });
    this.#sockets.set(dialer, ws);
    this.#dialers.add(dialer);
    this.#metrics.opened();

    // Events in order for a replacement: replace, disconnect (previous, ERR_REPLACED), connect (new).
    const previous = this.#byId.get(id);
    this.#byId.set(id, dialer);
    if (previous) {
      this.#emit("replace", { dialer, previous });
      const reason = new SessionClosedError("ERR_REPLACED", `device ${id} connected again; this session was replaced`);
      // Close code 4000 first, with no GoAway before it: a GoAway means "draining, redial now", and the
      // replaced device would redial at once and replace the new one in turn, forever.
      this.#sockets.get(previous)?.close(CloseCode.Replaced, "replaced by a newer connection");
      previous.close(reason);
      this.#retire(previous, reason);
    }
    this.#directory.connected(dialer, previous);
    this.#emit("connect", { dialer });
    void session.closed.then((reason) => this.#retire(dialer, reason));

    Promise.resolve()
      .then(() => this.#handler(dialer))
      .catch((error: unknown) => {
        this.#logger.error(`wslis: the handler failed for device ${id}; closing its connection`, error);
        dialer.close(new SessionClosedError("ERR_SESSION_CLOSED", "the server's handler failed", { cause: error }));
      });
  }

  /** Forgets a device that is gone and tells listeners, once. */
  #retire(dialer: DeviceDialer, reason: Error): void {
    if (!this.#dialers.delete(dialer)) return;
    this.#sockets.delete(dialer);
    if (this.#byId.get(dialer.id) === dialer) this.#byId.delete(dialer.id);
    this.#directory.disconnected(dialer, reason);
    this.#metrics.closed(reason);
    this.#emit("disconnect", { dialer, reason });
  }

  /**
   * Answers a plain request under the cluster's reserved path (`cluster.path`) from an existing `http`
   * server's request handler: node-to-node calls are upgrades (`handleUpgrade`), so it is refused (401
   * without the secret). Returns false, doing nothing, for any other request. `listen` does it itself.
   */
  handleRequest(request: IncomingMessage, response: ServerResponse): boolean {
    if (!this.#endpoint?.owns(request)) return false;
    this.#endpoint.handleRequest(request, response);
    return true;
  }

  /** Starts an HTTP server on `addr` ("host:port", ":port" or a port number) that upgrades to wslis. */
  async listen(addr: string | number = ":9090"): Promise<this> {
    if (this.#http) throw new Error("wslis: the server is already listening");
    const { host, port } = parseAddr(addr);
    const http = createServer(
      {
        maxHeaderSize: this.#options.maxHeaderSize ?? 16 * 1024,
        headersTimeout: this.#options.handshakeTimeout ?? 10_000,
        // Node-to-node calls are upgrades too: once upgraded, the connection is no request's any more.
        requestTimeout: this.#options.handshakeTimeout ?? 10_000,
        // Node checks those timeouts every 30 s by default; a client that never upgrades would linger.
        connectionsCheckingInterval: Math.min(1000, this.#options.handshakeTimeout ?? 10_000),
      },
      (request, response) => {
        if (this.handleRequest(request, response)) return;
        response.writeHead(426, { "Content-Type": "text/plain", Connection: "close", Upgrade: "websocket" });
        response.end("wslis: this endpoint speaks WebSocket only\n");
      },
    );
    http.on("upgrade", (request, socket, head) => this.handleUpgrade(request, socket, head));
    http.on("clientError", (error: Error & { code?: string }, socket: Socket) => {
      const [status, reason] =
        error.code === "HPE_HEADER_OVERFLOW"
          ? [431, "request header fields too large"]
          : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
            ? [408, "the upgrade request took too long"]
            : [400, "bad request"];
      if (socket.writable) refuse(socket, status, reason);
      else socket.destroy();
    });
    this.#http = http;
    await new Promise<void>((resolve, reject) => {
      http.once("error", reject);
      http.listen(port, host, () => {
        http.off("error", reject);
        resolve();
      });
    });
    http.on("error", (error) => this.#logger.error("wslis: HTTP server error", error));
    return this;
  }

  /** Address of the server started by `listen`/`listenAndServe`. */
  address(): AddressInfo {
    const address = this.#http?.address();
    if (!address || typeof address === "string") throw new Error("wslis: the server is not listening");
    return address;
  }

  /**
   * Shuts down: refuses new devices, sends GoAway to every device, lets in-flight streams finish for
   * up to `drainTimeout`, then closes every session (`ERR_SERVER_SHUTDOWN`, WebSocket code 1001, so
   * devices redial elsewhere with jitter) and the HTTP server it started.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#http?.close();
    // The fleet stops routing to this node before its devices get GoAway and redial elsewhere.
    await this.#directory.drain().catch((error: unknown) => this.#logger.warn("wslis: leaving the cluster directory failed", error));
    const dialers = [...this.#dialers];
    const reason = shuttingDown();
    for (const dialer of dialers) dialer.drain(reason);
    // Calls in flight finish: on this node's devices, and through other nodes (their idle streams close now).
    const idle = Promise.all([...dialers.map((d) => d.session.idle()), this.#peers?.drain(reason)]);
    // Past drainTimeout (a TimeoutError) the sessions close all the same.
    await withTimeout("drain", this.#options.drainTimeout ?? 10_000, undefined, () => idle, this.#clock).catch(() => {});
    for (const dialer of this.#dialers) dialer.close(reason);
    this.#peers?.close(reason);
    await Promise.all(dialers.map((d) => d.closed));
    this.#wss.close();
    await this.#directory.close();
    this.#http?.closeAllConnections();
  }

  #originAllowed(request: IncomingMessage): boolean {
    const origin = request.headers.origin;
    if (origin === undefined) return true;
    const allowed = this.#options.allowedOrigins;
    if (typeof allowed === "function") return allowed(origin, request);
    const actual = normalizeOrigin(origin);
    if (actual === undefined) return false;
    if (this.#allowed) return this.#allowed.has(actual);
    // Same origin. The server's configured origin is the truth when known: the Host header is the
    // client's word (and a proxy's rewrite), so an Origin that merely matches it proves nothing.
    if (this.#origins) return this.#origins.has(actual);
    const scheme = (request.socket as Partial<import("node:tls").TLSSocket>).encrypted ? "https" : "http";
    return actual === normalizeOrigin(`${scheme}://${request.headers.host ?? ""}`);
  }

  #identify(request: IncomingMessage): string {
    const id = this.#options.identify
      ? this.#options.identify(request)
      : (new URL(request.url ?? "/", "http://x").searchParams.get("deviceId") ??
        firstHeader(request.headers["deviceid"]));
    // Unguessable, so nobody can claim an anonymous device's id and take its place.
    return id || `anonymous-${randomUUID()}`;
  }

  #emit<K extends keyof ServerEventMap>(type: K, detail: ServerEventMap[K]["detail"]): void {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * Starts a wslis server on `addr` ("host:port", ":port" or a port; port 0 picks a free one) and calls
 * `handler` with a {@link Dialer} for each device that connects.
 */
export async function listenAndServe(addr: string | number, handler: Handler, options?: ServerOptions): Promise<Server> {
  return new Server(handler, options).listen(addr);
}

/** Answers an upgrade request with a plain HTTP error, `reason` its one line of text, and closes the socket. */
function refuse(socket: Duplex, status: number, reason: string): void {
  refuseUpgrade(socket, status, `${reason}\n`);
}

function isAuthorizedDevice(verdict: Authorization): verdict is AuthorizedDevice {
  return typeof verdict === "object" && verdict !== null && "id" in verdict;
}

/** `scheme://host:port` with the default port dropped and the host lowercased, or undefined if not an origin. */
function normalizeOrigin(value: string): string | undefined {
  try {
    const url = new URL(value);
    if (url.host === "" || url.origin === "null") return undefined;
    return url.origin;
  } catch {
    return undefined;
  }
}

function normalizeOrigins(name: string, value: string | string[] | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  const set = new Set<string>();
  for (const origin of Array.isArray(value) ? value : [value]) {
    const normalized = typeof origin === "string" ? normalizeOrigin(origin) : undefined;
    if (normalized === undefined) throw new TypeError(`wslis: ${name}: not an origin: ${String(origin)}`);
    set.add(normalized);
  }
  return set;
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function parseAddr(addr: string | number): { host: string | undefined; port: number } {
  if (typeof addr === "number") return { host: undefined, port: addr };
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  if (!match) throw new TypeError(`wslis: address must be "host:port" or ":port", not ${JSON.stringify(addr)}`);
  const host = match[1] ?? match[2];
  return { host: host || undefined, port: Number(match[3]) };
}

function shuttingDown(): SessionClosedError {
  return new SessionClosedError("ERR_SERVER_SHUTDOWN", "the server is shutting down");
}

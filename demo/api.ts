/**
 * The demo's HTTP API over the connected kiosks. Every request to a kiosk goes through reverse HTTP
 * (`dialer.fetch`) and is bounded: a kiosk that disconnects mid-request answers 502 at once, one that
 * does not answer in time 504. Errors are JSON `{ "error": code, "message": text }`.
 *
 *   GET  /api/devices                    → { devices: DeviceInfo[] }
 *   GET  /api/devices/:id                → DeviceInfo
 *   GET  /api/devices/:id/display        → the kiosk's display
 *   PUT  /api/devices/:id/display        ← {"url"} | {"html"} | {"dashboard"}   → the display now shown
 *   GET  /api/devices/:id/screenshot     → image/png (?scale=0.1…3)
 *   GET  /api/devices/:id/status         → the kiosk's status + { server: { rtt, remoteAddress, connectedAt } }
 *   POST /api/devices/:id/ping           → { rtt } (ms, a yamux ping from the server)
 *   POST /api/devices/:id/disconnect     → { disconnected: id } (the kiosk redials on its own)
 *   GET  /api/events                     → Server-Sent Events: `devices` with the whole list on every change,
 *                                          `heartbeat` every 15 s so a console notices a silent server
 *
 * Writes (PUT, POST) from a browser page of another origin are refused with 403: a page the operator
 * happens to visit must not drive the kiosks (a cross-site `text/plain` form or no-cors fetch needs no
 * preflight). Requests without `Origin` and `Sec-Fetch-Site` (curl, scripts) are not browsers and pass.
 *
 * What a kiosk answers is checked before it is stored or relayed: bodies are capped (a device's endless
 * answer fails with 502 at the cap instead of filling memory), a status must be a valid KioskStatus and a
 * screenshot a PNG; the API never relays a device's own content type.
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import type { Dialer, Server } from "../server-node/index.js";
import { DisplayError, parseDisplay, parseStatus, StatusError, type DeviceInfo, type Display, type KioskStatus } from "./shared.js";

export interface ApiOptions {
  /** How long a kiosk may take to answer, in ms. Default 10 000. */
  deviceTimeout?: number;
  /** How often the server pings every kiosk to refresh the listed RTTs, in ms. Default 10 000. */
  pingInterval?: number;
  /** One line per notable event (device connected, ...). */
  log?: (line: string) => void;
}

/** An error answered as JSON with its HTTP status. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * What the API uses of a kiosk's connection: a local `Dialer`, or a {@link RemoteKiosk} for a kiosk on
 * another node of the cluster.
 */
type KioskLink = Pick<Dialer, "id" | "fetch" | "closed" | "closeReason" | "ping" | "close">;

interface Device {
  dialer: KioskLink;
  info: DeviceInfo;
}

/**
 * A kiosk connected to another node: reached with `server.fetch` through that node. It is "closed"
 * when the fleet events say it left or moved; a ping is not available across nodes (rtt stays null),
 * nor is closing it from here.
 */
class RemoteKiosk implements KioskLink {
  readonly id: string;
  readonly node: string;
  readonly closed: Promise<Error>;
  #closeReason: Error | undefined;
  #resolve!: (reason: Error) => void;
  readonly #wslis: Server;

  constructor(wslis: Server, id: string, node: string) {
    this.#wslis = wslis;
    this.id = id;
    this.node = node;
    this.closed = new Promise((resolve) => (this.#resolve = resolve));
  }

  get closeReason(): Error | undefined {
    return this.#closeReason;
  }

  gone(reason: Error): void {
    this.#closeReason ??= reason;
    this.#resolve(reason);
  }

  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    return this.#wslis.fetch(this.id, input, init);
  }

  ping(): Promise<number> {
    return Promise.reject(new Error(`device ${this.id} is on node ${this.node}: pings stay on its node`));
  }

  close(): void {
    throw new ApiError(409, "remote_device", `device ${this.id} is connected to node ${this.node}; disconnect it there`);
  }
}

/** Largest request body the API reads, in bytes (an HTML display is at most 256 K characters). */
const MAX_BODY = 1024 * 1024;
/**
 * Largest JSON answer read from a kiosk (display, status), in bytes: an HTML display of 256 K characters
 * is at most 1.5 MiB as JSON (six bytes per escaped character).
 */
export const MAX_JSON_ANSWER = 2 * 1024 * 1024;
/** Largest screenshot read from a kiosk, in bytes: a busy 1920×1080 screen at scale 2 is about 10 MiB. */
export const MAX_SCREENSHOT_ANSWER = 32 * 1024 * 1024;
/** Interval of the `heartbeat` event on event streams, in ms; proxies keep the stream open, consoles see the server is alive. */
export const SSE_HEARTBEAT = 15_000;
/**
 * The URL every request to a kiosk is sent to, whatever its id: the host means nothing over reverse HTTP,
 * and a device id (which may hold spaces, ':', '/', '@') is no host name.
 */
const DEVICE_ORIGIN = "http://device";
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export class DemoApi {
  readonly #devices = new Map<string, Device>();
  readonly #streams = new Set<ServerResponse>();
  readonly #deviceTimeout: number;
  readonly #log: (line: string) => void;
  readonly #timers: (ReturnType<typeof setInterval> | ReturnType<typeof setTimeout>)[] = [];
  readonly #wslis: Server;

  constructor(wslis: Server, options: ApiOptions = {}) {
    this.#wslis = wslis;
    this.#deviceTimeout = options.deviceTimeout ?? 10_000;
    this.#log = options.log ?? (() => {});
    // Kiosks of the other nodes (with a cluster): listed from the fleet, kept by its events.
    for (const type of ["connect", "replace"] as const) {
      wslis.fleetEvents.addEventListener(type, (event) => {
        const { id, node, connectedAt } = event.detail;
        if (node !== wslis.nodeId) this.#remoteConnected(id, node, connectedAt);
      });
    }
    wslis.fleetEvents.addEventListener("disconnect", (event) => {
      const { id, node, reason } = event.detail;
      const device = this.#devices.get(id);
      if (device?.dialer instanceof RemoteKiosk && device.dialer.node === node) this.#disconnected(device.dialer, new Error(reason ?? "left"));
    });
    if (wslis.nodeId !== "local") this.#listFleet();
    wslis.addEventListener("connect", (event) => this.#connected((event as CustomEvent<{ dialer: Dialer }>).detail.dialer));
    wslis.addEventListener("disconnect", (event) => {
      const { dialer, reason } = (event as CustomEvent<{ dialer: Dialer; reason: Error }>).detail;
      this.#disconnected(dialer, reason);
    });
    this.#timers.push(
      setInterval(() => this.#pingAll(), options.pingInterval ?? 10_000),
      setInterval(() => this.#heartbeat(), SSE_HEARTBEAT),
    );
  }

  /** Lists the other nodes' kiosks once the cluster answers (Redis may still be connecting), retrying every second. */
  #listFleet(): void {
    void (async () => {
      for await (const record of this.#wslis.fleet()) {
        if (record.node !== this.#wslis.nodeId && !this.#devices.has(record.id)) {
          this.#remoteConnected(record.id, record.node, record.connectedAt);
        }
      }
    })().catch(() => {
      const timer = setTimeout(() => {
        this.#timers.splice(this.#timers.indexOf(timer), 1);
        this.#listFleet();
      }, 1000);
      this.#timers.push(timer);
    });
  }

  /** Connected devices, oldest first. */
  list(): DeviceInfo[] {
    return [...this.#devices.values()].map((d) => d.info);
  }

  /** Ends the event streams and timers (the wslis server is closed by its owner). */
  close(): void {
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers.length = 0;
    for (const stream of this.#streams) stream.end();
    this.#streams.clear();
  }

  /** Answers `request` if it is an API route (path under /api/); returns false otherwise. */
  async handle(request: IncomingMessage, response: ServerResponse): Promise<boolean> {
    const url = new URL(request.url ?? "/", "http://demo");
    if (url.pathname !== "/api" && !url.pathname.startsWith("/api/")) return false;
    // A client that goes away aborts the kiosk request it caused.
    const gone = new AbortController();
    response.on("close", () => gone.abort());
    try {
      await this.#route(request, response, url, gone.signal);
    } catch (error) {
      const apiError =
        error instanceof ApiError ? error : new ApiError(500, "internal", error instanceof Error ? error.message : String(error));
      if (apiError.status === 500) this.#log(`API error on ${request.method} ${url.pathname}: ${apiError.message}`);
      if (!response.headersSent) sendJson(response, apiError.status, { error: apiError.code, message: apiError.message });
      else response.destroy();
    }
    return true;
  }

  async #route(request: IncomingMessage, response: ServerResponse, url: URL, signal: AbortSignal): Promise<void> {
    const method = request.method ?? "GET";
    if (method !== "GET" && method !== "HEAD") refuseCrossOrigin(request);
    const parts = url.pathname.split("/").slice(2).map(decodeSegment);
    if (parts.length === 1 && parts[0] === "events") {
      allow(method, ["GET"]);
      return this.#subscribe(response);
    }
    if (parts[0] !== "devices" || parts.length > 3) {
      throw new ApiError(404, "not_found", `no API route ${url.pathname}; see GET /api/devices`);
    }
    if (parts.length === 1) {
      allow(method, ["GET"]);
      return sendJson(response, 200, { devices: this.list() });
    }
    const device = this.#device(parts[1]!);
    const id = device.info.id;
    switch (parts[2]) {
      case undefined:
        allow(method, ["GET"]);
        return sendJson(response, 200, device.info);
      case "display": {
        allow(method, ["GET", "PUT"]);
        const init: RequestInit = { method };
        if (method === "PUT") {
          // Checked here too, so a bad body gets a 400 without bothering the kiosk.
          const display = parseDisplayBody(await readBody(request));
          init.body = JSON.stringify(display);
          init.headers = { "Content-Type": "application/json" };
        }
        const answer = await this.#ask(device, "/display", init, signal, MAX_JSON_ANSWER);
        if (!answer.ok) return relayError(response, answer);
        const display = deviceJson(device, "/display", answer, (value) => parseDisplay(value));
        this.#update(id, { display }, device.dialer);
        return sendJson(response, 200, display);
      }
      case "screenshot": {
        allow(method, ["GET"]);
        const answer = await this.#ask(device, `/screenshot${url.search}`, {}, signal, MAX_SCREENSHOT_ANSWER);
        if (!answer.ok) return relayError(response, answer);
        if (!answer.body.subarray(0, PNG_SIGNATURE.length).equals(PNG_SIGNATURE)) {
          throw new ApiError(502, "bad_device_answer", `device ${id} answered /screenshot with something that is not a PNG`);
        }
        return relay(response, 200, "image/png", answer.body);
      }
      case "status": {
        allow(method, ["GET"]);
        const [status, rtt] = await Promise.all([this.#status(device, signal), this.#ping(device)]);
        const server = { rtt, remoteAddress: device.info.remoteAddress, connectedAt: device.info.connectedAt };
        return sendJson(response, 200, { ...status, server });
      }
      case "ping": {
        allow(method, ["POST"]);
        const rtt = await this.#ping(device);
        if (rtt === null) throw this.#goneOrTimeout(device, "ping");
        return sendJson(response, 200, { rtt });
      }
      case "disconnect": {
        allow(method, ["POST"]);
        device.dialer.close();
        this.#log(`device ${id} disconnected by the API`);
        return sendJson(response, 200, { disconnected: id });
      }
      default:
        throw new ApiError(404, "not_found", `no API route ${url.pathname}; try display, screenshot, status, ping or disconnect`);
    }
  }

  #device(id: string): Device {
    const device = this.#devices.get(id);
    if (!device) throw new ApiError(404, "device_not_found", `no device ${JSON.stringify(id)} is connected`);
    return device;
  }

  /**
   * Asks the kiosk for its status, checks it and updates the listed details; a status that is not a
   * {@link KioskStatus} is a 502 and changes nothing.
   */
  async #status(device: Device, signal: AbortSignal): Promise<KioskStatus> {
    const answer = await this.#ask(device, "/status", {}, signal, MAX_JSON_ANSWER);
    if (!answer.ok) throw answerError(answer);
    const status = deviceJson(device, "/status", answer, parseStatus);
    this.#update(device.info.id, { display: status.display, viewport: status.viewport }, device.dialer);
    return status;
  }

  /**
   * Sends one request to the kiosk and reads its whole answer, at most `limit` bytes, bounded by the
   * device timeout; settles at once when the device disconnects, whatever the transport does with the
   * in-flight request.
   */
  async #ask(device: Device, path: string, init: RequestInit, clientGone: AbortSignal, limit: number): Promise<Answer> {
    const { dialer } = device;
    const controller = new AbortController();
    const signal = AbortSignal.any([controller.signal, clientGone]);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exchange = (async (): Promise<Answer> => {
      const response = await dialer.fetch(`${DEVICE_ORIGIN}${path}`, { ...init, signal });
      const body = await readCapped(response, limit, () => `device ${dialer.id} answered ${path} with more than ${limit} bytes`);
      return { ok: response.ok, status: response.status, contentType: response.headers.get("content-type"), body };
    })();
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.#goneOrTimeout(device, path)), this.#deviceTimeout);
    });
    const disconnected = dialer.closed.then((reason): never => {
      throw new ApiError(502, "device_gone", `device ${dialer.id} disconnected before answering ${path} (${reason.message})`);
    });
    try {
      return await Promise.race([exchange, timeout, disconnected]);
    } catch (error) {
      if (error instanceof ApiError) throw error;
      if (dialer.closeReason) throw this.#goneOrTimeout(device, path);
      throw new ApiError(502, "device_error", `device ${dialer.id} failed to answer ${path}: ${describe(error)}`);
    } finally {
      clearTimeout(timer);
      controller.abort();
      // The losers of the race settle later; their outcome is already decided.
      exchange.catch(() => {});
    }
  }

  #goneOrTimeout(device: Device, what: string): ApiError {
    const { dialer } = device;
    if (dialer.closeReason) {
      return new ApiError(502, "device_gone", `device ${dialer.id} disconnected before answering ${what} (${dialer.closeReason.message})`);
    }
    return new ApiError(504, "device_timeout", `device ${dialer.id} did not answer ${what} within ${this.#deviceTimeout} ms`);
  }

  /** A yamux ping bounded by the device timeout; null when it fails. Updates the listed RTT. */
  async #ping(device: Device): Promise<number | null> {
    try {
      const rtt = Math.round((await device.dialer.ping({ timeout: this.#deviceTimeout })) * 10) / 10;
      this.#update(device.info.id, { rtt }, device.dialer);
      return rtt;
    } catch {
      return null;
    }
  }

  #remoteConnected(id: string, node: string, connectedAt: number | undefined): void {
    const previous = this.#devices.get(id);
    if (previous?.dialer instanceof RemoteKiosk) previous.dialer.gone(new Error(`device ${id} moved to node ${node}`));
    const info: DeviceInfo = {
      id,
      connectedAt: new Date(connectedAt ?? Date.now()).toISOString(),
      remoteAddress: null,
      userAgent: null,
      display: null,
      viewport: null,
      rtt: null,
      node,
    };
    this.#added({ dialer: new RemoteKiosk(this.#wslis, id, node), info });
  }

  #connected(dialer: Dialer): void {
    const info: DeviceInfo = {
      id: dialer.id,
      connectedAt: new Date(dialer.connectedAt).toISOString(),
      remoteAddress: dialer.remoteAddress ?? null,
      userAgent: dialer.header.get("user-agent"),
      display: null,
      viewport: null,
      rtt: null,
      ...(this.#wslis.nodeId === "local" ? {} : { node: this.#wslis.nodeId }),
    };
    const previous = this.#devices.get(dialer.id);
    if (previous?.dialer instanceof RemoteKiosk) previous.dialer.gone(new Error(`device ${dialer.id} moved to this node`));
    this.#added({ dialer, info });
  }

  #added(device: Device): void {
    const { dialer, info } = device;
    this.#devices.set(dialer.id, device);
    this.#log(`device ${dialer.id} connected ${info.remoteAddress ? `from ${info.remoteAddress}` : `to node ${info.node ?? "?"}`}`);
    this.#broadcast();
    // Learn what it shows; the list is already out, this only fills in details.
    this.#status(device, new AbortController().signal).catch((error: unknown) => {
      if (error instanceof ApiError && error.code === "bad_device_answer") this.#log(error.message);
    });
    void this.#ping(device);
  }

  #disconnected(dialer: KioskLink, reason: Error): void {
    if (this.#devices.get(dialer.id)?.dialer !== dialer) return; // replaced by a newer connection
    this.#devices.delete(dialer.id);
    if (dialer instanceof RemoteKiosk) dialer.gone(reason);
    this.#log(`device ${dialer.id} disconnected: ${reason.message}`);
    this.#broadcast();
  }

  /** Changes the listed details of `id` (only while `dialer`, when given, is still its connection). */
  #update(id: string, patch: Partial<DeviceInfo>, dialer?: KioskLink): void {
    const device = this.#devices.get(id);
    if (!device || (dialer && device.dialer !== dialer)) return;
    const before = JSON.stringify(device.info);
    Object.assign(device.info, patch);
    if (JSON.stringify(device.info) !== before) this.#broadcast();
  }

  #pingAll(): void {
    for (const device of this.#devices.values()) void this.#ping(device);
  }

  #subscribe(response: ServerResponse): void {
    response.writeHead(200, {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-store",
      Connection: "keep-alive",
      "X-Accel-Buffering": "no",
    });
    // Reconnect quickly after a server restart: the console should never look stale for long.
    response.write("retry: 1000\n\n");
    response.write(devicesEvent(this.list()));
    this.#streams.add(response);
    response.on("close", () => this.#streams.delete(response));
  }

  #broadcast(): void {
    const event = devicesEvent(this.list());
    for (const stream of this.#streams) stream.write(event);
  }

  #heartbeat(): void {
    for (const stream of this.#streams) stream.write("event: heartbeat\ndata: {}\n\n");
  }
}

/** A kiosk's whole answer. */
interface Answer {
  ok: boolean;
  status: number;
  contentType: string | null;
  body: Buffer;
}

function devicesEvent(devices: DeviceInfo[]): string {
  return `event: devices\ndata: ${JSON.stringify({ devices })}\n\n`;
}

/**
 * Headers on every API answer: never sniffed, never cached, and, should a browser render one as a
 * document anyway, sandboxed without scripts.
 */
const API_HEADERS = {
  "Cache-Control": "no-store",
  "X-Content-Type-Options": "nosniff",
  "Content-Security-Policy": "default-src 'none'; sandbox",
};

function relay(response: ServerResponse, status: number, contentType: string, body: Buffer): void {
  response.writeHead(status, { ...API_HEADERS, "Content-Type": contentType, "Content-Length": body.length });
  response.end(body);
}

/** Relays a kiosk's own JSON error (its status and `{ error, message }`), re-serialized; anything else is a 502. */
function relayError(response: ServerResponse, answer: Answer): void {
  const { status, code, message } = answerError(answer);
  sendJson(response, status, { error: code, message });
}

/** A kiosk's non-2xx answer as an ApiError: its 4xx passes through, anything else becomes 502. */
function answerError(answer: Answer): ApiError {
  let problem: { error?: unknown; message?: unknown } = {};
  try {
    problem = JSON.parse(answer.body.toString("utf8")) as typeof problem;
  } catch {
    // not JSON: described below
  }
  const code = typeof problem?.error === "string" ? problem.error.slice(0, 64) : "device_error";
  const message = typeof problem?.message === "string" ? problem.message.slice(0, 1000) : `the device answered ${answer.status}`;
  const status = answer.status >= 400 && answer.status < 500 ? answer.status : 502;
  return new ApiError(status, code, message);
}

/** Parses a kiosk's JSON answer with `check`; anything unexpected is a 502 that names the device. */
function deviceJson<T>(device: Device, path: string, answer: Answer, check: (value: unknown) => T): T {
  try {
    return check(JSON.parse(answer.body.toString("utf8")));
  } catch (error) {
    const why = error instanceof DisplayError || error instanceof StatusError ? error.message : "not valid JSON";
    throw new ApiError(502, "bad_device_answer", `device ${device.info.id} answered ${path} with an invalid body: ${why}`);
  }
}

/**
 * Reads a kiosk's answer body, at most `limit` bytes: a declared larger Content-Length fails at once, a
 * longer stream as soon as it passes the limit (the stream is cancelled, so the device's stream is reset).
 */
async function readCapped(response: Response, limit: number, tooLarge: () => string): Promise<Buffer> {
  const declared = Number(response.headers.get("content-length") ?? "0");
  if (declared > limit) {
    await response.body?.cancel().catch(() => {});
    throw new ApiError(502, "device_answer_too_large", tooLarge());
  }
  if (!response.body) return Buffer.alloc(0);
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) throw new ApiError(502, "device_answer_too_large", tooLarge());
      chunks.push(value);
    }
  } catch (error) {
    reader.cancel().catch(() => {});
    throw error;
  }
  return Buffer.concat(chunks, size);
}

/**
 * Refuses a write sent by a browser page of another origin: its `Origin` must name this server's own host
 * (the `Host` header), and `Sec-Fetch-Site`, when sent, must say same-origin or a user's own action.
 */
function refuseCrossOrigin(request: IncomingMessage): void {
  const origin = request.headers.origin;
  const site = request.headers["sec-fetch-site"];
  let sameOrigin = true;
  if (origin !== undefined) {
    try {
      sameOrigin = origin !== "null" && new URL(origin).host === request.headers.host;
    } catch {
      sameOrigin = false;
    }
  }
  if (site !== undefined && site !== "same-origin" && site !== "none") sameOrigin = false;
  if (!sameOrigin) {
    throw new ApiError(
      403,
      "cross_origin",
      `the API refuses writes from pages of other origins (Origin: ${origin ?? "none"}, Sec-Fetch-Site: ${site ?? "none"}); ` +
        "use the console served by this server, or a client that is not a browser page",
    );
  }
}

/** Sends a JSON body with `status`. */
export function sendJson(response: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value, null, 2) + "\n";
  response.writeHead(status, { ...API_HEADERS, "Content-Type": "application/json; charset=utf-8" });
  response.end(body);
}

function allow(method: string, methods: string[]): void {
  if (!methods.includes(method)) throw new ApiError(405, "method_not_allowed", `use ${methods.join(" or ")}`);
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new ApiError(400, "bad_path", `not a valid path segment: ${segment}`);
  }
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new ApiError(413, "body_too_large", `the body is larger than ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function parseDisplayBody(text: string): Display {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ApiError(400, "bad_json", 'the body is not valid JSON; send e.g. {"dashboard": "clock"}');
  }
  try {
    return parseDisplay(value);
  } catch (error) {
    if (error instanceof DisplayError) throw new ApiError(400, "bad_display", error.message);
    throw error;
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.cause instanceof Error ? `${error.message}: ${error.cause.message}` : error.message;
  return String(error);
}

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
 *   GET  /api/events                     → Server-Sent Events: `devices` with the whole list on every change
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import type { Dialer, Server } from "../server-node/index.js";
import { DisplayError, parseDisplay, type DeviceInfo, type Display, type KioskStatus } from "./shared.js";

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

interface Device {
  dialer: Dialer;
  info: DeviceInfo;
}

/** Largest request body the API reads, in bytes (an HTML display is at most 256 K characters). */
const MAX_BODY = 1024 * 1024;
/** Comment line sent on idle event streams so proxies keep them open, in ms. */
const SSE_HEARTBEAT = 15_000;

export class DemoApi {
  readonly #devices = new Map<string, Device>();
  readonly #streams = new Set<ServerResponse>();
  readonly #deviceTimeout: number;
  readonly #log: (line: string) => void;
  readonly #timers: ReturnType<typeof setInterval>[] = [];

  constructor(wslis: Server, options: ApiOptions = {}) {
    this.#deviceTimeout = options.deviceTimeout ?? 10_000;
    this.#log = options.log ?? (() => {});
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

  /** Connected devices, oldest first. */
  list(): DeviceInfo[] {
    return [...this.#devices.values()].map((d) => d.info);
  }

  /** Ends the event streams and timers (the wslis server is closed by its owner). */
  close(): void {
    for (const timer of this.#timers) clearInterval(timer);
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
        const answer = await this.#ask(device, "/display", init, signal);
        if (answer.ok) this.#update(id, { display: parseDisplay(JSON.parse(answer.body.toString("utf8"))) });
        return relay(response, answer);
      }
      case "screenshot": {
        allow(method, ["GET"]);
        return relay(response, await this.#ask(device, `/screenshot${url.search}`, {}, signal));
      }
      case "status": {
        allow(method, ["GET"]);
        const [answer, rtt] = await Promise.all([this.#ask(device, "/status", {}, signal), this.#ping(device)]);
        if (!answer.ok) return relay(response, answer);
        const status = JSON.parse(answer.body.toString("utf8")) as KioskStatus;
        this.#update(id, { display: status.display, viewport: status.viewport });
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
   * Sends one request to the kiosk and reads its whole answer, bounded by the device timeout; settles
   * at once when the device disconnects, whatever the transport does with the in-flight request.
   */
  async #ask(device: Device, path: string, init: RequestInit, clientGone: AbortSignal): Promise<Answer> {
    const { dialer } = device;
    const controller = new AbortController();
    const signal = AbortSignal.any([controller.signal, clientGone]);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exchange = (async (): Promise<Answer> => {
      const response = await dialer.fetch(`http://${encodeURIComponent(dialer.id)}.device${path}`, { ...init, signal });
      const body = Buffer.from(await response.arrayBuffer());
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

  #connected(dialer: Dialer): void {
    const info: DeviceInfo = {
      id: dialer.id,
      connectedAt: new Date(dialer.connectedAt).toISOString(),
      remoteAddress: dialer.remoteAddress ?? null,
      userAgent: dialer.header.get("user-agent"),
      display: null,
      viewport: null,
      rtt: null,
    };
    const device = { dialer, info };
    this.#devices.set(dialer.id, device);
    this.#log(`device ${dialer.id} connected from ${info.remoteAddress ?? "?"}`);
    this.#broadcast();
    // Learn what it shows; the list is already out, this only fills in details.
    void this.#ask(device, "/status", {}, new AbortController().signal)
      .then((answer) => {
        if (!answer.ok) return;
        const status = JSON.parse(answer.body.toString("utf8")) as KioskStatus;
        this.#update(dialer.id, { display: status.display, viewport: status.viewport }, dialer);
      })
      .catch(() => {});
    void this.#ping(device);
  }

  #disconnected(dialer: Dialer, reason: Error): void {
    if (this.#devices.get(dialer.id)?.dialer !== dialer) return; // replaced by a newer connection
    this.#devices.delete(dialer.id);
    this.#log(`device ${dialer.id} disconnected: ${reason.message}`);
    this.#broadcast();
  }

  /** Changes the listed details of `id` (only while `dialer`, when given, is still its connection). */
  #update(id: string, patch: Partial<DeviceInfo>, dialer?: Dialer): void {
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
    for (const stream of this.#streams) stream.write(": keep-alive\n\n");
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

function relay(response: ServerResponse, answer: Answer): void {
  response.writeHead(answer.status, {
    "Content-Type": answer.contentType ?? "application/octet-stream",
    "Content-Length": answer.body.length,
    "Cache-Control": "no-store",
  });
  response.end(answer.body);
}

/** Sends a JSON body with `status`. */
export function sendJson(response: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value, null, 2) + "\n";
  response.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store" });
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

/**
 * What a kiosk can display, shared by the kiosk page, the admin console and the demo server, so all three
 * accept and refuse exactly the same bodies of `PUT /display`. No DOM and no node:* here.
 */

/** Built-in dashboards; "welcome" is the idle screen a kiosk shows until told otherwise. */
export const DASHBOARDS = ["welcome", "clock", "metrics", "chart"] as const;
export type Dashboard = (typeof DASHBOARDS)[number];

/** The body of `PUT /display` and the answer of `GET /display`: exactly one of the three keys. */
export type Display = { url: string } | { html: string } | { dashboard: Dashboard };

/** Largest `html` display, in characters: a page of markup, not a site. */
export const MAX_HTML_LENGTH = 256 * 1024;

/** The display a kiosk starts with. */
export const IDLE_DISPLAY: Display = { dashboard: "welcome" };

/** A body that is not a valid {@link Display}; its message says what to send instead. */
export class DisplayError extends Error {
  override name = "DisplayError";
}

/**
 * Checks a parsed JSON body and returns it as a {@link Display}, or throws a {@link DisplayError}.
 * A `url` must be absolute http(s) or a path on the kiosk's own origin (resolved by the kiosk).
 */
export function parseDisplay(value: unknown): Display {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new DisplayError('expected a JSON object: {"url": ...}, {"html": ...} or {"dashboard": ...}');
  }
  const keys = Object.keys(value).filter((key) => key === "url" || key === "html" || key === "dashboard");
  if (keys.length !== 1) {
    throw new DisplayError(`expected exactly one of "url", "html", "dashboard"; got ${keys.length ? keys.join(", ") : "none"}`);
  }
  const record = value as Record<string, unknown>;
  if ("url" in record) {
    const url = record.url;
    if (typeof url !== "string" || !(/^https?:\/\//i.test(url) || url.startsWith("/"))) {
      throw new DisplayError('"url" must be an http(s) URL or a path starting with "/"');
    }
    try {
      new URL(url, "http://kiosk.invalid");
    } catch {
      throw new DisplayError(`"url" is not a valid URL: ${JSON.stringify(url)}`);
    }
    return { url };
  }
  if ("html" in record) {
    const html = record.html;
    if (typeof html !== "string") throw new DisplayError('"html" must be a string');
    if (html.length > MAX_HTML_LENGTH) throw new DisplayError(`"html" is longer than ${MAX_HTML_LENGTH} characters`);
    return { html };
  }
  const dashboard = record.dashboard;
  if (typeof dashboard !== "string" || !(DASHBOARDS as readonly string[]).includes(dashboard)) {
    throw new DisplayError(`"dashboard" must be one of ${DASHBOARDS.map((d) => JSON.stringify(d)).join(", ")}`);
  }
  return { dashboard: dashboard as Dashboard };
}

/** One line a person can read: "dashboard: clock", "url: https://…", "html (1.2 kB)". */
export function describeDisplay(display: Display): string {
  if ("url" in display) return display.url;
  if ("html" in display) return `HTML (${display.html.length.toLocaleString("en")} chars)`;
  return `${display.dashboard} dashboard`;
}

/** What `GET /status` answers (device side). */
export interface KioskStatus {
  deviceId: string;
  /** Seconds since the page loaded. */
  uptime: number;
  display: Display;
  viewport: { width: number; height: number; devicePixelRatio: number };
  userAgent: string;
  /** Round trip to the server in ms, measured by a yamux ping just now; null when it did not answer. */
  rtt: number | null;
  /** Times the page connected (1 = never reconnected). */
  connections: number;
  /** When the page loaded (ISO 8601). */
  startedAt: string;
}

/** A `GET /status` answer that is not a {@link KioskStatus}. */
export class StatusError extends Error {
  override name = "StatusError";
}

/** Longest user agent kept from a status answer, in characters. */
const MAX_USER_AGENT = 512;
/** Longest device id or timestamp accepted in a status answer, in characters. */
const MAX_SHORT_TEXT = 256;

/**
 * Checks a parsed `GET /status` answer field by field and returns a fresh {@link KioskStatus} holding only
 * the known fields, or throws a {@link StatusError}. The server stores what this returns and every console
 * renders it, so a device must not be able to put anything else there.
 */
export function parseStatus(value: unknown): KioskStatus {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new StatusError("the status is not a JSON object");
  const record = value as Record<string, unknown>;
  const text = (key: string, max: number): string => {
    const field = record[key];
    if (typeof field !== "string" || field.length > max) throw new StatusError(`"${key}" must be a string of at most ${max} characters`);
    return field;
  };
  const number = (source: Record<string, unknown>, key: string, min: number, max: number): number => {
    const field = source[key];
    if (typeof field !== "number" || !Number.isFinite(field) || field < min || field > max) {
      throw new StatusError(`"${key}" must be a number from ${min} to ${max}`);
    }
    return field;
  };
  let display: Display;
  try {
    display = parseDisplay(record.display);
  } catch (error) {
    throw new StatusError(`"display" is not a display: ${(error as Error).message}`);
  }
  const viewport = record.viewport;
  if (typeof viewport !== "object" || viewport === null || Array.isArray(viewport)) throw new StatusError('"viewport" must be an object');
  const size = viewport as Record<string, unknown>;
  const startedAt = text("startedAt", MAX_SHORT_TEXT);
  if (Number.isNaN(Date.parse(startedAt))) throw new StatusError('"startedAt" must be an ISO 8601 date');
  return {
    deviceId: text("deviceId", MAX_SHORT_TEXT),
    uptime: number(record, "uptime", 0, 1e10),
    display,
    viewport: {
      width: number(size, "width", 0, 100_000),
      height: number(size, "height", 0, 100_000),
      devicePixelRatio: number(size, "devicePixelRatio", 0, 100),
    },
    userAgent: text("userAgent", MAX_USER_AGENT),
    rtt: record.rtt === null ? null : number(record, "rtt", 0, 1e7),
    connections: number(record, "connections", 0, 1e12),
    startedAt,
  };
}

/** A device as the demo server lists it (`GET /api/devices` and the SSE `devices` event). */
export interface DeviceInfo {
  id: string;
  /** ISO 8601. */
  connectedAt: string;
  remoteAddress: string | null;
  userAgent: string | null;
  /** Last display the server knows of (from the device's status or the last PUT), or null before it asked. */
  display: Display | null;
  viewport: KioskStatus["viewport"] | null;
  /** Last round trip measured by the server's ping, in ms. */
  rtt: number | null;
  /** The server node the kiosk is connected to (with several nodes on Redis); absent on a single node. */
  node?: string;
}

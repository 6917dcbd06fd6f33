/**
 * The kiosk page: dials the demo server's wslis endpoint, keeps dialing when the link drops, and answers
 * the server's reverse-HTTP requests (set the display, take a screenshot, report status).
 *
 * Device id: `?deviceId=` in the page URL, else one generated on the first visit and kept in localStorage.
 * The current display is kept in localStorage too, so a kiosk that reloads shows what it was told to.
 */

import { listen, serveHttp, type Listener } from "../../src/index.js";
import { IDLE_DISPLAY, parseDisplay, type Display, type KioskStatus } from "../shared.js";
import { LinkBadge } from "./badge.js";
import { kioskHandler } from "./routes.js";
import { captureStage } from "./screenshot.js";
import { Stage } from "./stage.js";

/** How often the badge's round-trip time is refreshed while connected, in ms. */
const RTT_INTERVAL = 5000;
/** How long a status request waits for the server to answer its ping, in ms. */
const STATUS_PING_TIMEOUT = 2000;

const startedAt = new Date();
const deviceId = pickDeviceId();
const displayKey = `wslis-demo:display:${deviceId}`;
document.title = `${deviceId} · wslis kiosk`;

const stage = new Stage(document.getElementById("stage")!, { deviceId, adminUrl: `${location.origin}/admin` });
stage.show(savedDisplay() ?? IDLE_DISPLAY);
const badge = new LinkBadge(document.getElementById("link")!, deviceId);

let connections = 0;
let listener: Listener | undefined;

const handler = kioskHandler({
  get display() {
    return stage.display;
  },
  show(display: Display) {
    stage.show(display);
    localStorage.setItem(displayKey, JSON.stringify(display));
  },
  screenshot: (scale) => captureStage(stage.element, scale),
  status: async (): Promise<KioskStatus> => ({
    deviceId,
    uptime: Math.round((Date.now() - startedAt.getTime()) / 1000),
    display: stage.display,
    viewport: { width: window.innerWidth, height: window.innerHeight, devicePixelRatio: window.devicePixelRatio },
    userAgent: navigator.userAgent,
    rtt: await ping(STATUS_PING_TIMEOUT),
    connections,
    startedAt: startedAt.toISOString(),
  }),
});

void start();

async function start(): Promise<void> {
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/wslis`;
  // listen(), not dialAndListen(): the badge follows every attempt, the first ones included (a kiosk
  // often boots before its server is reachable).
  listener = listen(url, { params: { deviceId } });
  listener.addEventListener("connect", connected);
  listener.addEventListener("disconnect", (event) => {
    const { error, retryIn } = (event as CustomEvent<{ error: Error; retryIn: number | undefined }>).detail;
    if (retryIn === undefined) badge.offline(error.message);
    else badge.reconnecting(retryIn);
  });
  try {
    await listener.ready;
  } catch {
    return; // the disconnect event above already showed why
  }
  setInterval(() => {
    if (listener?.session) void ping(RTT_INTERVAL).then((rtt) => rtt !== null && badge.rtt(rtt));
  }, RTT_INTERVAL);
  await serveHttp(listener, handler, {
    onError: (error: unknown) => console.warn("wslis kiosk: a request failed", error),
  });
}

function connected(): void {
  connections++;
  badge.connected();
  void ping(STATUS_PING_TIMEOUT).then((rtt) => rtt !== null && badge.rtt(rtt));
}

/** Round trip to the server in ms (a yamux ping), or null when not connected or unanswered in time. */
async function ping(timeout: number): Promise<number | null> {
  if (!listener?.session) return null;
  try {
    return Math.round((await listener.ping({ timeout })) * 10) / 10;
  } catch {
    return null;
  }
}

function pickDeviceId(): string {
  const fromUrl = new URLSearchParams(location.search).get("deviceId")?.trim();
  if (fromUrl) return fromUrl;
  const key = "wslis-demo:deviceId";
  let id = localStorage.getItem(key);
  if (!id) {
    id = `kiosk-${crypto.randomUUID().slice(0, 6)}`;
    localStorage.setItem(key, id);
  }
  return id;
}

function savedDisplay(): Display | undefined {
  const saved = localStorage.getItem(displayKey);
  if (saved === null) return undefined;
  try {
    return parseDisplay(JSON.parse(saved));
  } catch {
    localStorage.removeItem(displayKey);
    return undefined;
  }
}

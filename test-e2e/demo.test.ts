/**
 * The demo, end to end in real Chromium: the demo server (port 0), two kiosk pages and the admin console.
 * The console lists the kiosks live, sets a display through its UI, the kiosk shows it, the API's
 * screenshot is a real PNG of that content, kiosks that leave are dropped and come back, and a kiosk
 * that hangs or leaves mid-request gets a JSON 504/502 instead of a hung request.
 */

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { inflateSync } from "node:zlib";
import type { Browser, BrowserContext, Page } from "playwright";
import { startDemo, type Demo } from "../demo/server.js";
import { launchChromium } from "./harness.js";

const VIEWPORT = { width: 800, height: 600 };
/** The colour block the console puts on a kiosk: rgb(255, 0, 170). */
const BLOCK: [number, number, number] = [255, 0, 170];
const BLOCK_HTML = `<div id="block" style="position:absolute;inset:0;background:rgb(${BLOCK.join(",")})"></div>`;
/** How long the demo waits for a kiosk's answer, in ms (short, so the 504 case is quick). */
const DEVICE_TIMEOUT = 3000;

let demo: Demo;
let browser: Browser;
let context: BrowserContext;
let admin: Page;
const kiosks = new Map<string, Page>();

before(async () => {
  demo = await startDemo({ port: 0, host: "127.0.0.1", log: () => {}, deviceTimeout: DEVICE_TIMEOUT });
  browser = await launchChromium();
  context = await browser.newContext({ viewport: VIEWPORT });
});

after(async () => {
  await browser?.close();
  await demo?.close();
});

/** Opens the kiosk page for `id` and waits until its badge says connected. */
async function openKiosk(id: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(demo.kioskUrl(id), { timeout: 10_000 });
  await page.waitForSelector('#link[data-state="connected"]', { timeout: 10_000 });
  kiosks.set(id, page);
  return page;
}

function listed(id: string): string {
  return `#devices [data-device-id="${id}"]`;
}

async function api(method: string, path: string, body?: string): Promise<Response> {
  return fetch(`${demo.url}${path}`, { method, body, signal: AbortSignal.timeout(15_000) });
}

test("the console lists two kiosks within a second of their connecting", async () => {
  admin = await context.newPage();
  await admin.goto(demo.adminUrl, { timeout: 10_000 });
  await admin.waitForSelector('#live[data-state="live"]', { timeout: 5000 });
  await Promise.all([openKiosk("k-one"), openKiosk("k-two")]);
  await admin.waitForSelector(listed("k-one"), { timeout: 1000 });
  await admin.waitForSelector(listed("k-two"), { timeout: 1000 });
  assert.equal(await admin.textContent("#count"), "2 kiosks online");

  const { devices } = (await (await api("GET", "/api/devices")).json()) as { devices: { id: string }[] };
  assert.deepEqual(devices.map((d) => d.id).sort(), ["k-one", "k-two"]);
});

test("a display set in the console's UI shows on that kiosk", async () => {
  // Background tabs get few animation frames, and Playwright's clicks wait on them.
  await admin.bringToFront();
  await admin.click(listed("k-one"));
  await admin.waitForSelector('.detail-id:has-text("k-one")', { timeout: 2000 });
  await admin.click('[data-tab="html"]');
  await admin.fill("#display-html", BLOCK_HTML);
  await admin.click('[data-action="apply-html"]');

  const kiosk = kiosks.get("k-one")!;
  const block = await kiosk.waitForSelector("#stage .html-display #block", { timeout: 5000 });
  assert.equal(await block.evaluate((el) => getComputedStyle(el).backgroundColor), `rgb(${BLOCK.join(", ")})`);
  // The other kiosk still shows its idle screen.
  assert.equal(await kiosks.get("k-two")!.$("#stage #block"), null);
  await admin.waitForSelector('[data-testid="current-display"]:has-text("HTML")', { timeout: 5000 });
});

test("the API's screenshot is a PNG of the kiosk's size that shows the colour block", async () => {
  const response = await api("GET", "/api/devices/k-one/screenshot");
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "image/png");
  const png = decodePng(Buffer.from(await response.arrayBuffer()));
  assert.equal(png.width, VIEWPORT.width);
  assert.equal(png.height, VIEWPORT.height);
  // The block covers the whole stage; the connection badge is not part of the capture.
  assert.ok(blockShare(png) > 0.98, `only ${(blockShare(png) * 100).toFixed(1)}% of the pixels are the block colour`);

  // The other kiosk's screenshot is its own screen, not a copy: no block, and not blank either.
  const other = decodePng(Buffer.from(await (await api("GET", "/api/devices/k-two/screenshot")).arrayBuffer()));
  assert.ok(blockShare(other) < 0.01);
  assert.ok(distinctColours(other) > 50, "the idle screen should have text and a gradient, not one flat colour");

  // The console shows the screenshot it took after the change, at the kiosk's size.
  await admin.waitForFunction(
    ({ width }) => (document.getElementById("screenshot-img") as HTMLImageElement | null)?.naturalWidth === width,
    VIEWPORT,
    { timeout: 10_000 },
  );
});

test("status and display answer JSON through the API", async () => {
  const status = (await (await api("GET", "/api/devices/k-one/status")).json()) as Record<string, unknown>;
  assert.equal(status.deviceId, "k-one");
  assert.deepEqual(status.display, { html: BLOCK_HTML });
  assert.deepEqual(status.viewport, { ...VIEWPORT, devicePixelRatio: 1 });
  assert.equal(typeof status.rtt, "number");
  assert.match(String(status.userAgent), /Chrome/);

  const put = await api("PUT", "/api/devices/k-two/display", JSON.stringify({ dashboard: "clock" }));
  assert.equal(put.status, 200);
  assert.deepEqual(await put.json(), { dashboard: "clock" });
  await kiosks.get("k-two")!.waitForSelector("#stage .clock", { timeout: 5000 });
  assert.deepEqual(await (await api("GET", "/api/devices/k-two/display")).json(), { dashboard: "clock" });
});

test("HTML displays keep their styles but run no pasted code", async () => {
  const html =
    `<style>#safe { color: rgb(1, 2, 3) }</style><p id="safe">hello</p>` +
    `<img src="data:," onerror="document.title='ran'"><script>document.title='ran'</script><a id="link" href="javascript:void 0">x</a>`;
  assert.equal((await api("PUT", "/api/devices/k-two/display", JSON.stringify({ html }))).status, 200);
  const kiosk = kiosks.get("k-two")!;
  const safe = await kiosk.waitForSelector("#stage #safe", { timeout: 5000 });
  assert.equal(await safe.evaluate((el) => getComputedStyle(el).color), "rgb(1, 2, 3)");
  await kiosk.waitForTimeout(200); // give a broken image's onerror the chance to fire, were it kept
  assert.equal(await kiosk.title(), "k-two · wslis kiosk");
  assert.equal(await kiosk.$("#stage script"), null);
  assert.equal(await kiosk.$eval("#stage #link", (a) => a.getAttribute("href")), null);
});

test("bad requests get JSON errors: unknown device 404, bad body 400, wrong method 405", async () => {
  const cases: [string, string, string | undefined, number, string][] = [
    ["GET", "/api/devices/nobody/status", undefined, 404, "device_not_found"],
    ["GET", "/api/devices/nobody/screenshot", undefined, 404, "device_not_found"],
    ["PUT", "/api/devices/k-one/display", "{not json", 400, "bad_json"],
    ["PUT", "/api/devices/k-one/display", JSON.stringify({ dashboard: "weather" }), 400, "bad_display"],
    ["PUT", "/api/devices/k-one/display", JSON.stringify({ url: "javascript:alert(1)" }), 400, "bad_display"],
    ["DELETE", "/api/devices/k-one/display", undefined, 405, "method_not_allowed"],
    ["GET", "/api/nothing", undefined, 404, "not_found"],
  ];
  for (const [method, path, body, status, error] of cases) {
    const response = await api(method, path, body);
    assert.equal(response.status, status, `${method} ${path}`);
    assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
    const json = (await response.json()) as { error: string; message: string };
    assert.equal(json.error, error, `${method} ${path}`);
    assert.ok(json.message.length > 0);
  }
});

test("a kiosk that does not answer gets 504; one that leaves mid-request gets 502 at once", async () => {
  const kiosk = kiosks.get("k-two")!;
  // Busy the kiosk's main thread: the WebSocket stays up, but nothing answers.
  const freeze = (ms: number) =>
    kiosk.evaluate((ms) => {
      setTimeout(() => {
        const end = Date.now() + ms;
        while (Date.now() < end);
      }, 0);
    }, ms);

  await freeze(DEVICE_TIMEOUT + 1500);
  let started = Date.now();
  const timedOut = await api("GET", "/api/devices/k-two/status");
  assert.equal(timedOut.status, 504);
  assert.equal(((await timedOut.json()) as { error: string }).error, "device_timeout");
  assert.ok(Date.now() - started >= DEVICE_TIMEOUT - 100);
  await kiosk.waitForFunction(() => true, undefined, { timeout: 10_000 }); // the freeze is over

  await freeze(DEVICE_TIMEOUT + 1500);
  started = Date.now();
  const pending = api("GET", "/api/devices/k-two/screenshot");
  await new Promise((resolve) => setTimeout(resolve, 300));
  const kicked = await api("POST", "/api/devices/k-two/disconnect");
  assert.equal(kicked.status, 200);
  const gone = await pending;
  assert.equal(gone.status, 502);
  const body = (await gone.json()) as { error: string; message: string };
  assert.equal(body.error, "device_gone");
  assert.match(body.message, /k-two disconnected/);
  assert.ok(Date.now() - started < DEVICE_TIMEOUT, "the request settled when the device left, not at the timeout");
  await admin.waitForSelector(listed("k-two"), { state: "detached", timeout: 5000 });
  // The kiosk redials on its own once its thread is free again.
  await admin.waitForSelector(listed("k-two"), { timeout: 15_000 });
});

test("a closed kiosk page leaves the console; reloaded, it comes back showing the same display", async () => {
  await kiosks.get("k-one")!.close();
  await admin.waitForSelector(listed("k-one"), { state: "detached", timeout: 5000 });
  assert.equal((await api("GET", "/api/devices/k-one/status")).status, 404);

  const kiosk = await openKiosk("k-one");
  await admin.waitForSelector(listed("k-one"), { timeout: 5000 });
  // The display was kept in the kiosk's storage across the reload.
  await kiosk.waitForSelector("#stage #block", { timeout: 5000 });

  // A reload in place also comes back.
  await kiosk.reload({ timeout: 10_000 });
  await kiosk.waitForSelector('#link[data-state="connected"]', { timeout: 10_000 });
  await admin.waitForSelector(listed("k-one"), { timeout: 5000 });
});

interface Png {
  width: number;
  height: number;
  /** RGBA, 8 bits per channel, row by row. */
  rgba: Buffer;
}

/** Share of pixels within a small tolerance of the block colour. */
function blockShare(png: Png): number {
  let hits = 0;
  for (let i = 0; i < png.rgba.length; i += 4) {
    if (BLOCK.every((value, c) => Math.abs(png.rgba[i + c]! - value) <= 8)) hits++;
  }
  return hits / (png.width * png.height);
}

function distinctColours(png: Png): number {
  const seen = new Set<number>();
  for (let i = 0; i < png.rgba.length; i += 4) seen.add(png.rgba.readUInt32BE(i));
  return seen.size;
}

/**
 * A minimal PNG decoder for what canvases write: 8-bit RGB or RGBA, not interlaced (PNG spec, ISO/IEC
 * 15948: chunks, zlib-compressed IDAT, one filter byte per scanline, filters 0–4).
 */
function decodePng(bytes: Buffer): Png {
  assert.ok(bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), "not a PNG signature");
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  let offset = 8;
  let ended = false;
  while (offset < bytes.length && !ended) {
    const length = bytes.readUInt32BE(offset);
    const type = bytes.toString("latin1", offset + 4, offset + 8);
    const data = bytes.subarray(offset + 8, offset + 8 + length);
    offset += 12 + length;
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [bitDepth, colourType, , , interlace] = data.subarray(8);
      assert.equal(bitDepth, 8, "bit depth");
      assert.equal(interlace, 0, "interlace");
      assert.ok(colourType === 6 || colourType === 2, `colour type ${colourType}`);
      channels = colourType === 6 ? 4 : 3;
    } else if (type === "IDAT") idat.push(data);
    else if (type === "IEND") ended = true;
  }
  assert.ok(ended && width > 0 && idat.length > 0, "truncated PNG");
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  assert.equal(raw.length, height * (stride + 1), "image data size");
  const out = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = y * stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? out[row + x - channels]! : 0;
      const b = y > 0 ? out[row - stride + x]! : 0;
      const c = x >= channels && y > 0 ? out[row - stride + x - channels]! : 0;
      const predictor = [0, a, b, (a + b) >> 1, paeth(a, b, c)][filter];
      assert.ok(predictor !== undefined, `filter ${filter}`);
      out[row + x] = (line[x]! + predictor) & 0xff;
    }
  }
  if (channels === 4) return { width, height, rgba: out };
  const rgba = Buffer.alloc(width * height * 4, 0xff);
  for (let i = 0, j = 0; i < out.length; i += 3, j += 4) out.copy(rgba, j, i, i + 3);
  return { width, height, rgba };
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

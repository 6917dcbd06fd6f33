/**
 * The demo, end to end in real Chromium: the demo server (port 0), two kiosk pages and the admin console.
 * The console lists the kiosks live, sets a display through its UI, the kiosk shows it, the API's
 * screenshot is a real PNG of that content, kiosks that leave are dropped and come back, and a kiosk
 * that hangs or leaves mid-request gets a JSON 504/502 instead of a hung request.
 */

import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { inflateSync } from "node:zlib";
import type { Browser, BrowserContext, Page } from "playwright";
import { MAX_JSON_ANSWER, MAX_SCREENSHOT_ANSWER } from "../demo/api.js";
import { startDemo, type Demo } from "../demo/server.js";
import { dialAndListen, serveHttp } from "../server-node/device.js";
import { launchChromium } from "./harness.js";

const VIEWPORT = { width: 800, height: 600 };
/** The colour block the console puts on a kiosk: rgb(255, 0, 170). */
const BLOCK: [number, number, number] = [255, 0, 170];
const BLOCK_HTML = `<div id="block" style="position:absolute;inset:0;background:rgb(${BLOCK.join(",")})"></div>`;
/** How long the demo waits for a kiosk's answer, in ms (short, so the 504 case is quick). */
const DEVICE_TIMEOUT = 5000;

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
  const block = await kiosk.frameLocator("#stage iframe.html-frame").locator("#block").elementHandle({ timeout: 5000 });
  assert.equal(await block.evaluate((el) => getComputedStyle(el).backgroundColor), `rgb(${BLOCK.join(", ")})`);
  // The other kiosk still shows its idle screen.
  assert.equal(await kiosks.get("k-two")!.$("#stage #block"), null);
  await admin.waitForSelector('[data-testid="current-display"]:has-text("HTML")', { timeout: 5000 });
});

/** A screenshot through the API, as a decoded PNG; a non-200 answer fails with its body. */
async function screenshot(id: string): Promise<ReturnType<typeof decodePng>> {
  const response = await api("GET", `/api/devices/${id}/screenshot`);
  const bytes = Buffer.from(await response.arrayBuffer());
  assert.equal(response.status, 200, `screenshot of ${id}: ${response.status} ${bytes.subarray(0, 300).toString()}`);
  return decodePng(bytes);
}

test("the API's screenshot is a PNG of the kiosk's size that shows the colour block", async () => {
  // The console shows the screenshot it took after the change, at the kiosk's size. The kiosk renders
  // one at a time: waiting for it first keeps the API's requests from queueing behind it.
  await admin.waitForFunction(
    ({ width }) => (document.getElementById("screenshot-img") as HTMLImageElement | null)?.naturalWidth === width,
    VIEWPORT,
    { timeout: 15_000 },
  );
  const response = await api("GET", "/api/devices/k-one/screenshot");
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "image/png");
  const png = decodePng(Buffer.from(await response.arrayBuffer()));
  assert.equal(png.width, VIEWPORT.width);
  assert.equal(png.height, VIEWPORT.height);
  // The block covers the whole stage; the connection badge is not part of the capture.
  assert.ok(blockShare(png) > 0.98, `only ${(blockShare(png) * 100).toFixed(1)}% of the pixels are the block colour`);

  // The other kiosk's screenshot is its own screen, not a copy: no block, and not blank either.
  const other = await screenshot("k-two");
  assert.ok(blockShare(other) < 0.01);
  assert.ok(distinctColours(other) > 50, "the idle screen should have text and a gradient, not one flat colour");
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
  const frame = kiosk.frameLocator("#stage iframe.html-frame");
  const safe = await frame.locator("#safe").elementHandle({ timeout: 5000 });
  assert.equal(await safe.evaluate((el) => getComputedStyle(el).color), "rgb(1, 2, 3)");
  await kiosk.waitForTimeout(200); // give a broken image's onerror the chance to fire, were it kept
  assert.equal(await kiosk.title(), "k-two · wslis kiosk");
  assert.equal(await frame.locator("script").count(), 0);
  assert.equal(await frame.locator("#link").getAttribute("href"), null);
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
  await kiosk.frameLocator("#stage iframe.html-frame").locator("#block").waitFor({ timeout: 5000 });

  // A reload in place also comes back.
  await kiosk.reload({ timeout: 10_000 });
  await kiosk.waitForSelector('#link[data-state="connected"]', { timeout: 10_000 });
  await admin.waitForSelector(listed("k-one"), { timeout: 5000 });
});

/**
 * Markup that ran script in the kiosk page before HTML displays were sandboxed and sanitized. Each one,
 * if it runs anywhere (the kiosk page, a nested frame, a data: document), logs `PWNED-n` and fires a
 * beacon request; the ones that can also try to take over the kiosk (title, storage, navigation).
 */
const BYPASSES: [name: string, html: (beacon: string) => string, click?: string][] = [
  ["iframe srcdoc with a script and same-origin access", (b) => `<iframe srcdoc="<script>${payload(1, b)};parent.document.title='PWNED-1';parent.localStorage.setItem('pwned','1')</script>"></iframe>`],
  ["java&#9;script: in href", (b) => `<a id="go" href="java&#9;script:${payload(2, b)}">tap</a>`, "#go"],
  ["java&#9;script: in src", (b) => `<iframe src="java&#9;script:${payload(3, b)}"></iframe>`],
  ["a leading control character in href", (b) => `<a id="go" href="&#1;javascript:${payload(4, b)}">tap</a>`, "#go"],
  ["a leading control character in src", (b) => `<iframe src="&#1;javascript:${payload(5, b)}"></iframe>`],
  ["data: in object", (b) => `<object data="data:text/html,<script>${payload(6, b)}</script>"></object>`],
  ["data: in embed", (b) => `<embed src="data:text/html,<script>${payload(7, b)}</script>">`],
  ["data: in iframe", (b) => `<iframe src="data:text/html,<script>${payload(8, b)}</script>"></iframe>`],
  ["meta refresh to another kiosk id", () => `<meta http-equiv="refresh" content="0;url=/?deviceId=k-stolen">`],
];

/** Waits until some frame of `page` (wherever the display put the markup) has `selector` containing `text`. */
async function inAnyFrame(page: Page, selector: string, text: string): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    for (const frame of page.frames()) {
      const found = await frame.$eval(selector, (el, text) => el.textContent?.includes(text), text).catch(() => false);
      if (found) return;
    }
    if (Date.now() > deadline) throw new Error(`no frame shows ${selector} with ${JSON.stringify(text)}`);
    await page.waitForTimeout(50);
  }
}

/** Script text that makes itself seen: a console line and a beacon request. */
function payload(n: number, beacon: string): string {
  return `console.log('PWNED-${n}');new Image().src='${beacon}?n=${n}'`;
}

test("an HTML display runs none of the script bypasses, navigates nowhere and persists nothing", async () => {
  const kiosk = await openKiosk("k-html");
  const kioskUrl = kiosk.url();
  const seen: string[] = [];
  const beacon = `${demo.url}/pwned`;
  kiosk.on("console", (message) => message.text().includes("PWNED") && seen.push(`console: ${message.text()}`));
  context.on("request", (request) => request.url().startsWith(beacon) && seen.push(`beacon: ${request.url()}`));
  const settle = async () => {
    // Every frame the markup made has loaded (or failed) before anything is judged.
    for (const frame of kiosk.frames()) await frame.waitForLoadState("load", { timeout: 5000 }).catch(() => {});
    await kiosk.waitForTimeout(300);
  };

  for (const [name, html, click] of BYPASSES) {
    const marker = `case ${BYPASSES.findIndex(([n]) => n === name) + 1}`;
    const marked = `${html(beacon)}<p id="marker">${marker}</p>`;
    const put = await api("PUT", "/api/devices/k-html/display", JSON.stringify({ html: marked }));
    assert.equal(put.status, 200, name);
    await inAnyFrame(kiosk, "#marker", marker);
    await settle();
    if (click) {
      // Click wherever the link ended up (the display's frame), as a visitor at a touch screen would.
      for (const frame of kiosk.frames()) {
        const link = await frame.$(click);
        if (link) await link.click({ timeout: 2000 }).catch(() => {});
      }
      await settle();
    }
    assert.deepEqual(seen, [], `${name}: script ran`);
    assert.equal(kiosk.url(), kioskUrl, `${name}: the kiosk was navigated`);
    assert.equal(await kiosk.title(), "k-html · wslis kiosk", name);
  }

  // The last display (the meta refresh) is kept in storage and shown again after a reload: still inert.
  await kiosk.reload({ timeout: 10_000 });
  await kiosk.waitForSelector('#link[data-state="connected"]', { timeout: 10_000 });
  await inAnyFrame(kiosk, "#marker", "case");
  await settle();
  assert.equal(kiosk.url(), kioskUrl);
  assert.equal(await kiosk.evaluate(() => localStorage.getItem("pwned")), null);
  const { devices } = (await (await api("GET", "/api/devices")).json()) as { devices: { id: string }[] };
  assert.ok(!devices.some((d) => d.id === "k-stolen"), "a kiosk was moved to another id");
  assert.deepEqual(seen, []);
  // The display frame is sandboxed without any flag: opaque origin, no scripts, no top navigation.
  assert.equal(await kiosk.$eval("#stage iframe.html-frame", (frame) => frame.getAttribute("sandbox")), "");
});

test("the screenshot of an HTML display shows its styled markup, images included", async () => {
  const red: [number, number, number] = [220, 20, 60];
  // A style rule, an inline style and an image: the three things the capture must reproduce.
  const pixel = await (await api("GET", "/api/devices/k-one/screenshot?scale=0.1")).arrayBuffer();
  const html =
    `<style>body { background: rgb(${red.join(",")}) }</style>` +
    `<img id="img" style="position:absolute;left:0;top:0;width:50vw;height:100vh" src="data:image/png;base64,${Buffer.from(pixel).toString("base64")}">`;
  assert.equal((await api("PUT", "/api/devices/k-html/display", JSON.stringify({ html }))).status, 200);
  const response = await api("GET", "/api/devices/k-html/screenshot");
  assert.equal(response.status, 200);
  const png = decodePng(Buffer.from(await response.arrayBuffer()));
  assert.equal(png.width, VIEWPORT.width);
  // The right half is the style rule's colour; the left half is k-one's screenshot (the pink block).
  const at = (x: number, y: number) => [...png.rgba.subarray((y * png.width + x) * 4, (y * png.width + x) * 4 + 3)];
  const near = (a: number[], b: number[]) => a.every((v, i) => Math.abs(v - b[i]!) <= 8);
  assert.ok(near(at(VIEWPORT.width * 0.75, VIEWPORT.height / 2), red), `right half is ${at(VIEWPORT.width * 0.75, 300)}`);
  assert.ok(near(at(VIEWPORT.width * 0.25, VIEWPORT.height / 2), BLOCK), `left half is ${at(VIEWPORT.width * 0.25, 300)}`);
  // The readable copy made for the capture is gone again.
  assert.equal(await kiosks.get("k-html")!.$("[data-capture]"), null);
});

test("the API refuses writes from other origins, from curl-like clients and the console it accepts them", async () => {
  // A real page of another site (another origin on this machine, so the browser lets it reach a local
  // address at all): a no-cors POST that would disconnect the kiosk, and a form that would change its display.
  const evil = createServer((_request, response) => {
    response.writeHead(200, { "Content-Type": "text/html" }).end("<h1>cute cats</h1>");
  });
  await new Promise<void>((resolve) => evil.listen(0, "127.0.0.1", resolve));
  const page = await context.newPage();
  const arrived: string[] = [];
  page.on("response", (response) => response.url().startsWith(demo.url) && arrived.push(`${response.status()} ${response.url()}`));
  const { connectedAt } = (await (await api("GET", "/api/devices/k-html")).json()) as { connectedAt: string };
  try {
    await page.goto(`http://localhost:${(evil.address() as AddressInfo).port}/`, { timeout: 10_000 });
    await page.evaluate(async (url) => {
      await fetch(url, { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body: "{}" });
    }, `${demo.url}/api/devices/k-html/disconnect`);
  } finally {
    await page.close();
    evil.closeAllConnections();
    await new Promise((resolve) => evil.close(resolve));
  }
  // The request did reach the server (the browser did not block it on its own), and was refused.
  assert.deepEqual(arrived, [`403 ${demo.url}/api/devices/k-html/disconnect`]);
  const after = await api("GET", "/api/devices/k-html");
  assert.equal(after.status, 200, "the kiosk is still connected");
  assert.equal(((await after.json()) as { connectedAt: string }).connectedAt, connectedAt, "and was not kicked");

  const before = await (await api("GET", "/api/devices/k-html/display")).json();
  // The same as any client can forge it; what a cross-site page can send without a preflight: text/plain, Origin of the attacker.
  const forged = await fetch(`${demo.url}/api/devices/k-html/display`, {
    method: "PUT",
    headers: { "Content-Type": "text/plain", Origin: "http://evil.example" },
    body: JSON.stringify({ dashboard: "clock" }),
  });
  assert.equal(forged.status, 403);
  assert.equal(((await forged.json()) as { error: string }).error, "cross_origin");
  const refused: Record<string, string>[] = [{ "Sec-Fetch-Site": "cross-site" }, { Origin: "null" }, { Origin: "http://localhost:1" }];
  for (const headers of refused) {
    const response = await fetch(`${demo.url}/api/devices/k-html/ping`, { method: "POST", headers });
    assert.equal(response.status, 403, JSON.stringify(headers));
  }
  assert.deepEqual(await (await api("GET", "/api/devices/k-html/display")).json(), before);

  // Same origin (the console's own requests) and no Origin at all (curl) pass.
  const own = await fetch(`${demo.url}/api/devices/k-html/ping`, { method: "POST", headers: { Origin: demo.url, "Sec-Fetch-Site": "same-origin" } });
  assert.equal(own.status, 200);
  assert.equal((await api("POST", "/api/devices/k-html/ping")).status, 200);
});

/** A Node device on `demo` answering every reverse-HTTP request with `answer`. */
async function hostileDevice(on: Demo, id: string, answer: (path: string) => Response) {
  const device = await dialAndListen(`ws://127.0.0.1:${on.port}/wslis`, { params: { deviceId: id }, reconnect: false });
  void serveHttp(device, (request) => answer(new URL(request.url).pathname));
  return device;
}

test("a device's invalid status is refused and stored nowhere; the console still renders every kiosk", async () => {
  const device = await hostileDevice(demo, "k-hostile", (path) =>
    path === "/status"
      ? Response.json({ display: "x", deviceId: "k-hostile" })
      : new Response(`<script>alert(1)</script>`, { headers: { "Content-Type": "text/html" } }),
  );
  try {
    await admin.bringToFront();
    await admin.waitForSelector(listed("k-hostile"), { timeout: 5000 });
    const status = await api("GET", "/api/devices/k-hostile/status");
    assert.equal(status.status, 502);
    assert.equal(((await status.json()) as { error: string }).error, "bad_device_answer");
    // Nothing of it was stored: the device's listed display is still unknown, and the console renders
    // every kiosk with what it shows.
    const info = (await (await api("GET", "/api/devices/k-hostile")).json()) as { display: unknown };
    assert.equal(info.display, null);
    await admin.waitForFunction(() => document.querySelectorAll("#devices .device").length >= 3, undefined, { timeout: 5000 });
    assert.match((await admin.textContent(`${listed("k-one")} .device-display`)) ?? "", /HTML/);
    await admin.click(listed("k-hostile"));
    await admin.waitForSelector('.detail-id:has-text("k-hostile")', { timeout: 2000 });

    // A device's HTML is never served from the console's origin.
    for (const path of ["display", "screenshot"]) {
      const response = await api("GET", `/api/devices/k-hostile/${path}`);
      assert.equal(response.status, 502, path);
      assert.match(response.headers.get("content-type") ?? "", /^application\/json/, path);
    }
  } finally {
    await device.close();
  }
  await admin.waitForSelector(listed("k-hostile"), { state: "detached", timeout: 5000 });
});

test("a device's endless answers are cut at the cap, long before the timeout, and its stream is reset", async () => {
  // Default options, as `npm start` runs it.
  const own = await startDemo({ port: 0, host: "127.0.0.1", log: () => {} });
  const produced = { status: 0, screenshot: 0 };
  /** An answer that never ends: 64 KiB chunks as fast as they are read. */
  const endless = (key: keyof typeof produced) =>
    new ReadableStream<Uint8Array>({
      pull(controller) {
        produced[key] += 65_536;
        controller.enqueue(new Uint8Array(65_536).fill(0x7b));
      },
    });
  const device = await hostileDevice(own, "k-endless", (path) =>
    path === "/status"
      ? new Response(endless("status"), { headers: { "Content-Type": "application/json" } })
      : new Response(endless("screenshot"), { headers: { "Content-Type": "image/png" } }),
  );
  try {
    const rssBefore = process.memoryUsage().rss;
    for (const [path, key, cap] of [
      ["screenshot", "screenshot", MAX_SCREENSHOT_ANSWER],
      ["status", "status", MAX_JSON_ANSWER],
    ] as const) {
      const started = Date.now();
      const response = await fetch(`${own.url}/api/devices/k-endless/${path}`, { signal: AbortSignal.timeout(15_000) });
      const took = Date.now() - started;
      assert.equal(response.status, 502, path);
      assert.equal(((await response.json()) as { error: string }).error, "device_answer_too_large", path);
      assert.ok(took < 9000, `${path}: cut at the cap, not at the 10 s timeout (${took} ms)`);
      const settledAt = produced[key];
      // The stream is reset: the device stops after what its send window had let through.
      let last = -1;
      for (let i = 0; i < 50 && produced[key] !== last; i++) {
        last = produced[key];
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.equal(produced[key], last, `${path}: the device is still sending`);
      console.log(`# ${path}: ${produced[key]} bytes produced, ${settledAt} when the API answered, cap ${cap}, ${took} ms`);
      assert.ok(produced[key] < cap + 20 * 1024 * 1024, `${path}: ${produced[key]} bytes produced for a cap of ${cap}`);
    }
    const grown = process.memoryUsage().rss - rssBefore;
    console.log(`# server RSS grew by ${(grown / 1048576).toFixed(0)} MB`);
    assert.ok(grown < 200 * 1024 * 1024, `the server grew by ${(grown / 1048576).toFixed(0)} MB`);
    // The device stays usable.
    const ping = await fetch(`${own.url}/api/devices/k-endless/ping`, { method: "POST", signal: AbortSignal.timeout(15_000) });
    assert.equal(ping.status, 200);
  } finally {
    await device.close();
    await own.close();
  }
});

test("device ids with a space, ':', '/' and '@' work through the API and the console", async () => {
  const ids = ["lobby 2", "door:3", "floor/4", "ops@hq"];
  for (const id of ids) {
    const kiosk = await openKiosk(id);
    const base = `/api/devices/${encodeURIComponent(id)}`;
    const put = await api("PUT", `${base}/display`, JSON.stringify({ dashboard: "clock" }));
    assert.equal(put.status, 200, `${id}: ${await put.clone().text()}`);
    await kiosk.waitForSelector("#stage .clock", { timeout: 5000 });
    const status = await api("GET", `${base}/status`);
    assert.equal(status.status, 200, id);
    assert.equal(((await status.json()) as { deviceId: string }).deviceId, id);
    const shot = await api("GET", `${base}/screenshot?scale=0.2`);
    assert.equal(shot.status, 200, id);
    assert.equal(shot.headers.get("content-type"), "image/png");
    assert.equal((await api("POST", `${base}/ping`)).status, 200, id);
  }
  // Through the console's UI: select one by clicking it and set a dashboard.
  await admin.bringToFront();
  const item = admin.locator("#devices .device").filter({ has: admin.locator(".device-id", { hasText: /^floor\/4$/ }) });
  await item.click({ timeout: 5000 });
  await admin.waitForSelector('.detail-id:has-text("floor/4")', { timeout: 2000 });
  await admin.click('[data-tab="dashboard"]');
  await admin.click('[data-dashboard="metrics"]');
  await kiosks.get("floor/4")!.waitForSelector("#stage .metrics", { timeout: 5000 });
  assert.equal(new URL(admin.url()).hash, `#device=${encodeURIComponent("floor/4")}`);
  for (const id of ids) await kiosks.get(id)!.close();
});

test("console layout: tiles only on their tab, the URL box takes paths, buttons stay on one line at 1920 px", async () => {
  const wide = await browser.newContext({ viewport: { width: 1920, height: 1080 } });
  try {
    const page = await wide.newPage();
    await page.goto(`${demo.adminUrl}#device=k-html`, { timeout: 10_000 });
    await page.waitForSelector('.detail-id:has-text("k-html")', { timeout: 5000 });
    await page.waitForSelector('.state-pill[data-state="online"]', { timeout: 5000 });
    const tiles = () =>
      page.$$eval(".dashboard-option", (options) =>
        options.map((o) => ({ display: getComputedStyle(o.parentElement!).display, height: o.getBoundingClientRect().height })),
      );
    for (const tab of ["url", "html", "dashboard"]) {
      await page.click(`[data-tab="${tab}"]`);
      const boxes = await tiles();
      assert.equal(boxes.length, 4);
      if (tab === "dashboard") assert.ok(boxes.every((b) => b.display === "grid" && b.height > 20), JSON.stringify(boxes));
      else assert.ok(boxes.every((b) => b.display === "none" && b.height === 0), `${tab}: ${JSON.stringify(boxes)}`);
    }

    await page.click('[data-tab="url"]');
    // Every button of the console keeps its label on one line at this width.
    const wrapped = await page.$$eval(".button", (buttons) =>
      buttons
        .filter((b) => b.getBoundingClientRect().width > 0)
        .filter((b) => {
          const range = document.createRange();
          range.selectNodeContents(b);
          const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
          return lines.size > 1 || b.scrollWidth > b.clientWidth + 1;
        })
        .map((b) => b.textContent),
    );
    assert.deepEqual(wrapped, []);

    // A path, which the API accepts, is accepted by the box too and shown on the kiosk.
    await page.fill("#display-url", "/admin");
    assert.equal(await page.$eval("#display-url", (input) => (input as HTMLInputElement).checkValidity()), true);
    await page.click('[data-action="apply-url"]');
    const frame = await kiosks.get("k-html")!.waitForSelector("#stage iframe.frame:not(.html-frame)", { timeout: 5000 });
    assert.equal(new URL((await frame.getAttribute("src"))!).pathname, "/admin");
    // What the API refuses, the box refuses, with the API's own reason, and nothing is sent.
    await page.fill("#display-url", "ftp://example.com/");
    const puts: string[] = [];
    page.on("request", (request) => request.method() === "PUT" && puts.push(request.url()));
    await page.click('[data-action="apply-url"]');
    assert.match(await page.$eval("#display-url", (input) => (input as HTMLInputElement).validationMessage), /http\(s\) URL or a path/);
    assert.deepEqual(puts, []);
  } finally {
    await wide.close();
  }
});

test("a console whose event stream goes silent for two heartbeats opens a new one", async () => {
  const page = await context.newPage();
  try {
    // The page's clock is fake: the server's 15 s heartbeats cannot reach it in time, so it hears silence.
    await page.clock.install();
    const opened: string[] = [];
    page.on("request", (request) => new URL(request.url()).pathname === "/api/events" && opened.push(request.url()));
    await page.goto(demo.adminUrl, { timeout: 10_000 });
    await page.waitForSelector('#live[data-state="live"]', { timeout: 5000 });
    assert.equal(opened.length, 1);
    await page.clock.runFor(30_000);
    assert.equal(opened.length, 1, "reconnected before two heartbeats were missed");
    await page.clock.runFor(6000);
    await page.waitForFunction(() => document.getElementById("live")?.dataset.state === "live", undefined, { timeout: 5000 });
    assert.equal(opened.length, 2, "a silent stream was kept");
  } finally {
    await page.close();
  }
});

test("during a server outage the console marks kiosks unknown and disables their buttons, then recovers", async () => {
  const own = await startDemo({ port: 0, host: "127.0.0.1", log: () => {}, deviceTimeout: DEVICE_TIMEOUT });
  let restarted: Demo | undefined;
  const outage = await browser.newContext({ viewport: VIEWPORT });
  try {
    const kiosk = await outage.newPage();
    await kiosk.goto(own.kioskUrl("k-outage"), { timeout: 10_000 });
    await kiosk.waitForSelector('#link[data-state="connected"]', { timeout: 10_000 });
    const console_ = await outage.newPage();
    await console_.goto(`${own.adminUrl}#device=k-outage`, { timeout: 10_000 });
    await console_.waitForSelector('#devices [data-device-id="k-outage"][data-state="online"]', { timeout: 5000 });
    await console_.waitForSelector('.state-pill[data-state="online"]', { timeout: 5000 });
    const enabled = () => console_.$$eval(".detail .button, .dashboard-option", (buttons) => buttons.filter((b) => !(b as HTMLButtonElement).disabled).length);
    assert.ok((await enabled()) > 0);

    await own.close();
    await console_.waitForSelector('#devices [data-device-id="k-outage"][data-state="unknown"]', { timeout: 5000 });
    await console_.waitForSelector('.state-pill[data-state="unknown"]', { timeout: 5000 });
    assert.equal(await enabled(), 0, "buttons stay live while the server is away");
    assert.match((await console_.textContent("#count")) ?? "", /unknown/);
    assert.equal(await console_.getAttribute("#live", "data-state"), "connecting");

    // The server comes back on the same port: the kiosk redials, the console is live again.
    restarted = await startDemo({ port: own.port, host: "127.0.0.1", log: () => {}, deviceTimeout: DEVICE_TIMEOUT });
    // The kiosk's next attempt comes after a full-jitter backoff whose ceiling doubles with every refused
    // one: up to the default policy's maxDelay, 30 s, after a long outage on a loaded machine.
    await console_.waitForSelector('#devices [data-device-id="k-outage"][data-state="online"]', { timeout: 35_000 });
    await console_.waitForSelector('.state-pill[data-state="online"]', { timeout: 5000 });
    assert.ok((await enabled()) > 0);
    assert.equal(await console_.getAttribute("#live", "data-state"), "live");
  } finally {
    await outage.close();
    await own.close();
    await restarted?.close();
  }
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

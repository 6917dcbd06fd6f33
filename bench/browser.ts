/**
 * wslis in real Chromium (/usr/bin/chromium or $WSLIS_CHROMIUM, the end-to-end flags) against a raw
 * WebSocket opened by the same page, to the same Node process:
 *  - download: the server sends N bytes in 64 KiB writes; the page counts them and answers the count;
 *  - upload: the page sends N bytes in 64 KiB writes; the server counts them;
 *  - round trip: 16 bytes out, 1 KB back: a raw ws message each way; a new wslis stream per exchange;
 *    and a reverse-HTTP GET (`dialer.fetch` answered by the page's `serveHttp`), p50 over sequential ones.
 * The page loads the BUILT bundle (dist/wslis.js): run `npm run build` first (`npm run bench` does).
 * Each round runs wslis and raw ws back to back (order alternating); ratios are medians of per-round ratios.
 *
 * Chromium is driven over the bare DevTools protocol (test-e2e/cdp.ts), not Playwright: Playwright enables
 * the Network domain on every page, and then Chromium copies every WebSocket message into a DevTools event
 * (base64) that Playwright parses in this process, the server's. Measured: 64 MiB took about 2 s instead
 * of 0.4 s either way, raw ws included, most of it in the browser process and this one; no deployed page
 * pays that.
 */

import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import WebSocket, { WebSocketServer } from "ws";
import { Server, type Dialer } from "./lib.js";
import { launchCdp } from "../test-e2e/cdp.js";
import { median, ratio, round, type Row, type Target } from "./format.js";
import { sendRaw, writeAll } from "./throughput.js";

const root = resolve(import.meta.dirname, "..");
const MiB = 1024 * 1024;
const REQUEST = new Uint8Array(16).fill(0x72);

export interface BrowserOptions {
  /** Rounds. Default 5. */
  rounds?: number;
  /** Bytes each way per round and implementation. Default 100 MiB. */
  bytes?: number;
  /** Sequential round trips per round and kind, for the p50s. Default 1000. */
  roundTrips?: number;
  /**
   * Untimed rounds of the same work first. Default 2. V8 compiles the page's and the server's code while
   * they run (the raw socket's few lines warm at once), and Chromium's network service moves large
   * messages slowly at first. The first warm-up round is reported apart, in the note.
   */
  warmupRounds?: number;
  log?: (line: string) => void;
}

export interface BrowserResult {
  rows: Row[];
  note: string;
  targets: Target[];
}

/**
 * The page: one wslis connection whose streams it serves by what the server asks (`mode`), one running
 * `serveHttp`, one raw WebSocket. Upload chunks wait while more than 4 MiB is buffered (the raw socket
 * has no other backpressure signal in a page).
 */
const PAGE = `<!doctype html><meta charset="utf-8"><title>wslis bench</title>
<script type="module">
import { dialAndListen, serveHttp } from "/dist/wslis.js";
const chunk = new Uint8Array(65536).map((_, i) => (i * 31 + 7) & 255);
const kilo = new Uint8Array(1000).fill(97);
window.bench = {
  async start(base) {
    const streams = await dialAndListen(base + "/wslis", { params: { deviceId: "streams" } });
    const http = await dialAndListen(base + "/wslis", { params: { deviceId: "http" } });
    serveHttp(http, () => new Response(kilo));
    (async () => {
      for await (const conn of streams) this.serve(conn).catch(() => conn.reset());
    })();
    const raw = new WebSocket(base + "/raw");
    raw.binaryType = "arraybuffer";
    await new Promise((resolve, reject) => { raw.onopen = resolve; raw.onerror = reject; });
    let expected = 0, got = 0;
    raw.onmessage = async ({ data }) => {
      if (typeof data === "string") {
        const [kind, n] = data.split(" ");
        if (kind === "down") { expected = Number(n); got = 0; }
        if (kind === "up") await this.uploadRaw(raw, Number(n));
        return;
      }
      if (expected === 0) { raw.send(kilo); return; } // a round trip
      got += data.byteLength;
      if (got === expected) { raw.send(String(got)); expected = 0; }
    };
  },
  async serve(conn) {
    const reader = conn.readable.getReader();
    const writer = conn.writable.getWriter();
    const first = await reader.read();
    const op = first.value[0];
    if (op === 0x72) { // a round trip: answer 1 KB and close
      await writer.write(kilo);
      await writer.close();
    } else if (op === 0x64) { // download: count to the end, answer the count
      let n = first.value.length;
      for (;;) { const { value, done } = await reader.read(); if (done) break; n += value.length; }
      await writer.write(new TextEncoder().encode(String(n)));
      await writer.close();
    } else if (op === 0x75) { // upload: the count follows the op, in decimal
      const n = Number(new TextDecoder().decode(first.value.subarray(1)));
      for (let sent = 0; sent < n; ) {
        const piece = n - sent >= chunk.length ? chunk : chunk.subarray(0, n - sent);
        sent += piece.length;
        await writer.ready;
        writer.write(piece).catch(() => {});
      }
      await writer.close();
    }
  },
  async uploadRaw(raw, n) {
    for (let sent = 0; sent < n; ) {
      const piece = n - sent >= chunk.length ? chunk : chunk.subarray(0, n - sent);
      sent += piece.length;
      raw.send(piece);
      while (raw.bufferedAmount > 4 * 1048576) await new Promise((resolve) => setTimeout(resolve, 0));
    }
  },
};
window.ready = true;
</script>`;

interface Rig {
  streams: Dialer;
  http: Dialer;
  raw: WebSocket;
  close(): Promise<void>;
}

async function startRig(log: (line: string) => void): Promise<Rig> {
  for (const file of ["dist/wslis.js"]) {
    if (!existsSync(join(root, file))) throw new Error(`${file} is missing: run \`npm run build\` first (npm run bench does)`);
  }
  const dialers = new Map<string, (dialer: Dialer) => void>();
  const connected = (id: string) => new Promise<Dialer>((resolve) => dialers.set(id, resolve));
  const streamsDevice = connected("streams");
  const httpDevice = connected("http");
  const wslis = new Server((dialer) => dialers.get(dialer.url.searchParams.get("deviceId") ?? "")?.(dialer), {
    logger: { warn() {}, error: console.error },
    drainTimeout: 100,
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const rawSocket = new Promise<WebSocket>((resolve) => wss.once("connection", resolve));
  const bundle = await readFile(join(root, "dist/wslis.js"));
  const http = createServer((request, response) => {
    if (request.url === "/dist/wslis.js") response.writeHead(200, { "Content-Type": "text/javascript" }).end(bundle);
    else if (request.url === "/") response.writeHead(200, { "Content-Type": "text/html; charset=utf-8" }).end(PAGE);
    else response.writeHead(404).end();
  });
  http.on("upgrade", (request, socket, head) => {
    if (request.url === "/raw") wss.handleUpgrade(request, socket, head, (ws) => wss.emit("connection", ws, request));
    else wslis.handleUpgrade(request, socket, head);
  });
  await new Promise<void>((done) => http.listen(0, "127.0.0.1", done));
  const port = (http.address() as AddressInfo).port;
  log("browser: launching Chromium");
  const browser = await launchCdp();
  const close = async () => {
    await browser.close();
    await wslis.close();
    for (const client of wss.clients) client.terminate();
    wss.close();
    http.closeAllConnections();
    await new Promise((done) => http.close(done));
  };
  try {
    const page = await browser.open(`http://127.0.0.1:${port}/`);
    for (let tries = 0; (await browser.evaluate(page, "window.ready === true")) !== true; tries++) {
      if (tries === 600) throw new Error("the bench page did not load its module within 30 s");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await browser.evaluate(page, `window.bench.start("ws://127.0.0.1:${port}")`);
    const [streams, httpDialer, raw] = await Promise.all([streamsDevice, httpDevice, rawSocket]);
    return { streams, http: httpDialer, raw, close };
  } catch (error) {
    await close();
    throw error;
  }
}

function nextMessage(ws: WebSocket): Promise<Buffer> {
  return new Promise((resolve) => ws.once("message", (data: Buffer) => resolve(data)));
}

/** Seconds one call of `run` takes. */
async function seconds(run: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await run();
  return (performance.now() - start) / 1000;
}

async function downloadWslis(rig: Rig, bytes: number): Promise<void> {
  const conn = await rig.streams.dial();
  const answer = new Response(conn.readable).text();
  const writer = conn.writable.getWriter();
  await writer.write(Uint8Array.of(0x64));
  writer.releaseLock();
  await writeAll(conn.writable, bytes - 1);
  const counted = Number(await answer);
  if (counted !== bytes) throw new Error(`the page counted ${counted} bytes, not ${bytes}`);
}

async function downloadRaw(rig: Rig, bytes: number): Promise<void> {
  rig.raw.send(`down ${bytes}`);
  const answer = nextMessage(rig.raw);
  await sendRaw(rig.raw, bytes);
  const counted = Number(String(await answer));
  if (counted !== bytes) throw new Error(`the page counted ${counted} bytes, not ${bytes}`);
}

async function uploadWslis(rig: Rig, bytes: number): Promise<void> {
  const conn = await rig.streams.dial();
  const writer = conn.writable.getWriter();
  await writer.write(new TextEncoder().encode(`u${bytes}`));
  let got = 0;
  for await (const chunk of conn.readable) got += chunk.length;
  await writer.close();
  if (got !== bytes) throw new Error(`${got} bytes came up, not ${bytes}`);
}

function uploadRaw(rig: Rig, bytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const onMessage = (data: Buffer) => {
      got += data.length;
      if (got < bytes) return;
      rig.raw.off("message", onMessage);
      if (got === bytes) resolve();
      else reject(new Error(`${got} bytes came up, not ${bytes}`));
    };
    rig.raw.on("message", onMessage);
    rig.raw.send(`up ${bytes}`);
  });
}

async function roundTripRaw(rig: Rig): Promise<void> {
  const answer = nextMessage(rig.raw);
  rig.raw.send(REQUEST);
  if ((await answer).length !== 1000) throw new Error("the page answered the wrong size");
}

async function roundTripStream(rig: Rig): Promise<void> {
  const conn = await rig.streams.dial();
  const writer = conn.writable.getWriter();
  void writer.write(REQUEST).catch(() => {});
  const body = await new Response(conn.readable).arrayBuffer();
  await writer.close();
  if (body.byteLength !== 1000) throw new Error("the page answered the wrong size");
}

async function roundTripFetch(rig: Rig): Promise<void> {
  const response = await rig.http.fetch("http://device/1k");
  if ((await response.arrayBuffer()).byteLength !== 1000) throw new Error("the page answered the wrong size");
}

/** p50 of `count` sequential calls, in µs. */
async function p50(count: number, run: () => Promise<void>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await run();
    times.push((performance.now() - start) * 1e3);
  }
  return median(times);
}

export async function benchBrowser(options: BrowserOptions = {}): Promise<BrowserResult> {
  const rounds = options.rounds ?? 5;
  const bytes = options.bytes ?? 100 * MiB;
  const roundTrips = options.roundTrips ?? 1000;
  const warmupRounds = options.warmupRounds ?? 2;
  const log = options.log ?? (() => {});
  const rig = await startRig(log);
  try {
    // Warm-up: JIT on both sides, the session's tuned window.
    const warm = Math.min(bytes, 8 * MiB);
    await downloadWslis(rig, warm);
    await downloadRaw(rig, warm);
    await uploadWslis(rig, warm);
    await uploadRaw(rig, warm);
    for (let i = 0; i < 100; i++) {
      await roundTripRaw(rig);
      await roundTripStream(rig);
      await roundTripFetch(rig);
    }

    type Kind = "down" | "up" | "stream rtt" | "fetch";
    const results: Record<Kind, { wslis: number[]; raw: number[] }> = {
      down: { wslis: [], raw: [] },
      up: { wslis: [], raw: [] },
      "stream rtt": { wslis: [], raw: [] },
      fetch: { wslis: [], raw: [] },
    };
    /** The first warm-up round's figures, wslis then raw ws. */
    const cold: Partial<Record<Kind, [number, number]>> = {};
    for (let r = -warmupRounds; r < rounds; r++) {
      const forwards = r % 2 === 0;
      const timed = r >= 0;
      const pairs: Array<[Kind, () => Promise<number>, () => Promise<number>]> = [
        ["down", async () => bytes / 1e6 / (await seconds(() => downloadWslis(rig, bytes))), async () => bytes / 1e6 / (await seconds(() => downloadRaw(rig, bytes)))],
        ["up", async () => bytes / 1e6 / (await seconds(() => uploadWslis(rig, bytes))), async () => bytes / 1e6 / (await seconds(() => uploadRaw(rig, bytes)))],
        ["fetch", () => p50(roundTrips, () => roundTripFetch(rig)), () => p50(roundTrips, () => roundTripRaw(rig))],
        ["stream rtt", () => p50(roundTrips, () => roundTripStream(rig)), () => p50(roundTrips, () => roundTripRaw(rig))],
      ];
      for (const [kind, ours, raw] of pairs) {
        let wslis: number;
        let rawWs: number;
        if (forwards) {
          wslis = await ours();
          rawWs = await raw();
        } else {
          rawWs = await raw();
          wslis = await ours();
        }
        if (timed) {
          results[kind].wslis.push(wslis);
          results[kind].raw.push(rawWs);
        } else if (r === -warmupRounds) cold[kind] = [wslis, rawWs];
        const which = timed ? `round ${r + 1}/${rounds}` : `warm-up round ${r + warmupRounds + 1}/${warmupRounds}`;
        log(`browser: ${which} ${kind}: wslis ${round(wslis)}, raw ws ${round(rawWs)}`);
      }
    }
    const perRound = (kind: Kind) => median(results[kind].wslis.map((value, i) => value / results[kind].raw[i]!));
    const mb = (kind: Kind) => ({ wslis: round(median(results[kind].wslis)), raw: round(median(results[kind].raw)) });
    const rows: Row[] = [
      { measure: `download server → page, ${bytes / MiB} MiB (MB/s)`, wslis: mb("down").wslis, "raw ws": mb("down").raw, "wslis / raw ws": ratio(perRound("down")) },
      { measure: `upload page → server, ${bytes / MiB} MiB (MB/s)`, wslis: mb("up").wslis, "raw ws": mb("up").raw, "wslis / raw ws": ratio(perRound("up")) },
      { measure: "reverse-HTTP GET 1 KB (dialer.fetch → serveHttp) vs raw ws round trip: p50 µs", wslis: mb("fetch").wslis, "raw ws": mb("fetch").raw, "wslis / raw ws": ratio(perRound("fetch")) },
      { measure: "new stream, 16 B out, 1 KB back, close, vs raw ws round trip: p50 µs", wslis: mb("stream rtt").wslis, "raw ws": mb("stream rtt").raw, "wslis / raw ws": ratio(perRound("stream rtt")) },
    ];
    const note =
      `Chromium, one page, the built dist/wslis.js, driven over the bare DevTools protocol (no Network domain: it copies every WebSocket message into an event); Node server on 127.0.0.1. Median of ${rounds} rounds; ratios are medians of ` +
      `per-round ratios, wslis and raw ws back to back in alternating order. MB = 10^6 bytes; 64 KiB writes both ways; ` +
      `the raw page upload waits while more than 4 MiB is buffered. Round trips: p50 of ${roundTrips} sequential ones. ` +
      `Timed rounds follow ${warmupRounds} untimed rounds of the same work` +
      (cold.fetch
        ? `; the first of them (a fresh page) measured, wslis / raw ws: download ${ratio(cold.down![0] / cold.down![1])}, upload ${ratio(cold.up![0] / cold.up![1])}, ` +
          `GET ${round(cold.fetch[0])} / ${round(cold.fetch[1])} µs, new stream ${round(cold["stream rtt"]![0])} / ${round(cold["stream rtt"]![1])} µs.`
        : ".");
    const targets: Target[] = [
      { measure: "Chromium download vs raw WebSocket", measured: perRound("down"), bound: 0.9, better: "higher" },
      { measure: "Chromium upload vs raw WebSocket", measured: perRound("up"), bound: 0.9, better: "higher" },
      { measure: "reverse-HTTP GET from the page vs a raw ws round trip", measured: perRound("fetch"), bound: 1.5, better: "lower" },
    ];
    return { rows, note, targets };
  } finally {
    await rig.close();
  }
}

/**
 * One-stream throughput, Node to Node over a WebSocket on 127.0.0.1: the same bytes through
 *  (a) raw `ws`: 64 KiB binary messages, no multiplexing (the ceiling);
 *  (b) wslis: the server dials a stream to a device (listenAndServe + dialAndListen) and writes;
 *  (c) yamux-js over the same kind of socket (ws adapted to a Node Duplex by createWebSocketStream).
 *
 * The sender is always the server side, as in wslis (the server pushes to the device). A run is timed from
 * the first byte written until the receiver has counted every byte. Both ends live in this one process, so
 * every byte's cost is paid on one core: the numbers compare implementations, they are not a capacity plan.
 */

import { once } from "node:events";
import type { AddressInfo } from "node:net";
import WebSocket, { WebSocketServer, createWebSocketStream } from "ws";
import { Client as YamuxClient, Server as YamuxServer } from "yamux-js";
import { dialAndListen } from "./lib.js";
import { median } from "./format.js";
import { collectGarbage } from "../test/helpers/memory.js";
import { listenAndServe, type Dialer } from "./lib.js";

/** Size of each write (and raw ws message), in bytes. */
const CHUNK = 64 * 1024;
/** Raw ws sender: bytes handed to ws and not yet written to the socket above which it waits, and below which it resumes. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
const MiB = 1024 * 1024;

export interface ThroughputOptions {
  /** Bytes per run for raw ws and wslis. Default 64 MiB. */
  bytes?: number;
  /** Bytes per run for yamux-js, which is much slower (it polls every 100 ms for window credit). Default 8 MiB. */
  yamuxJsBytes?: number;
  /** Timed runs of raw ws and wslis; the median is reported. Default 21. */
  runs?: number;
  /** Timed runs of yamux-js (in the first rounds). Default 3. */
  yamuxJsRuns?: number;
  /** Run only these implementations ("raw ws", "wslis", "yamux-js"), e.g. to profile one. Default all. */
  only?: string[];
  /** Called with progress lines (stderr by default in bench/index.ts). */
  log?: (line: string) => void;
}

export interface ThroughputRow {
  implementation: string;
  /** Median throughput, in MB/s (10^6 bytes per second). */
  mbps: number;
  /** Slowest and fastest runs, in MB/s. */
  min: number;
  max: number;
  /** Median over rounds of its throughput divided by raw ws's in the same round. */
  ratio: number;
  /** Median CPU time of the process (both ends) per GB moved, in ms: less noisy than wall time here. */
  cpuMsPerGB: number;
  /** Highest growth of JS heap + ArrayBuffer memory during one of its runs, in MB. */
  peakMemoryMB: number;
  bytesPerRun: number;
  runs: number;
}

/** One connected sender/receiver pair; `run` moves `bytes` one way and resolves when all arrived. */
interface Harness {
  run(bytes: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Runs the implementations interleaved (raw ws, wslis, yamux-js, then the other way round…) so that
 * drift in the machine's speed hits all of them alike, and returns one row each. A row's ratio is the
 * median, over rounds, of its rate divided by raw ws's rate in the same round.
 */
export async function benchThroughput(options: ThroughputOptions = {}): Promise<ThroughputRow[]> {
  const bytes = options.bytes ?? 64 * MiB;
  const yamuxJsBytes = options.yamuxJsBytes ?? 8 * MiB;
  const runs = options.runs ?? 21;
  const yamuxJsRuns = Math.min(options.yamuxJsRuns ?? 3, runs);
  const log = options.log ?? (() => {});
  const variants = (
    [
      ["raw ws", rawWs, bytes, runs],
      ["wslis", wslis, bytes, runs],
      ["yamux-js", yamuxJs, yamuxJsBytes, yamuxJsRuns],
    ] as const
  ).filter(([name]) => !options.only || options.only.includes(name));
  const harnesses: Harness[] = [];
  try {
    for (const [, setup, size] of variants) {
      const harness = await setup();
      harnesses.push(harness);
      await harness.run(Math.min(size / 4, 8 * MiB)); // warm-up: JIT, socket buffers
    }
    const rates: number[][] = variants.map(() => []);
    const peaks: number[] = variants.map(() => 0);
    const cpuPerGB: number[][] = variants.map(() => []);
    for (let round = 0; round < runs; round++) {
      for (const k of roundOrder(variants.length, round)) {
        const [name, , size, rounds] = variants[k]!;
        if (round >= rounds) continue;
        collectGarbage();
        const memory = peakMemory();
        const cpu = process.cpuUsage();
        const start = performance.now();
        await harnesses[k]!.run(size);
        rates[k]!.push(size / 1e6 / ((performance.now() - start) / 1000));
        const used = process.cpuUsage(cpu);
        cpuPerGB[k]!.push((used.user + used.system) / 1e3 / (size / 1e9));
        peaks[k] = Math.max(peaks[k]!, memory.stop());
        log(`${name}: round ${round + 1}/${rounds}: ${rates[k]!.at(-1)!.toFixed(1)} MB/s, ${cpuPerGB[k]!.at(-1)!.toFixed(0)} ms CPU per GB`);
      }
    }
    const raw = variants.findIndex(([name]) => name === "raw ws");
    return variants.map(([name, , size, rounds], k) => {
      const sorted = [...rates[k]!].sort((a, b) => a - b);
      const ratios = raw < 0 ? [NaN] : rates[k]!.map((rate, round) => rate / rates[raw]![round]!);
      return {
        implementation: name,
        mbps: median(sorted),
        min: sorted[0]!,
        max: sorted.at(-1)!,
        ratio: median(ratios),
        cpuMsPerGB: median(cpuPerGB[k]!),
        peakMemoryMB: peaks[k]! / 1e6,
        bytesPerRun: size,
        runs: rounds,
      };
    });
  } finally {
    for (const harness of harnesses) await harness.close();
  }
}

/**
 * The order of the implementations in a round: forwards in even rounds, backwards in odd ones, so that
 * going first or second (after the other's garbage, with the other's memory just freed) favours none.
 */
export function roundOrder(count: number, round: number): number[] {
  const order = [...Array(count).keys()];
  return round % 2 === 0 ? order : order.reverse();
}



/**
 * Samples heap + ArrayBuffer memory every 50 ms (process.memoryUsage() is not free); `stop()` returns the
 * peak growth over the start, in bytes.
 */
function peakMemory(): { stop(): number } {
  const used = () => {
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const base = used();
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, used())), 50);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(0, Math.max(peak, used()) - base);
    },
  };
}

/** A count of bytes a receiver expects; `done` resolves once that many arrived. */
class Expectation {
  #got = 0;
  readonly done: Promise<void>;
  #resolve!: () => void;
  constructor(readonly bytes: number) {
    this.done = new Promise((resolve) => (this.#resolve = resolve));
  }
  add(n: number): void {
    this.#got += n;
    if (this.#got >= this.bytes) this.#resolve();
  }
}

/** The 64 KiB block every sender writes over and over (content does not matter: nothing compresses). */
export const block = new Uint8Array(CHUNK).map((_, i) => (i * 31 + 7) & 0xff);

export function slice(remaining: number): Uint8Array {
  return remaining >= CHUNK ? block : block.subarray(0, remaining);
}

// (a) raw ws

async function rawWs(): Promise<Harness> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
  await once(wss, "listening");
  const accepted = once(wss, "connection") as Promise<[WebSocket]>;
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, { perMessageDeflate: false });
  await once(client, "open");
  const [server] = await accepted;
  let expectation: Expectation | undefined;
  client.on("message", (data: Buffer) => expectation?.add(data.length));
  return {
    async run(bytes) {
      expectation = new Expectation(bytes);
      await sendRaw(server, bytes);
      await expectation.done;
    },
    async close() {
      client.close();
      server.terminate();
      await new Promise((resolve) => wss.close(resolve));
    },
  };
}

/**
 * Sends `bytes` in 64 KiB messages with backpressure: `ws.send`'s callback says when a message left for
 * the socket, so at most HIGH_WATER bytes wait in ws, and sending resumes below LOW_WATER (no polling).
 */
export async function sendRaw(ws: WebSocket, bytes: number): Promise<void> {
  let pending = 0;
  let wake: (() => void) | undefined;
  let failure: Error | undefined;
  for (let sent = 0; sent < bytes; ) {
    const chunk = slice(bytes - sent);
    pending += chunk.length;
    sent += chunk.length;
    ws.send(chunk, { binary: true }, (error) => {
      if (error) failure = error;
      pending -= chunk.length;
      if (wake && (pending <= LOW_WATER || failure)) {
        wake();
        wake = undefined;
      }
    });
    if (pending > HIGH_WATER) await new Promise<void>((resolve) => (wake = resolve));
    if (failure) throw failure;
  }
}

// (b) wslis

async function wslis(): Promise<Harness> {
  let onDevice!: (dialer: Dialer) => void;
  const connected = new Promise<Dialer>((resolve) => (onDevice = resolve));
  const quiet = { warn() {}, error: console.error };
  const server = await listenAndServe("127.0.0.1:0", (dialer) => onDevice(dialer), { logger: quiet, drainTimeout: 100 });
  const listener = await dialAndListen(`ws://127.0.0.1:${server.address().port}`, {
    params: { deviceId: "bench" },
    reconnect: false,
  });
  const dialer = await connected;
  let expectation: Expectation | undefined;
  // The device: counts what each stream brings.
  const device = (async () => {
    for await (const conn of listener) {
      void (async () => {
        for await (const chunk of conn.readable) expectation?.add(chunk.length);
      })().catch(() => {});
    }
  })();
  return {
    async run(bytes) {
      expectation = new Expectation(bytes);
      const conn = await dialer.dial();
      await Promise.all([writeAll(conn.writable, bytes), expectation.done]);
    },
    async close() {
      await listener.close();
      await device.catch(() => {});
      await server.close();
    },
  };
}

/**
 * Writes `bytes` in 64 KiB chunks as fast as the stream takes them (`ready` is its backpressure), then
 * closes it; a failed write surfaces in the close.
 */
export async function writeAll(writable: WritableStream<Uint8Array>, bytes: number): Promise<void> {
  const writer = writable.getWriter();
  for (let sent = 0; sent < bytes; ) {
    const chunk = slice(bytes - sent);
    sent += chunk.length;
    await writer.ready;
    void writer.write(chunk).catch(() => {});
  }
  await writer.close();
}

// (c) yamux-js

async function yamuxJs(): Promise<Harness> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
  await once(wss, "listening");
  const accepted = once(wss, "connection") as Promise<[WebSocket]>;
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, { perMessageDeflate: false });
  await once(client, "open");
  const [serverSocket] = await accepted;
  let expectation: Expectation | undefined;
  const silent = () => {};
  // Roles as in wslis: the server side is the yamux client and opens the streams.
  const opener = new YamuxClient({ enableKeepAlive: false, logger: silent });
  const serverDuplex = createWebSocketStream(serverSocket);
  serverDuplex.pipe(opener).pipe(serverDuplex);
  const acceptor = new YamuxServer(
    (stream) => stream.on("data", (chunk: Buffer) => expectation?.add(chunk.length)),
    { enableKeepAlive: false, logger: silent },
  );
  const deviceDuplex = createWebSocketStream(client);
  deviceDuplex.pipe(acceptor).pipe(deviceDuplex);
  return {
    async run(bytes) {
      expectation = new Expectation(bytes);
      const stream = opener.open();
      for (let sent = 0; sent < bytes; ) {
        const chunk = slice(bytes - sent);
        sent += chunk.length;
        if (!stream.write(chunk)) await once(stream, "drain");
      }
      await expectation.done;
      stream.end();
    },
    async close() {
      opener.close();
      acceptor.close();
      client.terminate();
      serverSocket.terminate();
      await new Promise((resolve) => wss.close(resolve));
    },
  };
}

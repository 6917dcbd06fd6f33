/**
 * Streams against Go wslis, side by side: four pairs of processes, each end in its own process,
 *  - wslis server ↔ wslis device (bench/peer.ts, twice),
 *  - Go server ↔ Go device (test/go/bench: Debian's hashicorp/yamux with its default config over gorilla/websocket,
 *    shaped like Go wslis, built GOPATH-mode as the interop tests build their Go peer),
 *  - wslis server → Go device, and Go server → wslis device,
 * run the same scenarios in the same rounds, the pairs in alternating order within a round:
 *  (a) new stream + 1 KiB each way + close: p50 / p99 latency one at a time, and ops/s with 64 in flight;
 *  (b) 64 streams × 4 MiB at once, server → device: aggregate MB/s and CPU per GB (both processes);
 *  (c) one stream of 64 MiB, server → device (the row that matters: our server → Go device);
 *  (d) 10,000 streams held open on one session: time to open them all (one byte each way on each) and
 *      memory per open stream on both ends (after a full GC, with the streams open, minus before), in
 *      rounds of their own after (a)-(c), followed by 2,000 exchanges as in (a), whose p99 is reported apart.
 * Each phase runs untimed warm-up rounds of the same work first. Every figure against Go is the median,
 * over rounds, of the ratio measured within the round.
 */

import { fileURLToPath } from "node:url";
import { GoPeer, goPeerBinary } from "../test/helpers/peers.js";
import { median, ratio, round, type Row, type Target } from "./format.js";
import { within } from "../test/helpers/assert.js";

const MiB = 1024 * 1024;
const nodePeer = fileURLToPath(new URL("./peer.ts", import.meta.url));

export interface StreamsOptions {
  /** Rounds; every figure is a median over them. Default 9. */
  rounds?: number;
  /**
   * Untimed rounds of the same work before the timed ones, every pair. Default 2. V8 compiles wslis's
   * code while it runs; Go is compiled ahead of time. The first warm-up round is reported apart.
   */
  warmupRounds?: number;
  /** Sequential new-stream exchanges per round, for p50/p99. Default 2000. */
  rrOps?: number;
  /** Exchanges per round with 64 in flight, for ops/s. Default 5000. */
  rrConcurrentOps?: number;
  /** Streams at once in the bulk scenario. Default 64. */
  bulkStreams?: number;
  /** Bytes per stream in the bulk scenario. Default 4 MiB. */
  bulkBytes?: number;
  /** Bytes of the one-stream scenario. Default 64 MiB. */
  singleBytes?: number;
  /** Streams held open at once. Default 10,000. */
  holdStreams?: number;
  log?: (line: string) => void;
}

type Impl = "wslis" | "Go";

interface Pair {
  name: string;
  server: Impl;
  device: Impl;
}

const PAIRS: Pair[] = [
  { name: "wslis ↔ wslis", server: "wslis", device: "wslis" },
  { name: "Go ↔ Go", server: "Go", device: "Go" },
  { name: "wslis server → Go device", server: "wslis", device: "Go" },
  { name: "Go server → wslis device", server: "Go", device: "wslis" },
];
const GO_GO = 1;

/** A running pair: the two processes. */
interface Running {
  server: GoPeer;
  device: GoPeer;
}

/** What one pair measured in one round. */
interface Sample {
  p50Us: number;
  p99Us: number;
  opsPerSec: number;
  bulkMBps: number;
  bulkCpuMsPerGB: number;
  singleMBps: number;
  openMs: number;
  serverBytesPerStream: number;
  deviceBytesPerStream: number;
  /**
   * A wslis server's process only (NaN for Go): Node's bare web streams, as many pairs as streams were
   * held, held the same way (peer.ts `webstreams`): bytes per pair, and µs to make one.
   */
  webStreamBytes: number;
  webStreamUs: number;
  /** p99 of the sequential new-stream exchanges right after the 10,000 streams were released. */
  p99AfterHoldUs: number;
}

/** The figures of the first phase (exchanges and bulk), and of the second (10,000 streams). */
type FlowSample = Pick<Sample, "p50Us" | "p99Us" | "opsPerSec" | "bulkMBps" | "bulkCpuMsPerGB" | "singleMBps">;
type HoldSample = Pick<Sample, "openMs" | "serverBytesPerStream" | "deviceBytesPerStream" | "p99AfterHoldUs" | "webStreamBytes" | "webStreamUs">;

export interface StreamsResult {
  /** Per scenario: a heading and its rows. */
  tables: Array<{ title: string; rows: Row[]; note: string }>;
  targets: Target[];
}

async function command(peer: GoPeer, line: string): Promise<Record<string, number>> {
  const reply = await peer.command(line, 600_000);
  if (reply.error) throw new Error(`"${line}" failed: ${reply.error}\n${peer.stderr}`);
  return reply as unknown as Record<string, number>;
}

async function start(pair: Pair, goBinary: string, maxStreams: number): Promise<Running> {
  const spawn = (impl: Impl, args: string[]) =>
    impl === "Go"
      ? GoPeer.spawn(goBinary, args[0] === "server" ? ["-mode", "server"] : ["-mode", "device", "-url", args[1]!])
      : GoPeer.spawn(process.execPath, ["--expose-gc", "--import", "tsx", nodePeer, ...args, String(maxStreams)]);
  const server = spawn(pair.server, ["server"]);
  try {
    const { port } = await server.event("listening", 60_000);
    const device = spawn(pair.device, ["device", `ws://127.0.0.1:${port}/?deviceId=bench`]);
    try {
      await within(Promise.all([server.event("connected", 60_000), device.event("connected", 60_000)]), 60_000, `${pair.name} to connect`);
      return { server, device };
    } catch (error) {
      await device.stop();
      throw error;
    }
  } catch (error) {
    await server.stop();
    throw error;
  }
}

async function measureFlow(running: Running, options: Required<Omit<StreamsOptions, "log">>): Promise<FlowSample> {
  const { server, device } = running;
  // Untimed first, as the reverse-HTTP bench does: the previous scenarios leave garbage and cold code
  // behind that the first exchanges after them meet.
  await command(server, `rr ${Math.ceil(options.rrOps / 4)} 1`);
  const latency = await command(server, `rr ${options.rrOps} 1`);
  const rate = await command(server, `rr ${options.rrConcurrentOps} 64`);

  const cpuBefore = (await command(server, "cpu")).cpuUs! + (await command(device, "cpu")).cpuUs!;
  const bulk = await command(server, `bulk ${options.bulkStreams} ${options.bulkBytes}`);
  const cpuAfter = (await command(server, "cpu")).cpuUs! + (await command(device, "cpu")).cpuUs!;
  const bulkBytes = options.bulkStreams * options.bulkBytes;

  const single = await command(server, `bulk 1 ${options.singleBytes}`);
  return {
    p50Us: latency.p50Us!,
    p99Us: latency.p99Us!,
    opsPerSec: rate.opsPerSec!,
    bulkMBps: bulkBytes / bulk.elapsedUs!,
    bulkCpuMsPerGB: (cpuAfter - cpuBefore) / 1e3 / (bulkBytes / 1e9),
    singleMBps: options.singleBytes / single.elapsedUs!,
  };
}

/**
 * The 10,000 streams, in rounds of their own after the others: releasing them leaves our server's
 * young-generation collections slow for the next couple of thousand exchanges (Node 20's web streams),
 * which the exchanges measured after them would carry. What those exchanges meet is measured here, apart.
 */
async function measureHold(running: Running, pair: Pair, options: Required<Omit<StreamsOptions, "log">>): Promise<HoldSample> {
  const { server, device } = running;
  const serverBefore = (await command(server, "stats")).memBytes!;
  const deviceBefore = (await command(device, "stats")).memBytes!;
  const hold = await command(server, `hold ${options.holdStreams}`);
  const serverHeld = (await command(server, "stats")).memBytes!;
  const deviceHeld = (await command(device, "stats")).memBytes!;
  await command(server, "release");
  const after = await command(server, `rr ${options.rrOps} 1`);
  const bare = pair.server === "wslis" ? await command(server, `webstreams ${options.holdStreams}`) : undefined;
  return {
    webStreamBytes: bare?.bytesPerStream ?? NaN,
    webStreamUs: bare?.usPerStream ?? NaN,
    openMs: hold.openUs! / 1e3,
    serverBytesPerStream: (serverHeld - serverBefore) / options.holdStreams,
    deviceBytesPerStream: (deviceHeld - deviceBefore) / options.holdStreams,
    p99AfterHoldUs: after.p99Us!,
  };
}

/**
 * Runs every scenario on every pair, round after round (pairs in alternating order), and returns the
 * tables and the targets' ratios.
 */
export async function benchStreams(options: StreamsOptions = {}): Promise<StreamsResult> {
  const settings = {
    rounds: options.rounds ?? 9,
    warmupRounds: options.warmupRounds ?? 2,
    rrOps: options.rrOps ?? 2000,
    rrConcurrentOps: options.rrConcurrentOps ?? 5000,
    bulkStreams: options.bulkStreams ?? 64,
    bulkBytes: options.bulkBytes ?? 4 * MiB,
    singleBytes: options.singleBytes ?? 64 * MiB,
    holdStreams: options.holdStreams ?? 10_000,
  };
  const log = options.log ?? (() => {});
  log("streams: building the Go bench peer");
  const goBinary = await goPeerBinary("test/go/bench/main.go");
  const running: Running[] = [];
  try {
    for (const pair of PAIRS) {
      running.push(await start(pair, goBinary, settings.holdStreams + 64));
      // Warm-up: JIT, socket buffers, the session's tuned window.
      await command(running.at(-1)!.server, "rr 200 1");
      await command(running.at(-1)!.server, `rr ${Math.min(500, settings.rrConcurrentOps)} 64`);
      await command(running.at(-1)!.server, `bulk 4 ${Math.min(settings.bulkBytes, MiB)}`);
      log(`streams: ${pair.name} connected`);
    }
    // Two phases, each in rounds (pairs in alternating order) after untimed warm-up rounds of its own.
    const phase = async <T>(name: string, run: (running: Running, pair: Pair) => Promise<T>, describe: (sample: T) => string) => {
      const timed: T[][] = PAIRS.map(() => []);
      const first: T[] = [];
      for (let r = -settings.warmupRounds; r < settings.rounds; r++) {
        const order = r % 2 === 0 ? [...PAIRS.keys()] : [...PAIRS.keys()].reverse();
        for (const k of order) {
          const sample = await run(running[k]!, PAIRS[k]!);
          if (r >= 0) timed[k]!.push(sample);
          else if (r === -settings.warmupRounds) first[k] = sample;
          const which = r < 0 ? `warm-up round ${r + settings.warmupRounds + 1}/${settings.warmupRounds}` : `round ${r + 1}/${settings.rounds}`;
          log(`streams (${name}): ${which} ${PAIRS[k]!.name}: ${describe(sample)}`);
        }
      }
      return { timed, first };
    };
    const flow = await phase(
      "exchanges, bulk",
      (running) => measureFlow(running, settings),
      (sample) =>
        `p50 ${round(sample.p50Us)} µs, p99 ${round(sample.p99Us)} µs, ${round(sample.opsPerSec)} ops/s at 64, ` +
        `bulk ${round(sample.bulkMBps)} MB/s (${round(sample.bulkCpuMsPerGB)} CPU ms/GB), one stream ${round(sample.singleMBps)} MB/s`,
    );
    const held = await phase(
      `${settings.holdStreams} streams`,
      (running, pair) => measureHold(running, pair, settings),
      (sample) =>
        `${settings.holdStreams} streams open in ${round(sample.openMs)} ms, ` +
        `${round(sample.serverBytesPerStream)} / ${round(sample.deviceBytesPerStream)} B per stream (server / device), ` +
        `then p99 ${round(sample.p99AfterHoldUs)} µs`,
    );
    const samples: Sample[][] = flow.timed.map((rounds, k) => rounds.map((sample, r) => ({ ...sample, ...held.timed[k]![r]! })));
    const cold: Sample[] = flow.first.map((sample, k) => ({ ...sample, ...held.first[k]! }));
    return report(samples, cold, settings);
  } finally {
    for (const { server, device } of running) {
      await device.stop();
      await server.stop();
    }
  }
}

function report(samples: Sample[][], cold: Sample[], settings: Required<Omit<StreamsOptions, "log">>): StreamsResult {
  const value = (k: number, key: keyof Sample) => median(samples[k]!.map((s) => s[key]));
  /** Median over rounds of pair k's figure divided by Go ↔ Go's in the same round. */
  const vsGo = (k: number, key: keyof Sample) => median(samples[k]!.map((s, r) => s[key] / samples[GO_GO]![r]![key]));
  const rows = (columns: Array<[string, keyof Sample, (n: number) => string]>): Row[] =>
    PAIRS.map((pair, k) => {
      const row: Row = { pair: pair.name };
      for (const [label, key, format] of columns) {
        row[label] = format(value(k, key));
        row[`${label} × Go`] = ratio(vsGo(k, key));
      }
      return row;
    });
  const kb = (n: number) => (n / 1024).toFixed(1);
  const MB = (n: number) => round(n);
  const method =
    `Median of ${settings.rounds} rounds, after ${settings.warmupRounds} untimed rounds of the same work; "× Go" is the median of per-round ratios against Go ↔ Go, measured in the same round. ` +
    "Server and device are separate processes on 127.0.0.1.";
  /** The first warm-up round (fresh processes: V8 has not compiled our code yet), for the notes. */
  const coldly = (key: keyof Sample, format: (n: number) => string) =>
    cold.length === 0 ? "" : ` First warm-up round (fresh processes): ${PAIRS.map((pair, k) => `${pair.name} ${format(cold[k]![key])}`).join(", ")}.`;
  const mib = (n: number) => `${n / MiB} MiB`;
  const tables = [
    {
      title: "New stream + 1 KiB each way + close (the server opens, sends 1 KiB; the device answers 1 KiB and closes)",
      rows: rows([
        ["p50 µs", "p50Us", round],
        ["p99 µs", "p99Us", round],
        ["ops/s at 64 in flight", "opsPerSec", round],
      ]),
      note:
        `${method} p50/p99 over ${settings.rrOps} sequential exchanges (after ${Math.ceil(settings.rrOps / 4)} untimed ones), ops/s over ${settings.rrConcurrentOps} with 64 in flight.` +
        coldly("p50Us", (n) => `p50 ${round(n)} µs`) +
        coldly("p99Us", (n) => `p99 ${round(n)} µs`) +
        ` Right after ${settings.holdStreams.toLocaleString("en")} streams were released (the last table's rounds), p99 of the next ${settings.rrOps} exchanges: ` +
        `${PAIRS.map((pair, k) => `${pair.name} ${round(value(k, "p99AfterHoldUs"))} µs`).join(", ")}.`,
    },
    {
      title: `${settings.bulkStreams} streams × ${mib(settings.bulkBytes)} at once, server → device, and one stream of ${mib(settings.singleBytes)}`,
      rows: rows([
        ["aggregate MB/s", "bulkMBps", MB],
        ["CPU ms per GB (both ends)", "bulkCpuMsPerGB", round],
        ["one stream MB/s", "singleMBps", MB],
      ]),
      note: `${method} MB = 10^6 bytes; 64 KiB writes; timed from the first open until every stream's count came back. CPU is user + system of both processes.`,
    },
    {
      title: `${settings.holdStreams.toLocaleString("en")} streams open at once on one session`,
      rows: rows([
        ["time to open (ms)", "openMs", round],
        ["server KiB per stream", "serverBytesPerStream", kb],
        ["device KiB per stream", "deviceBytesPerStream", kb],
      ]),
      note:
        `${method} These rounds run after every round of the tables above. Open: from the first open until every stream carried one byte each way. Memory: after a full GC with the ` +
        "streams open, minus before; Node: heap used + external (ArrayBuffers included); Go: heap in use + goroutine stacks " +
        "(the Go device keeps one goroutine per stream, as a Go wslis handler does). wslis runs with `session.maxStreams` " +
        "raised above the count (default 4096); hashicorp/yamux has no such bound." +
        ` Node's own web streams, in the wslis ↔ wslis server's process in the same rounds, with nothing of wslis in them (a ReadableStream with its reader and a read pending, ` +
        `and a WritableStream with its writer, as the held streams' user holds them): ${kb(value(0, "webStreamBytes"))} KiB per stream, ` +
        `${ratio(median(samples[0]!.map((s, r) => s.webStreamBytes / samples[GO_GO]![r]!.serverBytesPerStream)))}× Go's whole stream on the server, ` +
        `and ${round(value(0, "webStreamUs"))} µs to make.`,
    },
  ];
  const ours = 0;
  const oursToGo = 2;
  const targets: Target[] = [
    { measure: "new stream + 1 KiB: p50", measured: vsGo(ours, "p50Us"), bound: 1.0, better: "lower" },
    { measure: "new stream + 1 KiB: p99", measured: vsGo(ours, "p99Us"), bound: 2.0, better: "lower" },
    { measure: "new stream + 1 KiB: ops/s at 64 in flight", measured: vsGo(ours, "opsPerSec"), bound: 1.0, better: "higher" },
    { measure: `${settings.bulkStreams} streams × ${mib(settings.bulkBytes)}: aggregate MB/s`, measured: vsGo(ours, "bulkMBps"), bound: 1.0, better: "higher" },
    { measure: `${settings.bulkStreams} streams × ${mib(settings.bulkBytes)}: CPU per GB`, measured: vsGo(ours, "bulkCpuMsPerGB"), bound: 1.1, better: "lower" },
    { measure: "our server → Go device, one stream, vs Go ↔ Go", measured: vsGo(oursToGo, "singleMBps"), bound: 0.95, better: "higher" },
    { measure: `${settings.holdStreams} streams: time to open`, measured: vsGo(ours, "openMs"), bound: 1.5, better: "lower" },
    { measure: `${settings.holdStreams} streams: memory per stream, server`, measured: vsGo(ours, "serverBytesPerStream"), bound: 2.0, better: "lower" },
    { measure: `${settings.holdStreams} streams: memory per stream, device`, measured: vsGo(ours, "deviceBytesPerStream"), bound: 2.0, better: "lower" },
  ];
  return { tables, targets };
}

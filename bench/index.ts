/**
 * `npm run bench`: prints the benchmark tables as markdown (progress goes to stderr, tables to stdout).
 * Every comparison runs its implementations side by side in the same rounds, interleaved, and reports
 * the median of per-round ratios.
 *
 * Sections (BENCH_ONLY=name,name runs some of them; default all, in this order):
 *  throughput   one stream, Node ↔ Node, both ends in one process: raw ws, wslis, yamux-js (bench/throughput.ts)
 *  two-process  the same with the device in its own process: raw ws, wslis (bench/two-process.ts)
 *  http         reverse HTTP (bench/http.ts): layers in one process, then side by side with Go rhttp
 *               (test/go/rhttp) as client, device or both, each side in its own process
 *  streams      against Go wslis, four pairs of processes (bench/streams.ts, bench/peer.ts, test/go/bench)
 *  browser      real Chromium against raw WebSocket in the same page (bench/browser.ts)
 *  bundle       min+gzip of tree-shaken apps, and yamux-js built for the browser (bench/bundle.ts)
 *  cluster      server.fetch through another node (Redis, two processes) against local (bench/cluster.ts)
 *
 * Environment knobs (positive numbers):
 *  BENCH_MB                 MiB per run for raw ws and wslis in throughput and two-process (default 64)
 *  BENCH_RUNS               rounds of throughput and two-process (default 21; yamux-js runs 3)
 *  BENCH_HTTP_ROUNDS        rounds of the reverse-HTTP Go comparison (default 5)
 *  BENCH_STREAMS_ROUNDS     rounds of the Go comparison (default 9)
 *  BENCH_RR_OPS             sequential new-stream exchanges per round, for p50/p99 (default 2000)
 *  BENCH_RR_CONCURRENT_OPS  exchanges per round with 64 in flight, for ops/s (default 5000)
 *  BENCH_BULK_STREAMS       streams at once in the bulk scenario (default 64)
 *  BENCH_BULK_MB            MiB per stream in the bulk scenario (default 10)
 *  BENCH_SINGLE_MB          MiB of the one-stream scenario against Go (default 64)
 *  BENCH_HOLD_STREAMS       streams held open on one session (default 10000)
 *  BENCH_BROWSER_ROUNDS     rounds in Chromium (default 5)
 *  BENCH_BROWSER_MB         MiB each way per round in Chromium (default 100)
 *  BENCH_BROWSER_RTTS       round trips per round in Chromium, for the latency rows (default 1000)
 *  BENCH_CLUSTER_OPS        sequential 1 KB GETs per kind per round in cluster (default 1000)
 *  BENCH_CLUSTER_ROUNDS     rounds of cluster (default 5)
 *  BENCH_CLUSTER_MB         5 MB echoes per kind per round in cluster (default 10)
 */

import { cpus } from "node:os";
import { benchBrowser } from "./browser.js";
import { benchBundle } from "./bundle.js";
import { benchCluster } from "./cluster.js";
import { log, markdownTable, ratio, round, targetRows, type Row } from "./format.js";
import { benchHttp, benchHttpGo } from "./http.js";
import { benchStreams } from "./streams.js";
import { benchThroughput, type ThroughputRow } from "./throughput.js";
import { benchTwoProcess } from "./two-process.js";

const SECTIONS = ["throughput", "two-process", "http", "streams", "browser", "bundle", "cluster"] as const;

function throughputTable(rows: ThroughputRow[]): Row[] {
  const MiB = 1024 * 1024;
  return rows.map((row) => ({
    implementation: row.implementation,
    "MB/s (median)": round(row.mbps),
    "min–max MB/s": `${round(row.min)}–${round(row.max)}`,
    "× raw ws (per round)": ratio(row.ratio),
    "CPU ms per GB (both ends)": round(row.cpuMsPerGB),
    "peak heap+buffers growth (MB)": row.peakMemoryMB.toFixed(1),
    runs: `${row.runs} × ${row.bytesPerRun / MiB} MiB`,
  }));
}

function positiveNumber(name: string, fallback: number): number {
  const value = Number(process.env[name] ?? fallback);
  if (!(value > 0)) throw new RangeError(`${name} must be a positive number, not ${process.env[name]}`);
  return value;
}

const MiB = 1024 * 1024;
const only = process.env.BENCH_ONLY?.split(",").map((name) => name.trim()).filter(Boolean);
for (const name of only ?? []) {
  if (!(SECTIONS as readonly string[]).includes(name)) throw new RangeError(`BENCH_ONLY: no section ${name}; there are ${SECTIONS.join(", ")}`);
}
const runs = (section: (typeof SECTIONS)[number]) => !only || only.includes(section);
const bytes = positiveNumber("BENCH_MB", 64) * MiB;
const rounds = positiveNumber("BENCH_RUNS", 21);

const cpu = cpus();
console.log(`Node ${process.version}, ${cpu.length} × ${cpu[0]?.model.trim() ?? "unknown CPU"}, ${process.platform}\n`);

if (runs("throughput")) {
  console.log("### One-stream throughput, Node ↔ Node over ws on 127.0.0.1 (both ends in one process)\n");
  console.log(markdownTable(throughputTable(await benchThroughput({ bytes, runs: rounds, log }))));
  console.log(
    "MB = 10^6 bytes. The server side sends 64 KiB writes; a run ends when the receiver has counted every byte.\n" +
      "Implementations run interleaved, round by round, in alternating order; × raw ws is the median of the\n" +
      "per-round ratios. CPU is the process's user + system time per GB moved (both ends, GC threads included).\n" +
      "yamux-js runs are smaller: it waits 100 ms (a timer) whenever its send window is empty.\n",
  );
}

if (runs("two-process")) {
  console.log("### One-stream throughput, server and device in separate processes (as deployed)\n");
  const twoProcess = await benchTwoProcess({ bytes, runs: rounds, log });
  console.log(
    markdownTable(
      twoProcess.map((row) => ({
        implementation: row.implementation,
        "MB/s (median)": round(row.mbps),
        "min–max MB/s": `${round(row.min)}–${round(row.max)}`,
        "× raw ws (per round)": ratio(row.ratio),
        runs: `${row.runs} × ${row.bytesPerRun / MiB} MiB`,
      })),
    ),
  );
}

if (runs("http")) {
  console.log("### Reverse HTTP\n");
  console.log(markdownTable(await benchHttp({ log })));
  console.log("\n#### Reverse HTTP against Go rhttp (ours / Go ↔ Go: median of per-round ratios, > 1 is slower)\n");
  console.log(markdownTable(await benchHttpGo({ log, rounds: positiveNumber("BENCH_HTTP_ROUNDS", 5) })));
}

if (runs("streams")) {
  const result = await benchStreams({
    rounds: positiveNumber("BENCH_STREAMS_ROUNDS", 9),
    rrOps: positiveNumber("BENCH_RR_OPS", 2000),
    rrConcurrentOps: positiveNumber("BENCH_RR_CONCURRENT_OPS", 5000),
    bulkStreams: positiveNumber("BENCH_BULK_STREAMS", 64),
    bulkBytes: Math.round(positiveNumber("BENCH_BULK_MB", 4) * MiB),
    singleBytes: Math.round(positiveNumber("BENCH_SINGLE_MB", 64) * MiB),
    holdStreams: positiveNumber("BENCH_HOLD_STREAMS", 10_000),
    log,
  });
  for (const table of result.tables) {
    console.log(`### ${table.title}\n`);
    console.log(markdownTable(table.rows));
    console.log(`${table.note}\n`);
  }
  console.log("### Targets against Go wslis (wslis ↔ wslis / Go ↔ Go unless named)\n");
  console.log(markdownTable(targetRows(result.targets)));
}

if (runs("browser")) {
  const result = await benchBrowser({
    rounds: positiveNumber("BENCH_BROWSER_ROUNDS", 5),
    bytes: Math.round(positiveNumber("BENCH_BROWSER_MB", 100) * MiB),
    roundTrips: positiveNumber("BENCH_BROWSER_RTTS", 1000),
    log,
  });
  console.log("### Real Chromium: wslis against a raw WebSocket in the same page\n");
  console.log(markdownTable(result.rows));
  console.log(`${result.note}\n`);
  console.log(markdownTable(targetRows(result.targets)));
}

if (runs("bundle")) {
  console.log("### Bundle: min+gzip of a tree-shaken app, built with Vite (rolldown) for es2022\n");
  const sizes = await benchBundle(log);
  console.log(
    markdownTable(
      sizes.map((size) => ({
        app: size.name,
        "minified (B)": size.minified,
        "min+gzip (B)": size.gzipped,
        target: size.target === undefined ? "" : `≤ ${size.target} B`,
        result: size.target === undefined ? "" : size.gzipped <= size.target ? "met" : "not met",
      })),
    ),
  );
  console.log(
    "gzip level 9. yamux-js is a Node library: in a page it needs the buffer and readable-stream polyfills\n" +
      "(with events, process, string_decoder and abort-controller), all counted here.\n",
  );
}

if (runs("cluster")) {
  const result = await benchCluster({
    ops: positiveNumber("BENCH_CLUSTER_OPS", 1000),
    rounds: positiveNumber("BENCH_CLUSTER_ROUNDS", 5),
    echoes: positiveNumber("BENCH_CLUSTER_MB", 10),
    log,
  });
  console.log("### Cluster: server.fetch from node A to a device on node B (another process, Redis) against local\n");
  console.log(markdownTable(result.rows));
  if (result.cpuRows.length > 0) console.log(markdownTable(result.cpuRows));
  console.log(`${result.targets.join("\n")}\n`);
}

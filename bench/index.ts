/**
 * `npm run bench`: prints the benchmark tables as markdown (progress goes to stderr, tables to stdout).
 *
 * 1. One-stream throughput, Node to Node over ws on 127.0.0.1: raw ws, wslis, yamux-js (bench/throughput.ts).
 * 2. Reverse HTTP (bench/http.ts, `benchHttp()`), when that file exists.
 *
 * Environment knobs: BENCH_MB (MiB per run for raw ws and wslis, default 64), BENCH_RUNS (rounds of raw ws and wslis, default 21; yamux-js runs 3).
 */

import { existsSync } from "node:fs";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { benchThroughput, type ThroughputRow } from "./throughput.js";
import { benchTwoProcess } from "./two-process.js";

type Row = Record<string, string | number>;

/** Renders rows as a markdown table; columns are the first row's keys. */
export function markdownTable(rows: Row[]): string {
  if (rows.length === 0) return "(no rows)\n";
  const columns = Object.keys(rows[0]!);
  const cell = (value: string | number | undefined) => String(value ?? "").replaceAll("|", "\\|");
  const lines = [
    `| ${columns.join(" | ")} |`,
    `| ${columns.map((_, i) => (typeof rows[0]![columns[i]!] === "number" ? "---:" : "---")).join(" | ")} |`,
    ...rows.map((row) => `| ${columns.map((column) => cell(row[column])).join(" | ")} |`),
  ];
  return `${lines.join("\n")}\n`;
}

/** Two significant digits for small numbers, none for large ones. */
function round(value: number): string {
  return value >= 10 ? value.toFixed(0) : value.toPrecision(2);
}

function throughputTable(rows: ThroughputRow[]): Row[] {
  const MiB = 1024 * 1024;
  return rows.map((row) => ({
    implementation: row.implementation,
    "MB/s (median)": round(row.mbps),
    "min–max MB/s": `${round(row.min)}–${round(row.max)}`,
    "× raw ws (per round)": row.ratio.toFixed(row.ratio < 0.1 ? 3 : 2),
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

const log = (line: string) => process.stderr.write(`${line}\n`);
const bytes = positiveNumber("BENCH_MB", 64) * 1024 * 1024;
const runs = positiveNumber("BENCH_RUNS", 21);

const cpu = cpus();
console.log(`Node ${process.version}, ${cpu.length} × ${cpu[0]?.model.trim() ?? "unknown CPU"}, ${process.platform}\n`);
console.log("### One-stream throughput, Node ↔ Node over ws on 127.0.0.1 (both ends in one process)\n");
console.log(markdownTable(throughputTable(await benchThroughput({ bytes, runs, log }))));
console.log(
  "MB = 10^6 bytes. The server side sends 64 KiB writes; a run ends when the receiver has counted every byte.\n" +
    "Implementations run interleaved, round by round, in alternating order; × raw ws is the median of the\n" +
    "per-round ratios. CPU is the process's user + system time per GB moved (both ends, GC threads included).\n" +
    "yamux-js runs are smaller: it waits 100 ms (a timer) whenever its send window is empty.\n",
);

console.log("### One-stream throughput, server and device in separate processes (as deployed)\n");
const twoProcess = await benchTwoProcess({ bytes, runs, log });
console.log(
  markdownTable(
    twoProcess.map((row) => ({
      implementation: row.implementation,
      "MB/s (median)": round(row.mbps),
      "min–max MB/s": `${round(row.min)}–${round(row.max)}`,
      "× raw ws (per round)": row.ratio.toFixed(2),
      runs: `${row.runs} × ${row.bytesPerRun / (1024 * 1024)} MiB`,
    })),
  ),
);

// bench/http.ts is written separately; the throughput table stands on its own until it lands.
// A computed specifier, so the typecheck does not require the file either.
const httpBench = new URL("./http.ts", import.meta.url);
if (existsSync(fileURLToPath(httpBench))) {
  const { benchHttp } = (await import(httpBench.href)) as { benchHttp: () => Promise<Row[]> };
  console.log("### Reverse HTTP\n");
  console.log(markdownTable(await benchHttp()));
}

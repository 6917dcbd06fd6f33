/**
 * Cluster: `server.fetch` from node A to a device connected to node B (another process, over a real
 * redis-server) against `server.fetch` to a device connected to A itself, in the same run. The devices
 * run in processes of their own (bench/http-device-child.ts), as devices do: a local call crosses one
 * process boundary each way (A and its device), a call through a node crosses two more (A and B).
 *
 * The yardstick of the target "cross-node p50 ≤ local p50 + 1.5 × one node-to-node HTTP round trip" is
 * measured in the same run: a keep-alive HTTP request from node A's process to node B's listener and its
 * answer (B answers it at once; undici, as the node-to-node client). The three kinds are interleaved call
 * by call, so that a busy machine slows them alike. Also 16 calls in flight, and 5 MB POST echoes
 * through a node against local (target ≥ 0.8×), also one of each kind in turn, with each process's CPU
 * time per echo (from /proc): what a relay costs, and what throughput the machine's cores allow it.
 *
 * `node --import tsx bench/cluster.ts`, or `BENCH_ONLY=cluster npm run bench`. Knobs:
 *  BENCH_CLUSTER_OPS     sequential 1 KB GETs per kind per round (default 1000)
 *  BENCH_CLUSTER_ROUNDS  rounds (default 5)
 *  BENCH_CLUSTER_MB      5 MB echoes per kind per round (default 10)
 */

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { availableParallelism } from "node:os";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Agent } from "undici";
import { startRedis } from "../test/helpers/redis.js";
import { Server } from "./lib.js";

const SECRET = "a-cluster-secret-for-the-benchmark";

export interface ClusterBenchOptions {
  ops?: number;
  rounds?: number;
  echoes?: number;
  log?: (message: string) => void;
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
};

/**
 * CPU time (user + system) a process has used, in ms, from `/proc/<pid>/stat` (clock ticks of 10 ms, the
 * kernel's USER_HZ), or undefined where there is no `/proc`.
 */
function processCpuMs(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    const after = fields.slice(fields.lastIndexOf(")") + 2).split(" ");
    return (Number(after[11]) + Number(after[12])) * 10;
  } catch {
    return undefined;
  }
}

/** A child running a bench script with `args`; resolves once it printed a line matching `ready`, with the match. */
async function startChild(script: string, args: string[], ready: RegExp): Promise<{ match: RegExpExecArray; pid: number; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, ["--import", "tsx", fileURLToPath(new URL(script, import.meta.url)), ...args], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const match = await new Promise<RegExpExecArray>((resolve, fail) => {
    createInterface({ input: child.stdout }).once("line", (line) => {
      const found = ready.exec(line);
      if (found) resolve(found);
      else fail(new Error(`${script}: ${line}`));
    });
    child.once("exit", (code) => fail(new Error(`${script} exited (${code})`)));
  });
  const stop = async () => {
    if (child.exitCode !== null) return;
    child.stdin.end();
    const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
    await once(child, "exit");
    clearTimeout(timer);
  };
  return { match, pid: child.pid!, stop };
}

/** A device in its own process (bench/http-device-child.ts): GET → 1000 bytes, POST → the body back. */
async function startDevice(url: string): Promise<{ pid: number; stop: () => Promise<void> }> {
  return startChild("./http-device-child.ts", [url], /^ready$/);
}

export async function benchCluster(
  options: ClusterBenchOptions = {},
): Promise<{ rows: Array<Record<string, string | number>>; cpuRows: Array<Record<string, string | number>>; targets: string[] }> {
  const { ops = 1000, rounds = 5, echoes = 10, log = () => {} } = options;
  const redis = await startRedis();
  const closers: (() => unknown)[] = [() => redis.stop()];
  try {
    const node = await startChild("./cluster-node.ts", [redis.url, "b", SECRET], /^ready (\d+)$/);
    closers.unshift(node.stop);
    const bPort = node.match[1]!;
    const http = createServer();
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    const aPort = (http.address() as AddressInfo).port;
    const quiet = { warn() {}, error() {} };
    const a = new Server(() => {}, {
      logger: quiet,
      drainTimeout: 200,
      cluster: { redis: redis.url, nodeId: "a", secret: SECRET, ttl: 15_000, advertise: `http://127.0.0.1:${aPort}` },
    });
    http.on("request", (req, res) => a.handleRequest(req, res) || res.writeHead(404).end());
    http.on("upgrade", (req, socket, head) => a.handleUpgrade(req, socket, head));
    closers.unshift(() => new Promise<void>((resolve) => http.close(() => resolve())), () => a.close());

    const localDevice = await startDevice(`ws://127.0.0.1:${aPort}/?deviceId=local`);
    closers.unshift(localDevice.stop);
    const remoteDevice = await startDevice(`ws://127.0.0.1:${bPort}/?deviceId=remote`);
    closers.unshift(remoteDevice.stop);
    const deadline = Date.now() + 10_000;
    while (!a.devices.has("local") || !(await a.lookup("remote"))) {
      if (Date.now() > deadline) throw new Error("the devices never reached the directory");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    const agent = new Agent({ keepAliveTimeout: 10_000 });
    closers.unshift(() => agent.close());
    const kinds = {
      local: () => a.fetch("local", "http://device/kb").then((r) => r.arrayBuffer()),
      "through a node": () => a.fetch("remote", "http://device/kb").then((r) => r.arrayBuffer()),
      // Node B's listener answers anything that is neither wslis nor node-to-node with an empty 404, at once.
      "node-to-node HTTP round trip": () =>
        agent.request({ origin: `http://127.0.0.1:${bPort}`, path: "/round-trip", method: "GET" }).then((r) => r.body.arrayBuffer()),
    } as const;
    type Kind = keyof typeof kinds;
    const names = Object.keys(kinds) as Kind[];
    const latency: Record<Kind, number[]> = { local: [], "through a node": [], "node-to-node HTTP round trip": [] };
    const rps16: Record<string, number[]> = { local: [], "through a node": [] };
    const mbps: Record<string, number[]> = { local: [], "through a node": [] };
    const body = randomBytes(5_000_000);
    // Warm up: V8 optimizes a function after thousands of calls, and a call through a node runs code in
    // three processes (with 100 calls each, the first round's ratio stood 0.3-0.5 x round trip above the others).
    for (let i = 0; i < 2000; i++) await kinds[names[i % names.length]!]();
    // And the echoes' own paths (body streaming, the relay's data path on B), a few of each kind.
    for (let i = 0; i < 4; i++) {
      for (const id of ["local", "remote"]) await (await a.fetch(id, "http://device/echo", { method: "POST", body })).arrayBuffer();
    }
    // The two kinds of device call (the round trip aside), and the device each reaches.
    const echoKinds = ["local", "through a node"] as const;
    type EchoKind = (typeof echoKinds)[number];
    const deviceIds: Record<EchoKind, string> = { local: "local", "through a node": "remote" };
    // Each process's CPU time per echo: node A (this process), node B, and the kind's device.
    const devicePid: Record<EchoKind, number> = { local: localDevice.pid, "through a node": remoteDevice.pid };
    const cpuNow = (kind: EchoKind) => {
      const own = process.cpuUsage();
      return { a: (own.user + own.system) / 1000, b: processCpuMs(node.pid), device: processCpuMs(devicePid[kind]) };
    };
    const cpuSpent: Record<EchoKind, { wall: number; a: number; b: number; device: number; echoes: number }> = {
      local: { wall: 0, a: 0, b: 0, device: 0, echoes: 0 },
      "through a node": { wall: 0, a: 0, b: 0, device: 0, echoes: 0 },
    };
    const countCpu = (kind: EchoKind, before: ReturnType<typeof cpuNow>, wall: number) => {
      const after = cpuNow(kind);
      const sum = cpuSpent[kind];
      sum.wall += wall;
      sum.a += after.a - before.a;
      sum.b += (after.b ?? NaN) - (before.b ?? NaN);
      sum.device += (after.device ?? NaN) - (before.device ?? NaN);
      sum.echoes++;
    };
    /** Per round: (cross-node p50 − local p50) / round-trip p50, the target's ratio. */
    const perRound: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const from = latency.local.length;
      log(`cluster: round ${round + 1}/${rounds}`);
      for (let i = 0; i < ops; i++) {
        // Each kind in turn, starting with another one each time.
        for (let k = 0; k < names.length; k++) {
          const kind = names[(i + k) % names.length]!;
          const t = performance.now();
          await kinds[kind]();
          latency[kind].push((performance.now() - t) * 1000);
        }
      }
      const p50 = (kind: Kind) => percentile(latency[kind].slice(from), 50);
      perRound.push((p50("through a node") - p50("local")) / p50("node-to-node HTTP round trip"));
      // Local first in even rounds, through a node first in odd ones.
      for (const kind of round % 2 === 0 ? echoKinds : [...echoKinds].reverse()) {
        const id = deviceIds[kind];
        let next = 0;
        const started = performance.now();
        await Promise.all(
          Array.from({ length: 16 }, async () => {
            while (next++ < ops) await a.fetch(id, "http://device/kb").then((r) => r.arrayBuffer());
          }),
        );
        rps16[kind]!.push(ops / ((performance.now() - started) / 1000));
      }
      // The 5 MB echoes, one of each kind in turn (which goes first alternates from echo to echo and round
      // to round), so that a busy moment of the machine falls on both kinds alike.
      const spent = { local: 0, "through a node": 0 };
      for (let i = 0; i < echoes; i++) {
        for (let k = 0; k < 2; k++) {
          const kind = echoKinds[(i + round + k) % 2]!;
          const before = cpuNow(kind);
          const t = performance.now();
          const res = await a.fetch(deviceIds[kind], "http://device/echo", { method: "POST", body });
          const got = await res.arrayBuffer();
          if (got.byteLength !== body.length) throw new Error(`echo of ${got.byteLength} bytes`);
          const wall = performance.now() - t;
          spent[kind] += wall;
          countCpu(kind, before, wall);
        }
      }
      for (const kind of echoKinds) mbps[kind]!.push((echoes * body.length * 2) / 1e6 / (spent[kind] / 1000));
    }
    const median = (values: number[]) => percentile(values, 50);
    const mean = (values: number[]) => values.reduce((x, y) => x + y, 0) / values.length;
    const rows = names.map((kind) => ({
      "1 KB GET from node A": kind,
      "p50 (µs)": Math.round(median(latency[kind])),
      "p99 (µs)": Math.round(percentile(latency[kind], 99)),
      "req/s (1 in flight)": Math.round(1e6 / mean(latency[kind])),
      "req/s (16 in flight)": rps16[kind] ? Math.round(median(rps16[kind]!)) : "",
      "5 MB POST echo (MB/s, both ways)": mbps[kind] ? Math.round(median(mbps[kind]!)) : "",
    }));
    // CPU per echo, every process: where a relay's cost goes, and what the machine's cores allow.
    const perEcho = (kind: EchoKind) => {
      const sum = cpuSpent[kind];
      const each = (ms: number) => ms / sum.echoes;
      return { wall: each(sum.wall), a: each(sum.a), b: each(sum.b), device: each(sum.device), all: each(sum.a + sum.b + sum.device) };
    };
    const tenth = (ms: number) => Math.round(ms * 10) / 10;
    const echoCpu = echoKinds.map((kind) => ({ kind, ...perEcho(kind) }));
    const cpuRows = Number.isNaN(echoCpu[0]!.all)
      ? []
      : echoCpu.map(({ kind, wall, a, b, device, all }) => ({
          "5 MB POST echo": kind,
          "wall (ms)": tenth(wall),
          "CPU (ms): node A": tenth(a),
          "node B": tenth(b),
          device: tenth(device),
          "all processes": tenth(all),
        }));
    const [local, cross, hop] = rows.map((r) => r["p50 (µs)"]) as [number, number, number];
    const bound = local + 1.5 * hop;
    // Per round, as every ratio of the bench: the two kinds of one round share that round's machine.
    const transfers = mbps.local!.map((local, round) => mbps["through a node"]![round]! / local);
    const transfer = median(transfers);
    const targets = [
      `Node-to-node HTTP round trip p50: ${hop} µs. Target: cross-node p50 ≤ local p50 + 1.5 × round trip = ${local} + 1.5 × ${hop} = ${Math.round(bound)} µs; ` +
        `cross-node p50 ${cross} µs (local + ${cross - local} µs = local + ${((cross - local) / hop).toFixed(2)} × round trip): ${cross <= bound ? "met" : "not met"}. ` +
        `Round by round, local + ${perRound.map((r) => r.toFixed(2)).join(", ")} × round trip.`,
      `5 MB POST echo through a node ${transfer.toFixed(2)}× local, the median of per-round ratios (target ≥ 0.8×): ${transfer >= 0.8 ? "met" : "not met"}. ` +
        `Round by round, ${transfers.map((r) => r.toFixed(2)).join(", ")}.`,
    ];
    if (cpuRows.length > 0) {
      const [home, relayed] = echoCpu as [(typeof echoCpu)[0], (typeof echoCpu)[0]];
      const cores = availableParallelism();
      // Had every core been busy through every relayed echo, each would have taken all/cores ms.
      const ceiling = (home.wall * cores) / relayed.all;
      targets.push(
        `CPU per 5 MB echo, every process (from /proc, over all ${cpuSpent.local.echoes} echoes of each kind): through a node ${relayed.all.toFixed(1)} ms ` +
          `(node B ${relayed.b.toFixed(1)}), local ${home.all.toFixed(1)} ms: ${(relayed.all / home.all).toFixed(2)}× the work. On this machine's ${cores} cores, ` +
          `with every core busy through a relayed echo, echoes through a node could reach at most ${ceiling.toFixed(2)}× the local rate measured here.`,
      );
    }
    return { rows, cpuRows, targets };
  } finally {
    for (const close of closers) await close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const n = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
  const { rows, cpuRows, targets } = await benchCluster({
    ops: n("BENCH_CLUSTER_OPS", 1000),
    rounds: n("BENCH_CLUSTER_ROUNDS", 5),
    echoes: n("BENCH_CLUSTER_MB", 10),
    log: (m) => console.error(m),
  });
  const columns = Object.keys(rows[0]!);
  console.log(`| ${columns.join(" | ")} |\n| ${columns.map(() => "---").join(" | ")} |`);
  for (const row of rows) console.log(`| ${columns.map((c) => String(row[c as keyof typeof row])).join(" | ")} |`);
  if (cpuRows.length > 0) {
    const cpuColumns = Object.keys(cpuRows[0]!);
    console.log(`\n| ${cpuColumns.join(" | ")} |\n| ${cpuColumns.map(() => "---").join(" | ")} |`);
    for (const row of cpuRows) console.log(`| ${cpuColumns.map((c) => row[c]).join(" | ")} |`);
  }
  console.log(`\n${targets.join("\n")}`);
}

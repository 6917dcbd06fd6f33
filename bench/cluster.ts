/**
 * Cluster: `server.fetch` from node A to a device connected to node B (another process, over a real
 * redis-server) against `server.fetch` to a device connected to A itself, in the same run, interleaved
 * round by round. Also one bare node-to-node HTTP round trip (keep-alive), the yardstick of the target
 * "cross-node p50 ≤ local p50 + 1.5 × one node-to-node round trip", and 5 MB POST echoes through a node
 * against local (target ≥ 0.8×).
 *
 * `node --import tsx bench/cluster.ts`, or `BENCH_ONLY=cluster npm run bench`. Knobs:
 *  BENCH_CLUSTER_OPS     sequential 1 KB GETs per implementation per round (default 1000)
 *  BENCH_CLUSTER_ROUNDS  rounds (default 5)
 *  BENCH_CLUSTER_MB      5 MB echoes per implementation per round (default 4)
 */

import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { Agent } from "undici";
import { dialAndListen, serveHttp } from "../server-node/device.js";
import { Server } from "../server-node/index.js";
import { startFixture } from "../test/helpers/child.js";
import { kilobyte } from "../test/helpers/cluster.js";
import { startRedis } from "../test/helpers/redis.js";

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

export async function benchCluster(options: ClusterBenchOptions = {}): Promise<{ rows: Array<Record<string, string | number>>; targets: string[] }> {
  const { ops = 1000, rounds = 5, echoes = 4, log = () => {} } = options;
  const redis = await startRedis();
  const node = startFixture("cluster-node.ts", [redis.url, "b", SECRET, "15000"]);
  const closers: (() => unknown)[] = [() => redis.stop(), () => node.kill()];
  try {
    const [, bPort] = await node.waitFor(/^ready (\d+) (\d+)$/, 30_000);
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

    const device = async (port: number, id: string) => {
      const listener = await dialAndListen(`ws://127.0.0.1:${port}/`, { params: { deviceId: id }, reconnect: false });
      closers.unshift(() => listener.close());
      void serveHttp(listener, async (req) => (req.method === "POST" ? new Response(req.body) : new Response(kilobyte(id)))).catch(() => {});
    };
    await device(aPort, "local");
    await device(Number(bPort), "remote");
    const deadline = Date.now() + 10_000;
    // Until node a's Redis connection is up, lookups fail with ERR_CLUSTER_UNAVAILABLE: wait through it.
    const found = () => a.lookup("remote").catch((error: { code?: string }) => {
      if (error.code === "ERR_CLUSTER_UNAVAILABLE") return undefined;
      throw error;
    });
    while (!(await found())) {
      if (Date.now() > deadline) throw new Error("the remote device never reached the directory");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    const agent = new Agent({ keepAliveTimeout: 10_000 });
    closers.unshift(() => agent.close());
    const kinds = {
      local: () => a.fetch("local", "http://device/kb").then((r) => r.text()),
      "through a node": () => a.fetch("remote", "http://device/kb").then((r) => r.text()),
      "node-to-node HTTP round trip": () =>
        agent.request({ origin: `http://127.0.0.1:${bPort}`, path: "/.wslis/node/fetch", method: "GET" }).then((r) => r.body.text()),
    } as const;
    type Kind = keyof typeof kinds;
    const latency: Record<Kind, number[]> = { local: [], "through a node": [], "node-to-node HTTP round trip": [] };
    const rps: Record<Kind, number[]> = { local: [], "through a node": [], "node-to-node HTTP round trip": [] };
    const rps16: Record<string, number[]> = { local: [], "through a node": [] };
    const mbps: Record<string, number[]> = { local: [], "through a node": [] };
    const body = randomBytes(5_000_000);
    for (const kind of Object.keys(kinds) as Kind[]) for (let i = 0; i < 50; i++) await kinds[kind](); // warm up
    for (let round = 0; round < rounds; round++) {
      log(`cluster: round ${round + 1}/${rounds}`);
      const order = (Object.keys(kinds) as Kind[])[round % 2 ? "reverse" : "slice"]();
      for (const kind of order) {
        const started = performance.now();
        for (let i = 0; i < ops; i++) {
          const t = performance.now();
          await kinds[kind]();
          latency[kind].push((performance.now() - t) * 1000);
        }
        rps[kind].push(ops / ((performance.now() - started) / 1000));
      }
      for (const [kind, id] of [["local", "local"], ["through a node", "remote"]] as const) {
        let next = 0;
        const started = performance.now();
        await Promise.all(
          Array.from({ length: 16 }, async () => {
            while (next++ < ops) await a.fetch(id, "http://device/kb").then((r) => r.text());
          }),
        );
        rps16[kind]!.push(ops / ((performance.now() - started) / 1000));
        const t = performance.now();
        for (let i = 0; i < echoes; i++) {
          const res = await a.fetch(id, "http://device/echo", { method: "POST", body });
          const got = await res.arrayBuffer();
          if (got.byteLength !== body.length) throw new Error(`echo of ${got.byteLength} bytes`);
        }
        mbps[kind]!.push((echoes * body.length * 2) / 1e6 / ((performance.now() - t) / 1000));
      }
    }
    const median = (values: number[]) => percentile(values, 50);
    const rows = (Object.keys(kinds) as Kind[]).map((kind) => ({
      "1 KB GET from node A": kind,
      "p50 (µs)": Math.round(median(latency[kind])),
      "p99 (µs)": Math.round(percentile(latency[kind], 99)),
      "req/s (1 in flight)": Math.round(median(rps[kind])),
      "req/s (16 in flight)": rps16[kind] ? Math.round(median(rps16[kind]!)) : "",
      "5 MB POST echo (MB/s, both ways)": mbps[kind] ? Math.round(median(mbps[kind]!)) : "",
    }));
    const [local, cross, hop] = rows.map((r) => r["p50 (µs)"]) as [number, number, number];
    const bound = local + 1.5 * hop;
    const transfer = median(mbps["through a node"]!) / median(mbps.local!);
    const targets = [
      `cross-node p50 ${cross} µs ≤ local p50 + 1.5 × node-to-node round trip = ${Math.round(bound)} µs: ${cross <= bound ? "met" : "not met"}`,
      `5 MB through a node ${transfer.toFixed(2)}× local (target ≥ 0.8×): ${transfer >= 0.8 ? "met" : "not met"}`,
    ];
    return { rows, targets };
  } finally {
    for (const close of closers) await close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const n = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
  const { rows, targets } = await benchCluster({
    ops: n("BENCH_CLUSTER_OPS", 1000),
    rounds: n("BENCH_CLUSTER_ROUNDS", 5),
    echoes: n("BENCH_CLUSTER_MB", 4),
    log: (m) => console.error(m),
  });
  const columns = Object.keys(rows[0]!);
  console.log(`| ${columns.join(" | ")} |\n| ${columns.map(() => "---").join(" | ")} |`);
  for (const row of rows) console.log(`| ${columns.map((c) => String(row[c as keyof typeof row])).join(" | ")} |`);
  console.log(`\n${targets.join("\n")}`);
}

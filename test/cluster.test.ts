/**
 * Many server nodes, one fleet, on a real redis-server: three nodes as separate processes, devices
 * spread over them, every node reaching every device.
 */

import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, test } from "node:test";
import { dialAndListen, serveHttp, type Listener } from "../server-node/device.js";
import { startFixture, type Child } from "./helpers/child.js";
import { startRedis, type RedisProcess } from "./helpers/redis.js";
import { kilobyte } from "./helpers/cluster.js";

const SECRET = "a-cluster-secret-for-tests";
const TTL = 3000;

interface Node {
  name: string;
  child: Child;
  port: number;
  control: number;
  url: string;
}

const cleanup: (() => unknown)[] = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

async function startNode(redis: RedisProcess, name: string): Promise<Node> {
  const child = startFixture("cluster-node.ts", [redis.url, name, SECRET, String(TTL)]);
  cleanup.push(() => child.kill());
  const [, port, control] = await child.waitFor(/^ready (\d+) (\d+)$/, 20_000);
  return { name, child, port: Number(port), control: Number(control), url: `ws://127.0.0.1:${port}/` };
}

/** Runs `op` on a node (see the fixture's control server). */
async function run<T = any>(node: Node, op: string, body: unknown = {}): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${node.control}/${op}`, { method: "POST", body: JSON.stringify(body) });
  const json = await res.json();
  if (res.status !== 200) throw new Error(`${node.name} ${op}: ${JSON.stringify(json)}`);
  return json as T;
}

/**
 * A device: answers GET /kb with its kilobyte, GET /whoami with `tag`, POST /echo with the body; a device
 * whose id starts with "echo-" echoes raw streams instead.
 */
async function device(url: string, id: string, tag = id, reconnect: NonNullable<Parameters<typeof dialAndListen>[1]>["reconnect"] = false): Promise<Listener> {
  const listener = await dialAndListen(url, { params: { deviceId: id }, reconnect });
  cleanup.push(() => listener.close());
  if (id.startsWith("echo-")) {
    void (async () => {
      for await (const conn of listener) void conn.readable.pipeTo(conn.writable).catch(() => {});
    })();
  } else {
    void serveHttp(listener, async (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/kb") return new Response(kilobyte(id));
      if (path === "/whoami") return new Response(tag);
      if (path === "/echo") return new Response(req.body);
      return new Response("not found", { status: 404 });
    }).catch(() => {});
  }
  return listener;
}

async function until(predicate: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("three nodes, one fleet", () => {
  let redis: RedisProcess;
  let nodes: Node[];
  const devices: Record<string, string[]> = {};

  before(async () => {
    redis = await startRedis();
    cleanup.push(() => redis.stop());
    nodes = await Promise.all(["a", "b", "c"].map((name) => startNode(redis, name)));
    for (const node of nodes) {
      devices[node.name] = [`${node.name}1`, `${node.name}2`, `echo-${node.name}`];
      for (const id of devices[node.name]!) await device(node.url, id);
    }
    const all = Object.values(devices).flat();
    await until(async () => (await run<unknown[]>(nodes[0]!, "fleet")).length === all.length, 5000, "every device in the fleet");
  });

  test("server.fetch from every node to every device: 100 concurrent 1 KB GETs and 5 MB POST echoes", async () => {
    const http = Object.values(devices).flat().filter((id) => !id.startsWith("echo-"));
    for (const node of nodes) {
      const { failures } = await run(node, "get", { devices: http, total: 300, concurrency: 100 });
      assert.deepEqual(failures, [], `GETs from node ${node.name}`);
    }
    for (const node of nodes) {
      const results = await Promise.all(http.map((id) => run(node, "post", { device: id, size: 5 * 1024 * 1024 })));
      for (const [i, r] of results.entries()) assert.deepEqual(r, { status: 200, equal: true, length: 5 * 1024 * 1024 }, `${node.name} -> ${http[i]}`);
    }
  });

  test("server.dial across nodes: a raw echo, both ways", async () => {
    for (const node of nodes) {
      for (const other of nodes) {
        const r = await run(node, "echo", { device: `echo-${other.name}`, size: 1024 * 1024 + 7 });
        assert.deepEqual(r, { equal: true, length: 1024 * 1024 + 7 }, `${node.name} -> echo-${other.name}`);
      }
    }
  });

  test("fleet() and lookup() list every device with its node, from every node", async () => {
    for (const node of nodes) {
      const fleet = await run<{ id: string; node: string; connectedAt: number; lastSeen: number }[]>(node, "fleet");
      const byId = Object.fromEntries(fleet.map((r) => [r.id, r.node]));
      const expected = Object.fromEntries(Object.entries(devices).flatMap(([n, ids]) => ids.map((id) => [id, n])));
      assert.deepEqual(byId, expected, `fleet() on ${node.name}`);
      for (const r of fleet) assert.ok(r.connectedAt > 0 && r.lastSeen >= r.connectedAt - 1000, JSON.stringify(r));
      const record = await run(node, "lookup", { device: "b1" });
      assert.equal(record.node, "b");
      assert.equal(await run(node, "lookup", { device: "nobody" }), null);
      const missing = await run(node, "call", { device: "nobody", timeout: 5000 });
      assert.equal(missing.error.code, "ERR_DEVICE_NOT_FOUND");
      assert.ok(missing.ms < 500, `unknown device answered in ${missing.ms} ms`);
    }
  });
});

/**
 * Many server nodes, one fleet, on a real redis-server: three nodes as separate processes, devices
 * spread over them, every node reaching every device.
 */

import assert from "node:assert/strict";
import { connect, createServer, type Server as NetServer, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { dialAndListen, serveHttp, type Listener } from "../server-node/device.js";
import { startFixture, type Child } from "./helpers/child.js";
import { listenAndServe } from "../server-node/index.js";
import { freePort, startRedis, type RedisProcess } from "./helpers/redis.js";
import { kilobyte } from "./helpers/cluster.js";
import { until } from "./helpers/assert.js";
import { PLACEMENT_MAX_AGE } from "../server-node/cluster/redis.js";

const SECRET = "a-cluster-secret-for-tests";
const TTL = 4000;

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

async function startNode(redis: RedisProcess, name: string, ...more: string[]): Promise<Node> {
  const child = startFixture("cluster-node.ts", [redis.url, name, SECRET, String(TTL), ...more]);
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
 * A device: answers GET /kb with its kilobyte, GET /whoami with `tag`, POST /echo with the body, GET
 * /stall with a first chunk and then nothing; a device whose id starts with "echo-" echoes raw streams
 * instead.
 */
async function device(url: string, id: string, tag = id, reconnect = false): Promise<Listener> {
  // With reconnect, the default backoff, as a user's device has it.
  const listener = await dialAndListen(url, { params: { deviceId: id }, ...(reconnect ? {} : { reconnect: false }) });
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
      if (path === "/stall") return new Response(new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode("first;")) }));
      return new Response("not found", { status: 404 });
    }).catch(() => {});
  }
  return listener;
}

/** Sends a raw HTTP request and returns the status. */
function rawStatus(port: number, request: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    socket.on("data", (chunk) => {
      received += chunk.toString("latin1");
      const match = /^HTTP\/1\.1 (\d{3})/.exec(received);
      if (match) {
        socket.destroy();
        resolve(Number(match[1]));
      }
    });
    socket.on("error", reject);
    socket.write(request);
  });
}

/** A TCP load balancer in front of the nodes: each connection goes to the first target that accepts it. */
async function loadBalancer(targets: number[]): Promise<{ url: string; targets: number[]; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const lb = {
    url: "",
    targets,
    server: undefined as NetServer | undefined,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        lb.server!.close(() => resolve());
      }),
  };
  lb.server = createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.pause();
    const tryTarget = (i: number) => {
      if (i >= lb.targets.length) return client.destroy();
      const upstream = connect(lb.targets[i]!, "127.0.0.1");
      sockets.add(upstream);
      // An error before the connection is up: that target is down, try the next.
      upstream.once("error", () => tryTarget(i + 1));
      upstream.once("connect", () => {
        upstream.removeAllListeners("error");
        upstream.on("error", () => client.destroy());
        client.on("error", () => upstream.destroy());
        upstream.on("close", () => client.destroy());
        client.on("close", () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    tryTarget(0);
  });
  await new Promise<void>((resolve) => lb.server!.listen(0, "127.0.0.1", resolve));
  lb.url = `ws://127.0.0.1:${(lb.server.address() as { port: number }).port}/`;
  return lb;
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
    await until(async () => (await run<unknown[]>(nodes[0]!, "fleet")).length === all.length, 5000, "every device in the fleet", 50);
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

  test("a node-to-node request without the secret is refused", async () => {
    const b = nodes[1]!;
    const post = (auth: string) =>
      `POST /.wslis/node/fetch HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 0\r\nConnection: close\r\n\r\n`;
    assert.equal(await rawStatus(b.port, post("")), 401);
    assert.equal(await rawStatus(b.port, post("Authorization: Bearer wrong-secret-of-enough-length\r\n")), 401);
    const dial = (auth: string) =>
      `GET /.wslis/node/dial HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: wslis-stream\r\n${auth}` +
      `X-Wslis-Device: echo-b\r\nX-Wslis-Generation: 1\r\n\r\n`;
    assert.equal(await rawStatus(b.port, dial("")), 401);
    assert.equal(await rawStatus(b.port, dial("Authorization: Bearer wrong-secret-of-enough-length\r\n")), 401);
    // With the secret but a generation the node does not hold: refused too, nothing reaches the device.
    assert.equal(await rawStatus(b.port, dial(`Authorization: Bearer ${SECRET}\r\n`)), 404);
  });

  test("a device moving from node B to node C: B's session is replaced, calls from A reach C", async () => {
    const [a, b, c] = nodes as [Node, Node, Node];
    const onB = await device(b.url, "mover", "on b");
    await until(async () => (await run(a, "call", { device: "mover", timeout: 2000 })).text === "on b", 5000, "mover reachable on b", 50);
    const onC = await device(c.url, "mover", "on c");
    const timer = new Promise<Error>((resolve) => setTimeout(resolve, 5000, new Error("B's session was not closed")));
    const reason = (await Promise.race([onB.closed, timer])) as Error & { code?: string };
    assert.equal(reason.code, "ERR_REPLACED");
    assert.equal((await run(a, "call", { device: "mover", timeout: 2000 })).text, "on c");
    assert.equal((await run(b, "call", { device: "mover", timeout: 2000 })).text, "on c");
    assert.equal((await run(a, "lookup", { device: "mover" })).node, "c");
    assert.ok(!(await run<string[]>(b, "local")).includes("mover"));
    await onC.close();
    await until(async () => (await run(a, "lookup", { device: "mover" })) === null, 5000, "mover gone from the fleet", 50);
  });

  test("Redis frozen past the ttl, then back: local calls never fail, cross-node calls fail fast, then work again", async () => {
    const [a, b] = nodes as [Node, Node, Node];
    redis.pause();
    const paused = Date.now();
    try {
      // Placements found in the last PLACEMENT_MAX_AGE ms are still used (node b is fine): past it, the
      // directory must be asked, and it does not answer.
      await new Promise((resolve) => setTimeout(resolve, PLACEMENT_MAX_AGE + 100));
      const local = await run(b, "call", { device: "b1", timeout: 2000 });
      assert.equal(local.text, "b1");
      const cross = await run(a, "call", { device: "b1", timeout: 5000 });
      assert.equal(cross.error?.code, "ERR_CLUSTER_UNAVAILABLE");
      assert.ok(cross.ms < 2500, `failed after ${cross.ms} ms, not at the timeout`);
      // Frozen past the ttl: Redis expires every lease and entry as it wakes, and then runs the renewals
      // queued meanwhile, whose answers went to timeouts (regression: the lease came back, the entries not).
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, paused + TTL + 500 - Date.now())));
    } finally {
      redis.resume();
    }
    let last: unknown;
    await until(
      async () => ((last = await run(a, "call", { device: "b1", timeout: 2000 })) as { text?: string }).text === "b1",
      10_000,
      "cross-node call after Redis came back",
      50,
    ).catch((error: Error) => {
      throw new Error(`${error.message}: ${JSON.stringify(last)}`);
    });
  });

  test("Redis stopped and restarted empty: local calls never fail, cross-node calls fail at once, and the directory heals", async () => {
    const [a, b, c] = nodes as [Node, Node, Node];
    await redis.stop();
    const local = await run(b, "call", { device: "b2", timeout: 2000 });
    assert.equal(local.text, "b2");
    await until(async () => (await run(a, "call", { device: "b2", timeout: 2000 })).error?.code === "ERR_CLUSTER_UNAVAILABLE", 3000, "cross-node fails", 50);
    const cross = await run(a, "call", { device: "c1", timeout: 5000 });
    assert.equal(cross.error?.code, "ERR_CLUSTER_UNAVAILABLE");
    assert.ok(cross.ms < 200, `failed after ${cross.ms} ms`);
    assert.equal((await run(c, "call", { device: "c1", timeout: 2000 })).text, "c1");

    redis = await startRedis(redis.port); // empty: no persistence
    cleanup.push(() => redis.stop());
    const all = Object.values(devices).flat();
    await until(async () => (await run<unknown[]>(a, "fleet").catch(() => [])).length === all.length, 10_000, "every device registered again", 50);
    for (const node of nodes) {
      const { failures } = await run(node, "get", { devices: all.filter((id) => !id.startsWith("echo-")), total: 30, concurrency: 10 });
      assert.deepEqual(failures, [], `GETs from ${node.name} after the restart`);
    }
  });

  test("kill -9 a node: its devices come back through the others within ttl + backoff; no call waits past its timeout", async () => {
    const [a, b, c] = nodes as [Node, Node, Node];
    const lb = await loadBalancer([c.port]);
    cleanup.push(() => lb.close());
    // Devices with the default reconnect, behind the load balancer, all on node c for now.
    for (const id of ["roam1", "roam2"]) await device(lb.url, id, id, true);
    await until(async () => (await run(a, "lookup", { device: "roam2" }))?.node === "c", 5000, "roaming devices on c", 50);
    lb.targets = [c.port, a.port, b.port];

    // A body and a stream from c, open when it dies.
    const body = await run(a, "hold", { device: "c1", path: "/stall" });
    const stream = await run(a, "hold", { device: "echo-c", dial: true });

    await c.child.kill(); // SIGKILL: no drain, its lease just stops
    const killed = Date.now();
    for (const [what, held] of [["body", body], ["stream", stream]] as const) {
      const result = await run(a, "outcome", held);
      assert.equal(result.error?.code, "ERR_CLUSTER_UNAVAILABLE", `the ${what}: ${JSON.stringify(result)}`);
      assert.ok(result.ms < 1000, `the ${what} failed after ${result.ms} ms`);
    }
    const timeout = 1000;
    let reached = false;
    let last: unknown;
    while (!reached) {
      assert.ok(Date.now() - killed < TTL + 10_000, `roaming devices not reachable within ttl + backoff: ${JSON.stringify(last)}`);
      const results = await Promise.all(["roam1", "roam2"].map((id) => run(a, "call", { device: id, timeout })));
      for (const r of results) assert.ok(r.ms < timeout + 500, `a call waited ${r.ms} ms, past its ${timeout} ms timeout`);
      reached = results.every((r, i) => r.text === `roam${i + 1}`);
      last = results;
      if (!reached) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // c's own devices (no reconnect) are gone from the fleet once its lease expired: not found, at once.
    await until(async () => (await run(a, "call", { device: "c1", timeout: 5000 })).error?.code === "ERR_DEVICE_NOT_FOUND", TTL + 3000, "c1 not found", 50);
    const gone = await run(b, "call", { device: "c2", timeout: 5000 });
    assert.equal(gone.error?.code, "ERR_DEVICE_NOT_FOUND");
    assert.ok(gone.ms < 500);
  });
});

describe("a node frozen mid-call", () => {
  test("a forwarded stream and a forwarded fetch's body fail with ERR_CLUSTER_UNAVAILABLE after the keepalive", async () => {
    const redis = await startRedis();
    cleanup.push(() => redis.stop());
    // Keepalive: a ping after 300 ms of silence, gone after 600 more.
    const [a, b] = await Promise.all(["a", "b"].map((name) => startNode(redis, name, "300,600")));
    await device(b!.url, "echo-far");
    await device(b!.url, "far");
    await until(async () => (await run<unknown[]>(a!, "fleet")).length === 2, 5000, "devices in the fleet", 50);
    const stream = await run(a!, "hold", { device: "echo-far", dial: true });
    // A bodyTimeout far past the keepalive: the frozen node is found by the tunnel's pings, not by it.
    const body = await run(a!, "hold", { device: "far", path: "/stall", bodyTimeout: 10_000 });
    b!.child.process.kill("SIGSTOP");
    const stopped = Date.now();
    try {
      const streamResult = await run(a!, "outcome", stream);
      assert.equal(streamResult.error?.code, "ERR_CLUSTER_UNAVAILABLE", JSON.stringify(streamResult));
      assert.ok(streamResult.ms < 2500, `the stream failed after ${streamResult.ms} ms`);
      const bodyResult = await run(a!, "outcome", body);
      assert.equal(bodyResult.error?.code, "ERR_CLUSTER_UNAVAILABLE", JSON.stringify(bodyResult));
      assert.ok(Date.now() - stopped < 2500, `the body failed ${Date.now() - stopped} ms after the node froze`);
    } finally {
      b!.child.process.kill("SIGCONT");
    }
  });
});

test("listenAndServe nodes: a forwarded request body may stream for longer than handshakeTimeout", async () => {
  const redis = await startRedis();
  cleanup.push(() => redis.stop());
  const quiet = { warn() {}, error() {} };
  const node = async (nodeId: string) => {
    const port = await freePort();
    const server = await listenAndServe(`127.0.0.1:${port}`, () => {}, {
      logger: quiet,
      drainTimeout: 200,
      handshakeTimeout: 300,
      cluster: { redis: redis.url, nodeId, secret: SECRET, ttl: TTL, advertise: `http://127.0.0.1:${port}` },
    });
    cleanup.push(() => server.close());
    return { server, url: `ws://127.0.0.1:${port}/` };
  };
  const [a, b] = [await node("a"), await node("b")];
  await device(b.url, "slow-reader");
  await until(async () => (await a.server.lookup("slow-reader").catch(() => undefined)) !== undefined, 5000, "device in the directory", 50);
  // 10 chunks, 100 ms apart: a second of body, past the 300 ms handshake bound.
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent === 10) return controller.close();
      await new Promise((resolve) => setTimeout(resolve, 100));
      controller.enqueue(new TextEncoder().encode(`chunk${sent++};`));
    },
  });
  const res = await a.server.fetch("slow-reader", "http://device/echo", { method: "POST", body, duplex: "half" } as RequestInit);
  assert.equal(await res.text(), Array.from({ length: 10 }, (_, i) => `chunk${i};`).join(""));
});

test("Redis answering the scripts with something else: each call fails or is logged, nothing is left unhandled, local calls go on", async () => {
  // What answers under a script's name may not be the script (a proxy, another program, a broken
  // server). A claim answered with a number used to throw where nobody caught it, and so did a lease
  // renewal whose lists were not lists: either ended the node's process.
  const redis = await startRedis();
  cleanup.push(() => redis.stop());
  const { Redis } = await import("ioredis");
  const client = new Redis(redis.url, { lazyConnect: false });
  cleanup.push(() => client.disconnect());
  const warnings: string[] = [];
  const port = await freePort();
  const server = await listenAndServe(`127.0.0.1:${port}`, () => {}, {
    logger: { warn: (message: string) => void warnings.push(message), error() {} },
    drainTimeout: 200,
    cluster: { redis: client, nodeId: "a", secret: SECRET, ttl: 900, advertise: `http://127.0.0.1:${port}` },
  });
  cleanup.push(() => server.close());
  await until(() => client.status === "ready", 5000, "Redis");
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  cleanup.push(() => void process.off("unhandledRejection", onUnhandled));
  const scripts = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  scripts.wslisClaim = async () => 42;
  scripts.wslisRenew = async () => [1, 5, 7, 0];
  scripts.wslisFind = async () => ({ node: "b" });

  await device(`ws://127.0.0.1:${port}/`, "lobby");
  await until(() => server.devices.has("lobby"), 5000, "the device");
  await until(() => warnings.some((w) => /could not claim a device: Redis answered the claim/.test(w)), 5000, "the claim's warning");
  await until(() => warnings.some((w) => /could not renew its lease: Redis answered the lease renewal/.test(w)), 5000, "a renewal's warning");
  await assert.rejects(server.lookup("elsewhere"), (e: unknown) => (e as { code?: string }).code === "ERR_CLUSTER_UNAVAILABLE" && /Redis answered the lookup/.test((e as Error).message));
  const res = await server.fetch("lobby", "http://device/kb");
  assert.equal(await res.text(), kilobyte("lobby"), "a device on this node is reached without Redis");
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(unhandled, []);
});

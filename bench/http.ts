/**
 * Reverse HTTP latency and rate, Node to Node over a WebSocket on 127.0.0.1: a 1 KB GET answered by the
 * device, measured next to the request/response round trips it is built on, in the same run:
 *  (a) raw ws: a 16-byte message out, a 1 KB message back (no yamux, no HTTP): the floor;
 *  (b) yamux stream: the same exchange on one wslis stream kept open (yamux, no HTTP);
 *  (c) dialer.fetch: `GET /1k` through the client in server-node/http.ts to `serveHttp` on the device
 *      (connections reused);
 *  (d) node:http with dialer.agent: the same GET through `http.request`;
 *  (e) for reference, no wslis at all: Node's fetch to a node:http server over TCP (what fetch costs by itself).
 *
 * Latency: sequential requests (one in flight), p50 and p99 in µs. Rate: requests per second, both
 * sequential and with 16 in flight. Both ends run in this one process (one core's worth of work per
 * exchange on both sides): the numbers compare layers, they are not a capacity plan.
 *
 * Then the Go column ({@link benchHttpGo}): the same 1 KB GET, rates at 1/16/64 in flight and a 1 MiB POST
 * echo, with the project's Go rhttp peer as client, device or both, each side in its own process.
 *
 * `node --import tsx bench/http.ts` prints both tables (progress on stderr); `--smoke` runs tiny counts
 * to check the wiring, not to measure. `npm run bench` calls {@link benchHttp}.
 */

import { execFile, spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import WebSocket, { WebSocketServer } from "ws";
import { dialAndListen, listenAndServe, serveHttp, type Conn, type Dialer, type HttpConn } from "./lib.js";

const BODY = new Uint8Array(1000).fill(0x61); // 1 KB answer
const REQUEST = new Uint8Array(16).fill(0x72); // what a raw client sends
const CONCURRENCY = 16;

export interface HttpBenchOptions {
  /** Sequential requests timed per implementation, after `warmup` untimed ones. Default 3000. */
  requests?: number;
  /** Untimed requests first (JIT, connection setup). Default 500. */
  warmup?: number;
  /** Requests for the concurrent rate. Default 6000. */
  concurrentRequests?: number;
  log?: (line: string) => void;
}

/** One way of doing a 1 KB request/response; `once()` does one exchange. */
interface Subject {
  name: string;
  once(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Runs the benchmark; rows in the order (a)–(d), with latency percentiles (µs), rates (req/s) and
 * p50 relative to raw ws's.
 */
export async function benchHttp(options: HttpBenchOptions = {}): Promise<Array<Record<string, string | number>>> {
  const requests = options.requests ?? 3000;
  const warmup = options.warmup ?? 500;
  const concurrentRequests = options.concurrentRequests ?? 6000;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));

  const rig = await startRig();
  const subjects: Subject[] = [await rawWs(), yamuxStream(rig), fetchSubject(rig), agentSubject(rig), await plainFetch()];
  const rows: Array<Record<string, string | number>> = [];
  let floor = 0;
  try {
    for (const subject of subjects) {
      log(`http bench: ${subject.name}`);
      for (let i = 0; i < warmup; i++) await subject.once();
      const latencies = new Float64Array(requests);
      const started = performance.now();
      for (let i = 0; i < requests; i++) {
        const t0 = performance.now();
        await subject.once();
        latencies[i] = performance.now() - t0;
      }
      const sequentialRate = requests / ((performance.now() - started) / 1000);
      latencies.sort();
      const p50 = latencies[Math.floor(requests * 0.5)]! * 1000;
      const p99 = latencies[Math.floor(requests * 0.99)]! * 1000;
      floor ||= p50;
      const concurrentRate = await rate(subject, concurrentRequests);
      rows.push({
        implementation: subject.name,
        "p50 (µs)": Math.round(p50),
        "p99 (µs)": Math.round(p99),
        "p50 × raw ws": Number((p50 / floor).toFixed(2)),
        "req/s (1 in flight)": Math.round(sequentialRate),
        [`req/s (${CONCURRENCY} in flight)`]: Math.round(concurrentRate),
      });
    }
  } finally {
    for (const subject of subjects) await subject.close();
    await rig.close();
  }
  return rows;
}

/** Requests per second with CONCURRENCY workers sharing `total` exchanges. */
async function rate(subject: Subject, total: number): Promise<number> {
  // The raw stream subject is one stream: its exchanges cannot overlap.
  const workers = subject.name.startsWith("yamux stream") ? 1 : CONCURRENCY;
  let left = total;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (left-- > 0) await subject.once();
    }),
  );
  return total / ((performance.now() - started) / 1000);
}

interface Rig {
  dialer: Dialer;
  close(): Promise<void>;
}

/** A wslis server and one device in this process; the device serves `GET /1k` and raw echo streams. */
async function startRig(): Promise<Rig> {
  let resolveDialer!: (d: Dialer) => void;
  const connected = new Promise<Dialer>((r) => (resolveDialer = r));
  const server = await listenAndServe("127.0.0.1:0", (d) => resolveDialer(d), { logger: { warn() {}, error: console.error } });
  const listener = await dialAndListen(`ws://127.0.0.1:${server.address().port}/`, { params: { deviceId: "bench" }, reconnect: false });
  // The first byte of a stream says what it is: "r" a raw request/response stream, anything else HTTP.
  const httpConns = { accept: () => nextHttpConn() };
  const waiting: ((conn: HttpConn) => void)[] = [];
  const queued: HttpConn[] = [];
  const nextHttpConn = () => new Promise<HttpConn>((resolve) => (queued.length ? resolve(queued.shift()!) : waiting.push(resolve)));
  void (async () => {
    for await (const conn of listener) {
      // A stream cut by the end of the run is not a result.
      sortStream(conn, (http) => (waiting.length ? waiting.shift()!(http) : queued.push(http))).catch(() => {});
    }
  })().catch(() => {});
  void serveHttp(httpConns, () => new Response(BODY, { headers: { "content-type": "text/plain" } }));
  const dialer = await connected;
  return {
    dialer,
    async close() {
      await listener.close();
      await server.close();
    },
  };
}

/** Raw streams are answered here; HTTP ones are handed on with their first chunk put back. */
async function sortStream(conn: Conn, toHttp: (conn: HttpConn) => void): Promise<void> {
  const reader = conn.readable.getReader();
  const first = await reader.read();
  if (first.done) return;
  if (first.value[0] !== REQUEST[0]) {
    reader.releaseLock();
    const rest = conn.readable;
    const readable = new ReadableStream<Uint8Array>({
      start: (c) => c.enqueue(first.value),
      pull: async (c) => {
        const r = rest.getReader();
        const { done, value } = await r.read();
        r.releaseLock();
        if (done) c.close();
        else c.enqueue(value);
      },
    });
    toHttp({ readable, writable: conn.writable, closed: conn.closed, reset: () => conn.reset() });
    return;
  }
  // Raw: every REQUEST.length bytes in, BODY out.
  const writer = conn.writable.getWriter();
  let pending = first.value.length;
  for (;;) {
    while (pending >= REQUEST.length) {
      pending -= REQUEST.length;
      await writer.write(BODY);
    }
    const { done, value } = await reader.read();
    if (done) break;
    pending += value.length;
  }
  await writer.close().catch(() => {});
}

async function rawWs(): Promise<Subject> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await once(wss, "listening");
  wss.on("connection", (socket) => socket.on("message", () => socket.send(BODY)));
  const ws = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
  await once(ws, "open");
  // Replies come in order; each waiter takes the next one.
  const waiters: (() => void)[] = [];
  ws.on("message", () => waiters.shift()?.());
  return {
    name: "raw ws message round trip",
    once: () =>
      new Promise<void>((resolve) => {
        waiters.push(resolve);
        ws.send(REQUEST);
      }),
    async close() {
      ws.close();
      for (const client of wss.clients) client.terminate();
      await new Promise((r) => wss.close(r));
    },
  };
}

function yamuxStream(rig: Rig): Subject {
  let stream: Promise<{ writer: WritableStreamDefaultWriter<Uint8Array>; reader: ReadableStreamDefaultReader<Uint8Array>; conn: Conn }> | undefined;
  let buffered = 0;
  return {
    name: "yamux stream round trip (one stream)",
    async once() {
      stream ??= rig.dialer.dial().then((conn) => ({ conn, writer: conn.writable.getWriter(), reader: conn.readable.getReader() }));
      const { writer, reader } = await stream;
      await writer.write(REQUEST);
      while (buffered < BODY.length) {
        const { done, value } = await reader.read();
        if (done) throw new Error("the device closed the raw stream");
        buffered += value.length;
      }
      buffered -= BODY.length;
    },
    async close() {
      const s = await stream;
      s?.conn.reset();
    },
  };
}

function fetchSubject(rig: Rig): Subject {
  return {
    name: "dialer.fetch GET 1 KB",
    async once() {
      const res = await rig.dialer.fetch("http://device/1k");
      const body = await res.arrayBuffer();
      if (body.byteLength !== BODY.length) throw new Error(`got ${body.byteLength} bytes`);
    },
    async close() {},
  };
}

function agentSubject(rig: Rig): Subject {
  const agent = rig.dialer.agent;
  return {
    name: "node:http + dialer.agent GET 1 KB",
    once: () =>
      new Promise<void>((resolve, reject) => {
        http
          .get("http://device/1k", { agent }, (res) => {
            let n = 0;
            res.on("data", (chunk: Buffer) => (n += chunk.length));
            res.on("end", () => (n === BODY.length ? resolve() : reject(new Error(`got ${n} bytes`))));
          })
          .on("error", reject);
      }),
    async close() {},
  };
}

async function plainFetch(): Promise<Subject> {
  const server = http.createServer((_request, response) => response.end(BODY));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/1k`;
  return {
    name: "(reference) Node fetch → node:http over TCP",
    async once() {
      await (await fetch(url)).arrayBuffer();
    },
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Prints the rows as a table (markdown, like bench/index.ts). */
function printTable(rows: Array<Record<string, string | number>>): void {
  const columns = Object.keys(rows[0] ?? {});
  console.log(`| ${columns.join(" | ")} |`);
  console.log(`| ${columns.map((c) => (typeof rows[0]![c] === "number" ? "---:" : "---")).join(" | ")} |`);
  for (const row of rows) console.log(`| ${columns.map((c) => String(row[c])).join(" | ")} |`);
}

// ---------------------------------------------------------------------------------------------------
// Side by side with Go: the project's Go rhttp peer (test/go/rhttp: net/http over Debian's
// hashicorp/yamux over gorilla/websocket, as Go wslis's rhttp) as client, device, or both.

/** Sizes of the Go-column run. */
export interface HttpGoBenchOptions {
  /** Interleaved rounds; each runs every pair once. Default 5. */
  rounds?: number;
  /**
   * Untimed rounds of the same work first. Default 3. V8 compiles our code while it runs (a fresh
   * process's first thousands of calls are several times slower); Go is compiled ahead of time. The
   * first warm-up round's GET p50/p99 are reported in rows of their own.
   */
  warmupRounds?: number;
  /** Sequential 1 KB GETs timed per pair and round (after a quarter as many untimed). Default 2000. */
  requests?: number;
  /** GETs per rate measurement. Default 4000. */
  rateRequests?: number;
  /** 1 MiB POST echoes per pair and round (the median is kept). Default 5. */
  posts?: number;
  log?: (line: string) => void;
}

const IN_FLIGHT = [1, 16, 64] as const;
const MEASURES = ["1 KB GET p50 (µs)", "1 KB GET p99 (µs)", ...IN_FLIGHT.map((c) => `req/s, ${c} in flight`), "1 MiB POST echo (ms)"];
/** The GET's p50 and p99 in the first warm-up round (fresh processes), in rows of their own. */
const COLD_MEASURES = ["1 KB GET p50 (µs), first warm-up round", "1 KB GET p99 (µs), first warm-up round"];
/** Higher is better for these; lower for the others. */
const HIGHER_BETTER = new Set(IN_FLIGHT.map((c) => `req/s, ${c} in flight`));

/** What a client side can measure against the device it is paired with. */
interface BenchClient {
  latency(n: number): Promise<{ p50: number; p99: number }>;
  rate(n: number, inFlight: number): Promise<number>;
  post(n: number): Promise<number>;
  close(): Promise<void>;
}

interface Pair {
  name: string;
  client: BenchClient;
}

const PAIRS = ["Go ↔ Go", "Go client → our device", "our client → Go device", "ours ↔ ours"] as const;

/**
 * Runs the four pairs in interleaved rounds and returns one row per measure: each pair's median value,
 * and ours/Go for the three pairs with our code in them (median of per-round ratios; > 1 is slower for
 * times, faster for rates).
 */
export async function benchHttpGo(options: HttpGoBenchOptions = {}): Promise<Array<Record<string, string | number>>> {
  const rounds = options.rounds ?? 5;
  const warmupRounds = options.warmupRounds ?? 3;
  const requests = options.requests ?? 2000;
  const rateRequests = options.rateRequests ?? 4000;
  const posts = options.posts ?? 5;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));

  log("http bench (Go column): building test/go/rhttp");
  const go = await buildGo();
  const started: { close(): Promise<void> }[] = [];
  try {
    const ours = await startOurServer();
    started.push(ours);
    const pairs: Pair[] = [];
    for (const name of PAIRS) {
      log(`http bench (Go column): starting ${name}`);
      const goClient = name.startsWith("Go ");
      const goDevice = name.endsWith("Go device") || name === "Go ↔ Go";
      let client: BenchClient;
      let deviceUrl: string;
      if (goClient) {
        const process = new GoPeer(go.binary, ["-mode", "bench-client"]);
        started.push(process);
        const { port } = await process.event("listening");
        deviceUrl = `ws://127.0.0.1:${String(port)}/`;
        client = process.asClient();
        if (goDevice) started.push(await startGoDevice(go.binary, deviceUrl));
        else started.push(await startNodeDevice(deviceUrl));
        await process.event("ready");
      } else {
        const id = goDevice ? "go-device" : "node-device";
        deviceUrl = `ws://127.0.0.1:${ours.port}/?deviceId=${id}`;
        const dialer = ours.device(id);
        if (goDevice) started.push(await startGoDevice(go.binary, deviceUrl));
        else started.push(await startNodeDevice(deviceUrl));
        client = ourClient(await dialer);
      }
      pairs.push({ name, client });
    }

    const values = new Map<string, number[][]>(MEASURES.map((m) => [m, pairs.map(() => [])]));
    /** The first warm-up round's GET p50 and p99 per pair. */
    const cold = new Map<string, number[][]>(COLD_MEASURES.map((m) => [m, pairs.map(() => [])]));
    for (let round = -warmupRounds; round < rounds; round++) {
      const which = round < 0 ? `warm-up round ${round + warmupRounds + 1}/${warmupRounds}` : `round ${round + 1}/${rounds}`;
      // Timed rounds fill `values`; the first warm-up round fills `cold` (its first two measures); the others nothing.
      const [into, measures] = round >= 0 ? [values, MEASURES] : round === -warmupRounds ? [cold, COLD_MEASURES] : [undefined, []];
      // Rotate the order each round so no pair always runs first (warm caches, a quiet machine).
      for (let k = 0; k < pairs.length; k++) {
        const index = (k + round + warmupRounds) % pairs.length;
        const { name, client } = pairs[index]!;
        log(`http bench (Go column): ${which}, ${name}`);
        await client.latency(Math.max(1, Math.floor(requests / 4)));
        const { p50, p99 } = await client.latency(requests);
        log(`http bench (Go column): ${which}, ${name}: GET p50 ${Math.round(p50)} µs, p99 ${Math.round(p99)} µs`);
        const figures = [p50, p99];
        for (const inFlight of IN_FLIGHT) figures.push(await client.rate(rateRequests, inFlight));
        figures.push(await client.post(posts));
        measures.forEach((measure, m) => into!.get(measure)![index]!.push(figures[m]!));
      }
    }
    for (const pair of pairs) await pair.client.close();

    const all = new Map([...values, ...(warmupRounds > 0 ? cold : [])]);
    return [...all.keys()].map((measure) => {
      const perPair = all.get(measure)!;
      const row: Record<string, string | number> = { measure };
      pairs.forEach((pair, i) => (row[pair.name] = round3(median(perPair[i]!))));
      // ours / Go: for times, ours divided by Go's; for rates, Go's divided by ours (so > 1 is always worse).
      pairs.forEach((pair, i) => {
        if (i === 0) return;
        const ratios = perPair[i]!.map((v, r) => (HIGHER_BETTER.has(measure) ? perPair[0]![r]! / v : v / perPair[0]![r]!));
        row[`${pair.name} / Go ↔ Go`] = round3(median(ratios));
      });
      return row;
    });
  } finally {
    for (const s of started.reverse()) await s.close().catch(() => {});
    await go.cleanUp();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

function round3(value: number): number {
  return Number(value.toPrecision(3));
}

const GOPATH = "/usr/share/gocode";

/** Builds test/go/rhttp as test/interop-http-go.test.ts does, into a temporary directory. */
async function buildGo(): Promise<{ binary: string; cleanUp(): Promise<void> }> {
  const root = resolve(import.meta.dirname, "..");
  const dir = await mkdtemp(join(tmpdir(), "wslis-bench-rhttp-"));
  const binary = join(dir, "rhttp");
  const env: NodeJS.ProcessEnv = { ...process.env, GO111MODULE: "off", GOPATH, GOFLAGS: "" };
  if (!env.GOCACHE && !env.HOME) env.GOCACHE = join(tmpdir(), "wslis-go-cache");
  await new Promise<void>((done, fail) => {
    execFile("go", ["build", "-o", binary, "test/go/rhttp/main.go"], { cwd: root, env, timeout: 300_000 }, (error, _stdout, stderr) =>
      error ? fail(new Error(`go build failed (Go and Debian's golang-github-hashicorp-yamux-dev, golang-github-gorilla-websocket-dev are needed): ${stderr || error.message}`)) : done(),
    );
  });
  return { binary, cleanUp: () => rm(dir, { recursive: true, force: true }) };
}

/** A Go rhttp process; its stdout is JSON lines, its stdin takes bench-client commands. */
class GoPeer {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #events: Record<string, unknown>[] = [];
  readonly #waiters: (() => void)[] = [];
  #stderr = "";

  constructor(binary: string, args: string[]) {
    this.#child = spawn(binary, [...args, "-lifetime", "3600s"]);
    this.#child.stderr.on("data", (chunk: Buffer) => (this.#stderr += chunk.toString()));
    createInterface({ input: this.#child.stdout }).on("line", (line) => {
      this.#events.push(JSON.parse(line) as Record<string, unknown>);
      for (const wake of this.#waiters.splice(0)) wake();
    });
    this.#child.on("exit", () => {
      for (const wake of this.#waiters.splice(0)) wake();
    });
  }

  /** Takes the next event named `name`; an "error" event, or the process ending, fails it. */
  async event(name: string): Promise<Record<string, unknown>> {
    for (;;) {
      const at = this.#events.findIndex((e) => e.event === name || e.event === "error");
      if (at >= 0) {
        const [found] = this.#events.splice(at, 1);
        if (found!.event === "error") throw new Error(`Go rhttp: ${String(found!.error)}\n${this.#stderr}`);
        return found!;
      }
      if (this.#child.exitCode !== null || this.#child.signalCode !== null) throw new Error(`Go rhttp exited\n${this.#stderr}`);
      await new Promise<void>((wake) => this.#waiters.push(wake));
    }
  }

  asClient(): BenchClient {
    const ask = async (command: object, event: string) => {
      this.#child.stdin.write(`${JSON.stringify(command)}\n`);
      return this.event(event);
    };
    return {
      latency: async (n) => {
        const e = await ask({ op: "latency", n }, "latency");
        return { p50: Number(e.p50), p99: Number(e.p99) };
      },
      rate: async (n, c) => Number((await ask({ op: "rate", n, c }, "rate")).rps),
      post: async (n) => Number((await ask({ op: "post", n }, "post")).ms),
      close: () => this.close(),
    };
  }

  async close(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#child.kill("SIGKILL");
    await once(this.#child, "exit");
  }
}

async function startGoDevice(binary: string, url: string): Promise<{ close(): Promise<void> }> {
  const device = new GoPeer(binary, ["-mode", "device", "-url", url]);
  await device.event("serving");
  return device;
}

/** Our device in its own Node process (bench/http-device-child.ts). */
async function startNodeDevice(url: string): Promise<{ close(): Promise<void> }> {
  const child = spawn(process.execPath, ["--import", "tsx", fileURLToPath(new URL("./http-device-child.ts", import.meta.url)), url], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  await new Promise<void>((ready, fail) => {
    createInterface({ input: child.stdout }).once("line", (line) => (line === "ready" ? ready() : fail(new Error(line))));
    child.once("exit", (code) => fail(new Error(`the Node device exited (${code})`)));
  });
  return {
    async close() {
      if (child.exitCode !== null) return;
      child.stdin.end();
      const exited = once(child, "exit");
      const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Our wslis server; `device(id)` resolves with the dialer of the device that connects with that id. */
async function startOurServer(): Promise<{ port: number; device(id: string): Promise<Dialer>; close(): Promise<void> }> {
  const waiting = new Map<string, (dialer: Dialer) => void>();
  const arrived = new Map<string, Dialer>();
  const server = await listenAndServe(
    "127.0.0.1:0",
    (dialer) => {
      const wake = waiting.get(dialer.id);
      if (wake) wake(dialer);
      else arrived.set(dialer.id, dialer);
    },
    { logger: { warn() {}, error: console.error } },
  );
  return {
    port: server.address().port,
    device: (id) => {
      const dialer = arrived.get(id);
      return dialer ? Promise.resolve(dialer) : new Promise((resolve) => waiting.set(id, resolve));
    },
    close: () => server.close(),
  };
}

const POST_BODY = new Uint8Array(1 << 20).map((_, i) => (i * 31) & 0xff);

function ourClient(dialer: Dialer): BenchClient {
  const get = async () => {
    const res = await dialer.fetch("http://device.local/1k");
    const body = await res.arrayBuffer();
    if (body.byteLength !== 1000) throw new Error(`GET /1k: ${body.byteLength} bytes`);
  };
  return {
    async latency(n) {
      const times = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await get();
        times[i] = (performance.now() - t0) * 1000;
      }
      times.sort();
      return { p50: times[Math.floor(n / 2)]!, p99: times[Math.floor((n * 99) / 100)]! };
    },
    async rate(n, inFlight) {
      let left = n;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (left-- > 0) await get();
        }),
      );
      return n / ((performance.now() - t0) / 1000);
    },
    async post(n) {
      const times: number[] = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        const res = await dialer.fetch("http://device.local/echo", { method: "POST", body: POST_BODY });
        const back = await res.arrayBuffer();
        if (back.byteLength !== POST_BODY.length) throw new Error(`POST /echo: ${back.byteLength} bytes back`);
        times.push(performance.now() - t0);
      }
      return median(times);
    },
    async close() {},
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const smoke = process.argv.includes("--smoke");
  console.log(`Node ${process.version}; 1 KB GET vs round trips below it, both ends in one process, 127.0.0.1\n`);
  printTable(await benchHttp(smoke ? { requests: 50, warmup: 10, concurrentRequests: 100 } : {}));
  console.log(
    "\nReverse HTTP side by side with Go rhttp (test/go/rhttp), client and device in separate processes; " +
      "values are medians over rounds, ratios the median of per-round ratios (> 1: ours is slower)\n",
  );
  printTable(await benchHttpGo(smoke ? { rounds: 2, warmupRounds: 1, requests: 40, rateRequests: 128, posts: 1 } : {}));
}

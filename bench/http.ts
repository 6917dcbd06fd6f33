/**
 * Reverse HTTP latency and rate, Node to Node over a WebSocket on 127.0.0.1: a 1 KB GET answered by the
 * device, measured next to the request/response round trips it is built on, in the same run:
 *  (a) raw ws: a 16-byte message out, a 1 KB message back (no yamux, no HTTP): the floor;
 *  (b) yamux stream: the same exchange on one wslis stream kept open (yamux, no HTTP);
 *  (c) dialer.fetch: `GET /1k` through undici to `serveHttp` on the device (connections reused);
 *  (d) node:http with dialer.agent: the same GET through `http.request`;
 *  (e) for reference, no wslis at all: Node's fetch to a node:http server over TCP (what fetch costs by itself).
 *
 * Latency: sequential requests (one in flight), p50 and p99 in µs. Rate: requests per second, both
 * sequential and with 16 in flight. Both ends run in this one process (one core's worth of work per
 * exchange on both sides): the numbers compare layers, they are not a capacity plan.
 *
 * `node --import tsx bench/http.ts` prints the table alone; `npm run bench` calls {@link benchHttp}.
 */

import { once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import WebSocket, { WebSocketServer } from "ws";
import { dialAndListen } from "../server-node/device.js";
import { listenAndServe, type Dialer } from "../server-node/index.js";
import { serveHttp } from "../src/http/server.js";
import type { Stream } from "../src/yamux/stream.js";

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
  const waiting: ((conn: Stream) => void)[] = [];
  const queued: Stream[] = [];
  const nextHttpConn = () => new Promise<Stream>((resolve) => (queued.length ? resolve(queued.shift()!) : waiting.push(resolve)));
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
async function sortStream(conn: Stream, toHttp: (conn: Stream) => void): Promise<void> {
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
    toHttp(Object.assign(Object.create(conn) as Stream, { readable, writable: conn.writable, closed: conn.closed, reset: () => conn.reset() }));
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
  let stream: Promise<{ writer: WritableStreamDefaultWriter<Uint8Array>; reader: ReadableStreamDefaultReader<Uint8Array>; conn: Stream }> | undefined;
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

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  console.log(`Node ${process.version}; 1 KB GET vs round trips below it, both ends in one process, 127.0.0.1\n`);
  printTable(await benchHttp());
}

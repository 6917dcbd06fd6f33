/**
 * The wslis column of bench/streams.ts: the same program as the Go bench peer (test/go/bench/main.go),
 * same commands, same replies, same stream protocol, written on wslis (listenAndServe as the server,
 * the Node device entry's dialAndListen as the device). Each role runs in its own process, so both ends'
 * CPU and memory are measured apart, and any server pairs with any device.
 *
 *   node --expose-gc --import tsx bench/peer.ts server [MAX_STREAMS]
 *   node --expose-gc --import tsx bench/peer.ts device URL [MAX_STREAMS]
 *
 * The Go timeouts (120 s per operation) are matched by a 120 s `dialTimeout`.
 * MAX_STREAMS is the session's `maxStreams` (wslis bounds live streams per session; hashicorp/yamux does
 * not), raised by the bench for its 10,000-stream scenario. See the Go file for the commands.
 */

import { createInterface } from "node:readline";
import { dialAndListen, listenAndServe, type Conn, type Dialer } from "./lib.js";

const OP_ECHO = 0x65; // "e": the request is REPLY_SIZE bytes; answer REPLY_SIZE bytes and close
const OP_SINK = 0x73; // "s": bytes 1-8 give the request's length; read it all, answer it in decimal, close
const OP_HOLD = 0x68; // "h": answer one byte at once, then wait for the server's FIN and close
const REPLY_SIZE = 1024;
const CHUNK = 64 * 1024;

const chunk = new Uint8Array(CHUNK).map((_, i) => (i * 31 + 7) & 0xff);
const reply = chunk.slice(0, REPLY_SIZE);
const request = chunk.slice(0, REPLY_SIZE);
request[0] = OP_ECHO;
const holdByte = Uint8Array.of(OP_HOLD);

const [role, ...rest] = process.argv.slice(2);
const quiet = { warn() {}, error: (message: string, ...details: unknown[]) => console.error(message, ...details) };

function emit(fields: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(fields)}\n`);
}

/** Reads a stream by byte counts across chunk boundaries. */
class ByteReader {
  #pending: Uint8Array = new Uint8Array(0);
  constructor(readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  /** The next `n` bytes, or an error if the stream ends first. */
  async take(n: number): Promise<Uint8Array> {
    while (this.#pending.length < n) {
      const { value, done } = await this.reader.read();
      if (done) throw new Error(`the stream ended ${n - this.#pending.length} bytes short`);
      this.#pending = this.#pending.length === 0 ? value : concat(this.#pending, value);
    }
    const taken = this.#pending.subarray(0, n);
    this.#pending = this.#pending.subarray(n);
    return taken;
  }

  /** Passes over `n` bytes without keeping them. */
  async skip(n: number): Promise<void> {
    let left = n - this.#pending.length;
    this.#pending = this.#pending.subarray(Math.min(n, this.#pending.length));
    while (left > 0) {
      const { value, done } = await this.reader.read();
      if (done) throw new Error(`the stream ended ${left} bytes short`);
      if (value.length > left) this.#pending = value.subarray(left);
      left -= value.length;
    }
  }

  /** Reads to the peer's FIN; returns how many bytes came. */
  async toEnd(): Promise<number> {
    let n = this.#pending.length;
    this.#pending = new Uint8Array(0);
    for (;;) {
      const { value, done } = await this.reader.read();
      if (done) return n;
      n += value.length;
    }
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

/** The device's side of every scenario, chosen by the stream's first byte. */
async function handle(conn: Conn): Promise<void> {
  const bytes = new ByteReader(conn.readable.getReader());
  const writer = conn.writable.getWriter();
  const [op] = await bytes.take(1);
  if (op === OP_ECHO) {
    await bytes.skip(REPLY_SIZE - 1);
    void writer.write(reply);
  } else if (op === OP_SINK) {
    const head = await bytes.take(8);
    const total = Number(new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0));
    await bytes.skip(total - 9);
    void writer.write(new TextEncoder().encode(String(total)));
  } else if (op === OP_HOLD) {
    void writer.write(holdByte);
    await bytes.toEnd();
  } else {
    conn.reset();
    return;
  }
  await writer.close();
}

/** Runs `task(0..count-1)` with at most `limit` at a time. */
async function parallel(count: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}

async function requestResponse(dialer: Dialer, count: number, inflight: number) {
  const latencies = new Float64Array(count);
  const start = performance.now();
  await parallel(count, inflight, async (i) => {
    const begin = performance.now();
    const conn = await dialer.dial();
    const writer = conn.writable.getWriter();
    void writer.write(request).catch(() => {});
    const n = await new ByteReader(conn.readable.getReader()).toEnd();
    if (n !== REPLY_SIZE) throw new Error(`the device answered ${n} bytes, not ${REPLY_SIZE}`);
    latencies[i] = (performance.now() - begin) * 1e3;
    await writer.close();
  });
  const elapsed = (performance.now() - start) / 1e3;
  latencies.sort();
  const at = (p: number) => latencies[Math.floor(p * (count - 1))]!;
  return { p50Us: at(0.5), p99Us: at(0.99), opsPerSec: count / elapsed };
}

async function bulk(dialer: Dialer, streams: number, bytes: number) {
  if (bytes < 9) throw new RangeError("bulk needs at least 9 bytes per stream (the op and the length)");
  const first = chunk.slice(0, Math.min(CHUNK, bytes));
  first[0] = OP_SINK;
  new DataView(first.buffer).setBigUint64(1, BigInt(bytes));
  const start = performance.now();
  await parallel(streams, streams, async () => {
    const conn = await dialer.dial();
    const writer = conn.writable.getWriter();
    for (let sent = 0; sent < bytes; ) {
      const piece = sent === 0 ? first : bytes - sent >= CHUNK ? chunk : chunk.subarray(0, bytes - sent);
      sent += piece.length;
      await writer.ready;
      void writer.write(piece).catch(() => {});
    }
    const answer = await new Response(conn.readable).text();
    if (answer !== String(bytes)) throw new Error(`the device counted ${JSON.stringify(answer)} bytes, not ${bytes}`);
    await writer.close();
  });
  return { elapsedUs: (performance.now() - start) * 1e3 };
}

interface Held {
  conn: Conn;
  writer: WritableStreamDefaultWriter<Uint8Array>;
}

async function hold(dialer: Dialer, count: number, held: Held[]) {
  const start = performance.now();
  await parallel(count, count, async () => {
    const conn = await dialer.dial();
    const writer = conn.writable.getWriter();
    held.push({ conn, writer });
    void writer.write(holdByte).catch(() => {});
    await new ByteReader(conn.readable.getReader()).take(1);
  });
  return { openUs: (performance.now() - start) * 1e3 };
}

async function release(held: Held[]) {
  const start = performance.now();
  await Promise.all(held.splice(0).map(({ conn, writer }) => Promise.all([writer.close(), conn.closed])));
  return { elapsedUs: (performance.now() - start) * 1e3 };
}

/**
 * The platform's share of a held stream: `count` bare Node web streams, held as the hold command's
 * streams are (a ReadableStream with its reader and a read pending, a WritableStream with its writer),
 * with no wslis in them. Time to make them, and memory per pair after a full GC, measured as `stats`.
 */
function webStreams(count: number) {
  const before = stats().memBytes;
  const held: unknown[] = [];
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const reader = new ReadableStream<Uint8Array>({ pull() {} }, { highWaterMark: 0 }).getReader();
    const writer = new WritableStream<Uint8Array>({ write() {} }).getWriter();
    held.push(reader, reader.read(), writer);
  }
  const elapsedUs = (performance.now() - start) * 1e3;
  const bytesPerStream = (stats().memBytes - before) / count;
  held.length = 0;
  return { usPerStream: elapsedUs / count, bytesPerStream };
}

/** CPU since the process started and memory in use after a full GC (heap + external, ArrayBuffers included). */
function stats() {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run the peer with node --expose-gc");
  gc();
  gc(); // a second pass frees what the first one's finalizers released
  const cpu = process.cpuUsage();
  const memory = process.memoryUsage();
  return { cpuUs: cpu.user + cpu.system, memBytes: memory.heapUsed + memory.external };
}

/** CPU (user + system) of the process since it started, in µs, without a GC first. */
function cpu() {
  const used = process.cpuUsage();
  return { cpuUs: used.user + used.system };
}

type Command = (cmd: string, args: number[]) => Promise<Record<string, unknown>>;

/** One command per stdin line, in order, each answered by a reply line; exits when stdin ends. */
async function readCommands(run: Command): Promise<void> {
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, ...words] = line.trim().split(/\s+/);
    if (!cmd) continue;
    let result: Record<string, unknown> = {};
    try {
      const args = words.map((word) => {
        const n = Number(word);
        if (!Number.isInteger(n) || n <= 0) throw new RangeError(`${JSON.stringify(word)} is not a positive integer`);
        return n;
      });
      result = await run(cmd, args);
    } catch (error) {
      result.error = error instanceof Error ? error.message : String(error);
    }
    emit({ ...result, event: "reply", cmd });
  }
}

const maxStreams = (arg: string | undefined) => (arg === undefined ? {} : { session: { maxStreams: Number(arg) } });

if (role === "server") {
  let connected!: (dialer: Dialer) => void;
  const device = new Promise<Dialer>((resolve) => (connected = resolve));
  const server = await listenAndServe(
    "127.0.0.1:0",
    (dialer) => {
      emit({ event: "connected" });
      connected(dialer);
    },
    { logger: quiet, drainTimeout: 100, dialTimeout: 120_000, ...maxStreams(rest[0]) },
  );
  emit({ event: "listening", port: server.address().port });
  const held: Held[] = [];
  await readCommands(async (cmd, args) => {
    if (cmd === "stats") return stats();
    if (cmd === "cpu") return cpu();
    const dialer = await device;
    if (cmd === "rr" && args.length === 2) return requestResponse(dialer, args[0]!, args[1]!);
    if (cmd === "bulk" && args.length === 2) return bulk(dialer, args[0]!, args[1]!);
    if (cmd === "hold" && args.length === 1) return hold(dialer, args[0]!, held);
    if (cmd === "release") return release(held);
    if (cmd === "webstreams" && args.length === 1) return webStreams(args[0]!);
    throw new Error(`unknown command ${cmd} ${args.join(" ")}`);
  });
  await server.close();
} else if (role === "device") {
  const listener = await dialAndListen(rest[0]!, { params: { deviceId: "bench" }, reconnect: false, ...maxStreams(rest[1]) });
  emit({ event: "connected" });
  void (async () => {
    for await (const conn of listener) {
      handle(conn).catch(() => conn.reset());
    }
  })();
  await readCommands(async (cmd) => {
    if (cmd === "stats") return stats();
    if (cmd === "cpu") return cpu();
    throw new Error(`unknown device command ${cmd}`);
  });
  await listener.close();
} else {
  console.error("usage: bench/peer.ts server [MAX_STREAMS] | device URL [MAX_STREAMS]");
  process.exit(2);
}

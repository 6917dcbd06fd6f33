/**
 * Helpers for the conformance suites that run wslis against independent yamux implementations:
 * the Go peer (test/go/peer/main.go: hashicorp/yamux over gorilla/websocket, built here once per run)
 * and yamux-js (over a Node Duplex, see {@link duplexTransport}).
 *
 * Every wait here is bounded; every process started here is stopped by its owner's `stop()`.
 */

import { execFile, spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, rename } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import type { Duplex } from "node:stream";
import { HEADER_SIZE } from "../../src/yamux/frame.js";
import type { Transport } from "../../src/yamux/session.js";
import { within } from "./assert.js";
import { splitFrames } from "./frames.js";
import type { Conn } from "../../src/yamux/stream.js";

const root = resolve(import.meta.dirname, "../..");
/** Where Debian's golang-*-dev packages put their sources; the peer builds in GOPATH mode against them. */
const GOPATH = "/usr/share/gocode";
const GO_SOURCE = join(root, "test/go/peer/main.go");

const SETUP_HINT =
  "The Go interop suite needs Go and Debian's hashicorp/yamux and gorilla/websocket; it does not skip. " +
  "Run `npm run setup`, or install them: sudo apt-get install golang-go golang-github-hashicorp-yamux-dev " +
  "golang-github-gorilla-websocket-dev";

// Hashing.

/** How many bytes went by, and their SHA-256 in hex. */
export interface Digest {
  bytes: number;
  sha256: string;
}

/** Reads `readable` to its end and digests it. */
export async function digest(readable: ReadableStream<Uint8Array>): Promise<Digest> {
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of readable) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, sha256: hash.digest("hex") };
}

/**
 * Echoes a stream to itself (`readable.pipeTo(writable)`, with a hashing step in between) and resolves
 * with the digest of what it echoed once the peer's FIN was echoed back as ours. Rejects with the
 * stream's error when the stream or its session dies.
 */
export function hashingEcho(conn: Conn): Promise<Digest> {
  const hash = createHash("sha256");
  let bytes = 0;
  const tap = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      hash.update(chunk);
      bytes += chunk.length;
      controller.enqueue(chunk);
    },
  });
  return conn.readable
    .pipeThrough(tap)
    .pipeTo(conn.writable)
    .then(() => ({ bytes, sha256: hash.digest("hex") }));
}

/**
 * Sends `data` on `conn`, then FIN, while reading the echo to its end (concurrently: the echo must
 * flow back while we write, or windows fill up both ways). Resolves with the digest of what came back.
 */
export async function sendAndDigest(conn: Conn, data: Uint8Array): Promise<Digest> {
  const received = digest(conn.readable);
  const writer = conn.writable.getWriter();
  try {
    await writer.write(data);
    await writer.close();
  } catch (error) {
    received.catch(() => {}); // the write's error is the one to report
    throw error;
  }
  return received;
}

// The Go peer.

const building = new Map<string, Promise<string>>();

/**
 * Builds test/go/peer/main.go (or another Go program of the project's, `source` relative to the
 * repository) in GOPATH mode against Debian's packages, into a directory under os.tmpdir() named after a
 * hash of the source and the Go version, so it is built once per change, not per test run or file.
 * Throws a how-to when Go or the packages are missing: the suite never skips.
 */
export function goPeerBinary(source = GO_SOURCE): Promise<string> {
  const path = resolve(root, source);
  let binary = building.get(path);
  if (!binary) building.set(path, (binary = buildGoPeer(path)));
  return binary;
}

async function buildGoPeer(sourcePath: string): Promise<string> {
  const env: NodeJS.ProcessEnv = { ...process.env, GO111MODULE: "off", GOPATH, GOFLAGS: "" };
  // Go needs a build cache; without HOME it has no default.
  if (!env.GOCACHE && !env.HOME && !env.XDG_CACHE_HOME) env.GOCACHE = join(tmpdir(), "wslis-go-cache");
  let version: string;
  try {
    version = await run("go", ["version"], env, 10_000);
  } catch (error) {
    throw new Error(`\`go version\` failed (${(error as Error).message}). ${SETUP_HINT}`, { cause: error });
  }
  for (const pkg of ["github.com/hashicorp/yamux", "github.com/gorilla/websocket"]) {
    if (!existsSync(join(GOPATH, "src", pkg))) throw new Error(`${pkg} is missing from ${GOPATH}. ${SETUP_HINT}`);
  }
  const source = await readFile(sourcePath);
  const key = createHash("sha256").update(source).update(version).digest("hex").slice(0, 16);
  const name = basename(dirname(sourcePath));
  const dir = join(tmpdir(), `wslis-go-${name}-${key}`);
  const binary = join(dir, name);
  if (existsSync(binary)) return binary;
  await mkdir(dir, { recursive: true });
  // Build beside it and rename: another test process may be building the same binary right now.
  const partial = `${binary}.${process.pid}.tmp`;
  try {
    await run("go", ["build", "-o", partial, sourcePath], env, 180_000);
  } catch (error) {
    throw new Error(`building the Go peer failed: ${(error as Error).message}. ${SETUP_HINT}`, { cause: error });
  }
  await rename(partial, binary);
  return binary;
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv, timeout: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env, timeout, cwd: root }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${error.message}${stderr ? `\n${stderr}` : ""}`, { cause: error }));
      else resolve(stdout.trim());
    });
  });
}

/** One JSON line from the Go peer: an event, or the reply to a command (`event: "reply"`, `cmd`, maybe `error`). */
export interface PeerEvent {
  event: string;
  cmd?: string;
  error?: string;
  [field: string]: unknown;
}

/** An echo the Go peer ran (command `echo`): per stream, the digests of what it sent and got back. */
export interface GoEchoStream {
  stream: number;
  bytes: number;
  sent: string;
  received: string;
  error?: string;
}

interface EventWaiter {
  match: (event: PeerEvent) => boolean;
  resolve: (event: PeerEvent) => void;
  reject: (error: Error) => void;
}

/**
 * The Go peer as a child process: commands go to its stdin one per line, events and replies come back
 * as JSON lines on its stdout (see test/go/peer/main.go).
 */
export class GoPeer {
  readonly #child: ChildProcessWithoutNullStreams;
  /** Events not yet taken by {@link next}. */
  readonly #events: PeerEvent[] = [];
  readonly #waiters: EventWaiter[] = [];
  readonly #exited: Promise<void>;
  #exit: Error | undefined;
  #stderr = "";

  private constructor(child: ChildProcessWithoutNullStreams) {
    this.#child = child;
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (text: string) => {
      this.#stderr = (this.#stderr + text).slice(-8192); // the tail is what explains a failure
    });
    createInterface({ input: child.stdout }).on("line", (line) => this.#line(line));
    this.#exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.#exit = new Error(`the Go peer exited (code ${code}, signal ${signal}); its stderr:\n${this.#stderr}`);
        for (const waiter of this.#waiters.splice(0)) waiter.reject(this.#exit);
        resolve();
      });
      child.once("error", (error) => {
        this.#exit = error;
        for (const waiter of this.#waiters.splice(0)) waiter.reject(error);
        resolve();
      });
    });
  }

  /** Starts the peer: `["-mode", "server"]` or `["-mode", "device", "-url", url]`. */
  static async start(args: string[]): Promise<GoPeer> {
    const binary = await goPeerBinary();
    return GoPeer.spawn(binary, args);
  }

  /**
   * Starts any program that speaks the same protocol (commands on stdin, JSON lines on stdout), e.g. the
   * bench's peers (test/go/bench, bench/peer.ts).
   */
  static spawn(file: string, args: string[]): GoPeer {
    return new GoPeer(spawn(file, args, { stdio: ["pipe", "pipe", "pipe"] }));
  }

  /** The tail of the peer's stderr (yamux logs there), for failure messages. */
  get stderr(): string {
    return this.#stderr;
  }

  /** Takes the first event, past or future, that `match` accepts; rejects after `timeout` ms or when the peer exits. */
  next(match: (event: PeerEvent) => boolean, what: string, timeout = 10_000): Promise<PeerEvent> {
    const index = this.#events.findIndex(match);
    if (index >= 0) return Promise.resolve(this.#events.splice(index, 1)[0]!);
    if (this.#exit) return Promise.reject(this.#exit);
    const waiting = new Promise<PeerEvent>((resolve, reject) => this.#waiters.push({ match, resolve, reject }));
    return within(waiting, timeout, `waiting for ${what} from the Go peer`).finally(() => {
      const at = this.#waiters.findIndex((w) => w.match === match);
      if (at >= 0) this.#waiters.splice(at, 1);
    });
  }

  /** Waits for an event by name, e.g. `"connected"`. */
  event(name: string, timeout?: number): Promise<PeerEvent> {
    return this.next((e) => e.event === name, `event "${name}"`, timeout);
  }

  /** Sends a command line and waits for its reply. The reply's `error` is the Go side's, if any. */
  command(line: string, timeout?: number): Promise<PeerEvent> {
    const cmd = line.split(" ")[0];
    const reply = this.next((e) => e.event === "reply" && e.cmd === cmd, `the reply to "${line}"`, timeout);
    this.#child.stdin.write(`${line}\n`);
    return reply;
  }

  /** Ends the peer: closes its stdin (it exits by itself), SIGKILL if it has not within 3 s. */
  async stop(): Promise<void> {
    if (this.#exit) return;
    this.#child.stdin.end();
    try {
      await within(this.#exited, 3_000, "the Go peer to exit");
    } catch {
      this.#child.kill("SIGKILL");
      await within(this.#exited, 3_000, "the Go peer to die after SIGKILL");
    }
  }

  #line(line: string): void {
    let event: PeerEvent;
    try {
      event = JSON.parse(line) as PeerEvent;
    } catch {
      this.#stderr += `\n(unparsable stdout line: ${line})`;
      return;
    }
    const index = this.#waiters.findIndex((w) => w.match(event));
    if (index >= 0) this.#waiters.splice(index, 1)[0]!.resolve(event);
    else this.#events.push(event);
  }
}

// yamux-js.

export interface DuplexTransportOptions {
  /** Called with the header of every frame this side sends, before it goes out (to check wire details). */
  onSend?(header: Uint8Array): void;
}

/**
 * A {@link Transport} over a Node Duplex (a socket, or a yamux-js session, which is itself a Transform:
 * wire bytes in on its writable side, wire bytes out on its readable side).
 *
 * Each frame goes out as ONE chunk, header and body together: yamux-js parses each chunk on its own and
 * loses a Data body that is not wholly inside the chunk that carries its header.
 */
export function duplexTransport(duplex: Duplex, options: DuplexTransportOptions = {}): Transport {
  let closed = false;
  return {
    start(sink) {
      const finish = (error?: Error) => {
        if (closed) return;
        closed = true;
        sink.close(error);
      };
      // Inbound events are handed over in a microtask (FIFO, so in order): a socket never calls back
      // into its writer, but a Transform like yamux-js answers from inside our write() call, and the
      // session is not meant to be re-entered from its own transport.write().
      duplex.on("data", (chunk: Buffer) =>
        queueMicrotask(() => sink.data(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))),
      );
      duplex.on("drain", () => queueMicrotask(() => sink.drain()));
      duplex.once("end", () => queueMicrotask(() => finish()));
      duplex.once("close", () => queueMicrotask(() => finish()));
      duplex.once("error", (error: Error) => queueMicrotask(() => finish(error)));
    },
    send(message, onSent) {
      let ok = true;
      if (!closed) {
        for (const frame of splitFrames(message)) {
          options.onSend?.(frame.subarray(0, HEADER_SIZE));
          ok = duplex.write(Buffer.from(frame)); // a copy: the message's buffer is reused
        }
      }
      onSent();
      return ok;
    },
    close() {
      if (closed) return;
      closed = true;
      duplex.end();
    },
  };
}

/**
 * Two yamux transports joined in memory, for session tests without sockets.
 *
 * Bytes are delivered asynchronously (a macrotask per batch, as a socket would), optionally re-split at
 * random points so sessions see frames cut anywhere. Backpressure is modelled: a write returns false
 * once more than `highWaterMark` bytes are in flight, and `drain` fires when delivery brings it back down.
 */

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Session, type SessionInit, type Transport, type TransportSink } from "../../src/yamux/session.js";
import { concat } from "../../src/http/reader.js";
import { turns } from "./assert.js";
import { splitFrames } from "./frames.js";

export interface MemoryPairOptions {
  /** Re-split the byte stream at random points (seeded by `random`). Default false. */
  rechunk?: boolean;
  random?: () => number;
  /** Bytes in flight one way above which `write` returns false. Default 1 MiB. */
  highWaterMark?: number;
}

export interface MemoryEnd extends Transport {
  /** Every frame this end has sent, in order, each as its own bytes. */
  readonly written: Uint8Array[];
  /** Every message this end has sent (copies). */
  readonly messages: Uint8Array[];
  /** Bytes sent and not yet delivered to the peer (the peer is frozen or slow). */
  readonly inFlight: number;
  /** Stop delivering to the peer (frozen peer: nothing is lost, nothing arrives). */
  freeze(): void;
  /** Feed raw bytes to this end's session as if the peer sent them (`more`: part of a message that goes on). */
  inject(bytes: Uint8Array, more?: boolean): void;
  /** Drop the connection as if the network failed (the peer sees close with an error). */
  fail(error: Error): void;
  readonly closedByLocal: boolean;
  /** True while the session has paused reading (what the peer sends meanwhile is held, as by a socket). */
  readonly paused: boolean;
  /** How many times the session paused and resumed this end. */
  readonly pauses: number;
  readonly resumes: number;
}

export function memoryPair(options: MemoryPairOptions = {}): [MemoryEnd, MemoryEnd] {
  const a = new End(options);
  const b = new End(options);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

class End implements MemoryEnd {
  peer!: End;
  readonly written: Uint8Array[] = [];
  readonly messages: Uint8Array[] = [];
  closedByLocal = false;
  paused = false;
  pauses = 0;
  resumes = 0;
  /** What the peer delivered while paused, in order. */
  readonly #held: Uint8Array[] = [];
  #sink: TransportSink | undefined;
  #early: Uint8Array[] = [];
  #inFlight = 0;
  #needDrain = false;
  #frozen = false;
  #closed = false;
  #notified = false;
  #outbox: Uint8Array[] = [];
  #scheduled = false;
  readonly #options: MemoryPairOptions;

  constructor(options: MemoryPairOptions) {
    this.#options = options;
  }

  start(sink: TransportSink): void {
    this.#sink = sink;
    for (const chunk of this.#early.splice(0)) sink.data(chunk);
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  send(message: Uint8Array, onSent: () => void): boolean {
    onSent(); // copied below
    if (this.#closed) return true;
    const bytes = message.slice();
    this.messages.push(bytes);
    this.written.push(...splitFrames(bytes));
    this.#inFlight += bytes.length;
    this.#outbox.push(bytes);
    this.#schedule();
    if (this.#inFlight > (this.#options.highWaterMark ?? 1024 * 1024)) {
      this.#needDrain = true;
      return false;
    }
    return true;
  }

  close(): void {
    if (this.#closed) return;
    this.closedByLocal = true;
    this.#shut(undefined);
  }

  freeze(): void {
    this.#frozen = true;
  }

  /**
   * As if the socket had read it already: delivered even while paused (as `ws` delivers what it read).
   * With `more`, it is part of a message that goes on in the next injection (as Node's frame reader
   * hands a message over). Before the session started, only whole messages.
   */
  inject(bytes: Uint8Array, more = false): void {
    if (this.#closed) return;
    if (this.#sink) this.#sink.data(bytes, more);
    else this.#early.push(bytes);
  }

  pause(): void {
    this.pauses++;
    this.paused = true;
  }

  resume(): void {
    this.resumes++;
    this.paused = false;
    while (!this.paused && this.#held.length > 0 && !this.#closed) this.#sink?.data(this.#held.shift()!);
  }

  fail(error: Error): void {
    this.#shut(error);
  }

  receive(chunk: Uint8Array): void {
    if (this.#closed) return;
    if (this.paused || this.#held.length > 0) this.#held.push(chunk);
    else if (this.#sink) this.#sink.data(chunk);
    else this.#early.push(chunk);
  }

  /** Both ends learn of the close after in-flight bytes, as with a socket. */
  #shut(error: Error | undefined): void {
    this.#closed = true;
    setTimeout(() => {
      if (error === undefined) this.#flush(); // a clean close delivers what was written before it
      this.remoteClosed(error);
      this.peer.remoteClosed(error);
    }, 0);
  }

  /** Tells this end's session that the connection is gone (once). */
  remoteClosed(error: Error | undefined): void {
    if (this.#notified) return;
    this.#notified = true;
    this.#closed = true;
    this.#sink?.close(error);
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#scheduled = false;
    if (this.#frozen) return;
    const batch = this.#outbox.splice(0);
    for (const bytes of batch) {
      for (const piece of this.#split(bytes)) this.peer.receive(piece);
      this.#inFlight -= bytes.length;
    }
    if (this.#needDrain && this.#inFlight <= (this.#options.highWaterMark ?? 1024 * 1024) / 4) {
      this.#needDrain = false;
      this.#sink?.drain();
    }
  }

  #split(bytes: Uint8Array): Uint8Array[] {
    if (!this.#options.rechunk || bytes.length < 2) return [bytes];
    const random = this.#options.random ?? Math.random;
    const pieces: Uint8Array[] = [];
    let offset = 0;
    while (offset < bytes.length) {
      const n = 1 + Math.floor(random() * Math.min(bytes.length - offset, 20_000));
      pieces.push(bytes.subarray(offset, offset + n));
      offset += n;
    }
    return pieces;
  }
}

/** A client (odd IDs, like the wslis server) and a server (even IDs, like the device) joined in memory. */
export function sessionPair(
  options: Partial<SessionInit> & { pair?: MemoryPairOptions } = {},
): { client: Session; server: Session; clientEnd: MemoryEnd; serverEnd: MemoryEnd } {
  const { pair, ...sessionOptions } = options;
  const [clientEnd, serverEnd] = memoryPair(pair);
  const base = { keepAliveInterval: 0, ...sessionOptions };
  const client = new Session(clientEnd, { ...base, role: "client" });
  const server = new Session(serverEnd, { ...base, role: "server" });
  return { client, server, clientEnd, serverEnd };
}

/**
 * Resolves once the ends have gone quiet: nothing in flight and no new message for `still` event-loop
 * turns in a row. Every hop of a memory pair (outbox flush, delivery) takes at most one turn, so what is
 * still to come after that waits on a timer: on a fake clock, only what the test advances.
 */
export async function quiet(ends: MemoryEnd[], still = 10): Promise<void> {
  let last = -1;
  for (let quietTurns = 0; quietTurns < still; ) {
    await turns();
    const sent = ends.reduce((n, end) => n + end.messages.length, 0);
    const idle = ends.every((end) => end.inFlight === 0);
    if (sent === last && idle) quietTurns++;
    else quietTurns = 0;
    last = sent;
  }
}

/** Deterministic PRNG (mulberry32) so random splits are reproducible from a seed. */
export function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Reads a stream to the end and returns all its bytes. */
export async function readAll(readable: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of readable) chunks.push(chunk);
  return concat(...chunks);
}

/** Pseudo-random bytes, reproducible from a seed. */
export function randomBytes(length: number, seed = 1): Uint8Array {
  const random = seeded(seed);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (random() * 256) | 0;
  return out;
}

/** A full GC, also when node runs without --expose-gc (memory assertions must not depend on GC timing). */
export function collectGarbage(): void {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
}

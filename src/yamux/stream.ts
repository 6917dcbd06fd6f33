/**
 * One yamux stream as a pair of web streams, with flow control in both directions.
 *
 * Receive side: data is queued as it arrives, and window credit goes back to the peer only as the
 * consumer reads (in `pull`), in WindowUpdates of at least a quarter window. So an
 * unread stream holds at most its window, whatever the peer does; a peer sending beyond it is a protocol
 * error.
 *
 * Send side: `write()` sends as much as the send window allows, in Data frames of at most the session's
 * frame size, then waits (no polling) for the WindowUpdate that brings more credit, and for the transport
 * to drain when its buffer is full.
 */

import { ProtocolError, StreamClosedError, StreamResetError } from "../errors.js";
import { Flag, FrameType, INITIAL_WINDOW, type Frame } from "./frame.js";
import type { WindowTuner } from "./tuner.js";

/**
 * Lifecycle of a stream: the one state of the machine (no side flags). The SYN/ACK handshake is tracked
 * apart (`acked`): a stream is usable both ways as soon as it is opened, before its ACK arrives, as in
 * hashicorp/yamux.
 *
 * ```
 *        open(): SYN sent ──┐     ┌── SYN received: ACK sent at once
 *                           ▼     ▼
 *                            Open
 *       close(): FIN sent │       │ FIN received
 *                         ▼       ▼
 *                LocalClose       RemoteClose
 *         FIN received │             │ close(): FIN sent
 *                      ▼             ▼
 *                           Closed
 *
 *   any state but Closed ── reset(), RST received, session died ──▶ Reset
 * ```
 * Closed and Reset are final; the session forgets the stream on entering either. Every transition is made
 * by `Stream.#transition`, and nowhere else. What the flags of earlier versions said is read from the state:
 * we may still send while Open or RemoteClose, and the peer may while Open or LocalClose.
 */
export const StreamState = {
  Open: "open",
  LocalClose: "localClose",
  RemoteClose: "remoteClose",
  Closed: "closed",
  Reset: "reset",
} as const;
export type StreamState = (typeof StreamState)[keyof typeof StreamState];

/** What moves a stream from one {@link StreamState} to the next. */
type StreamEvent = "finSent" | "finReceived" | "reset";

/** The transitions of the diagram above; a missing entry is no transition (the event changes nothing). */
const TRANSITIONS: Record<StreamState, Partial<Record<StreamEvent, StreamState>>> = {
  open: { finSent: "localClose", finReceived: "remoteClose", reset: "reset" },
  localClose: { finReceived: "closed", reset: "reset" },
  remoteClose: { finSent: "closed", reset: "reset" },
  closed: {},
  reset: {},
};

/**
 * One stream to or from the peer, as the application sees it: a pair of web streams with flow control,
 * half-close and reset. This is the whole contract; how the session drives a stream is private to the
 * yamux layer.
 */
export interface Conn {
  /** The yamux stream ID: odd when the yamux client (the wslis server) opened it, even for the device. */
  readonly streamID: number;
  /**
   * Bytes from the peer. Ends at the peer's FIN; errors on reset or when the session dies. Window credit
   * goes back to the peer only as this is read.
   */
  readonly readable: ReadableStream<Uint8Array>;
  /**
   * Bytes to the peer. A write resolves when the send window and the transport's buffer allow; closing it
   * sends FIN after pending writes; aborting it resets the stream.
   */
  readonly writable: WritableStream<Uint8Array>;
  /**
   * Settles when the stream is finished: resolves once FIN went both ways, rejects with the reason on
   * reset or when the session dies. Never an unhandled rejection: a handler is attached.
   */
  readonly closed: Promise<void>;
  /** Where the stream is in its lifecycle (see {@link StreamState}). */
  readonly state: StreamState;
  /**
   * Half-closes the stream: sends FIN once the write in progress is done. Reading goes on until the
   * peer's FIN. Later writes fail with `ERR_STREAM_CLOSED`.
   */
  close(): Promise<void>;
  /** Resets the stream (RST): both directions fail at once, here and at the peer. */
  reset(): void;
}

/**
 * How the session drives its streams: inbound frames, a Data header to admit, death of the session. Not
 * methods of {@link Stream}, so a user holding a `Conn` cannot call them (they would corrupt its state);
 * the functions reach the stream's private members, set once when the class is defined.
 * @internal
 */
export interface StreamControl {
  /** Handles a Data or WindowUpdate frame for the stream. Throws {@link ProtocolError}. */
  handleFrame(stream: Stream, frame: Frame): void;
  /** Handles part of a plain Data frame's body (its header was admitted; the frame itself follows, empty). */
  handleData(stream: Stream, body: Uint8Array): void;
  /**
   * Checks a Data header before its body is kept: more than the receive window is a protocol error,
   * refused before a buffer for it exists.
   */
  admitData(stream: Stream, length: number): void;
  /** Ends the stream with `error` (reset, session death): readers and writers waiting are released. */
  fail(stream: Stream, error: Error): void;
}

/** What a stream needs from its session. */
export interface StreamHost {
  /** Largest Data body to send, in bytes. */
  readonly maxFrameSize: number;
  /** Sends a control frame (WindowUpdate with flags) without waiting for the transport. */
  sendWindowUpdate(streamID: number, flags: number, delta: number): void;
  /** Sends a Data frame; returns a promise when the caller must wait for the transport to drain. */
  sendData(streamID: number, body: Uint8Array): Promise<void> | undefined;
  /** The stream got its ACK, or ended before it: frees its slot among unacknowledged opens. */
  streamAcked(stream: Stream): void;
  /** The stream reached Closed or Reset. */
  streamEnded(stream: Stream): void;
  /** Auto-tuning: the session's tuner says what window a stream that read a whole one gets next. */
  readonly tuner: WindowTuner;
  /** Milliseconds from a monotonic clock. */
  now(): number;
  /** Timers, injected (tests, throttled pages). */
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface StreamInit {
  /** Receive window this side grants at first, in bytes (at least 256 KiB). */
  window: number;
  /** Largest receive window auto-tuning may grow to, in bytes (at least `window`). */
  maxWindow: number;
  /** True for a stream the peer opened (its SYN arrived and was ACKed). */
  acked: boolean;
  /**
   * How long after our FIN to wait for the peer's before resetting the stream, in ms; 0 waits forever.
   */
  closeTimeout: number;
}

/**
 * The stream's bytes without web streams, for the HTTP layers that own a stream from its first byte
 * (`serveHttp`, `DeviceHttp`): the same queue, window credit and send path as `readable`/`writable`,
 * without a reader, a writer and a promise per chunk. Use one or the other on a stream, not both. Only
 * the yamux layer hands one out (`streamIO`, internal); the HTTP layers also wrap other conns in it.
 */
export interface StreamIO {
  /**
   * The next chunk from the peer: at once when one is queued, else a promise; null at the peer's FIN (a
   * read waiting when `cancel` is called gets null too; none may follow). Throws (or rejects) with the
   * reason on reset. Credit goes back as chunks are taken.
   */
  read(): Uint8Array | null | Promise<Uint8Array | null>;
  /** Sends `bytes`: undefined when they all went out at once, else a promise for when they did. */
  write(bytes: Uint8Array): Promise<void> | undefined;
  /** Drops what is queued and what comes later (its credit goes back to the peer). */
  cancel(): void;
  /** Ends the writing side (FIN) once the write in progress went out; see {@link Conn.close}. */
  close(): Promise<void>;
}

/** @internal The session's handle on its streams (see {@link StreamControl}). */
export let streamControl: StreamControl;

/**
 * @internal The {@link StreamIO} of `conn` when it is a wslis stream whose `readable` and `writable` were
 * never touched; undefined otherwise (the caller uses the web streams).
 */
export let streamIO: (conn: object) => StreamIO | undefined;

/**
 * What a waiting read gets: a chunk, null at the peer's FIN (or a canceled read), undefined when the
 * stream failed (the reason is in #error).
 */
type Waiter = (chunk: Uint8Array | null | undefined) => void;

/**
 * The yamux layer's stream: a {@link Conn}, which its session drives through private means (above).
 * `readable`, `writable` and `closed` are built on first access: a stream served by the HTTP layer never
 * builds them (a web stream pair costs tens of µs and a few KB per stream in Node).
 */
export class Stream implements Conn {
  static {
    streamControl = {
      handleFrame: (stream, frame) => stream.#handleFrame(frame),
      handleData: (stream, body) => stream.#handleData(body),
      admitData: (stream, length) => stream.#admitData(length),
      fail: (stream, error) => stream.#fail(error),
    };
    // A brand check, not instanceof: an object made with Object.create(stream) (a wrapper) has no fields.
    streamIO = (conn) =>
      #readable in conn && conn.#readable === undefined && conn.#writable === undefined
        ? { read: () => conn.#read(), write: (bytes) => conn.#send(bytes), cancel: () => conn.#cancelRead(), close: () => conn.close() }
        : undefined;
  }

  readonly streamID: number;

  readonly #host: StreamHost;
  /** The receive window granted now; grows up to #maxWindow for a consumer that keeps up. */
  #window: number;
  readonly #maxWindow: number;
  /** When the current measuring epoch started (-1: no data yet), and how much the consumer read since. */
  #epochStart = -1;
  #epochConsumed = 0;
  readonly #closeTimeout: number;
  #state: StreamState = "open";
  #acked: boolean;
  /** Why the stream was reset (set on entering Reset, with it). */
  #error: Error | undefined;
  /** Built on first access of `closed`, with what settles it. */
  #closed: Promise<void> | undefined;
  #settleClosed: ((error?: Error) => void) | undefined;
  #closeTimer: unknown;

  // Receive side.
  #readable: ReadableStream<Uint8Array> | undefined;
  #readController: ReadableStreamDefaultController<Uint8Array> | undefined;
  /** Chunks nobody has read yet; made when the first one has to wait. */
  #queue: Uint8Array[] | undefined;
  /** Where small bodies are packed: the buffer, how far it is filled, and where the last queued chunk starts in it. */
  #tail: Uint8Array | undefined;
  #tailFill = 0;
  #tailStart = 0;
  /** True while the last queued chunk is the tail's, so small bodies extend it. */
  #tailQueued = false;
  /** Bytes the peer may still send before it needs a WindowUpdate. */
  #recvWindow: number;
  /** Bytes read by the consumer and not yet returned to the peer as credit. */
  #consumed = 0;
  /** The application canceled the readable: not a stream state (the peer may go on sending). */
  #readCanceled = false;
  /** The read waiting for the next chunk (the readable's pull, or a {@link StreamIO} read). */
  #waiter: Waiter | undefined;

  // Send side.
  #writable: WritableStream<Uint8Array> | undefined;
  #writeController: WritableStreamDefaultController | undefined;
  /** An abort of the writable resets the stream at once (see {@link #abortWhileWaiting}). */
  #abortWatched: boolean | undefined;
  /** Bytes this side may send before it needs a WindowUpdate. */
  #sendWindow = INITIAL_WINDOW;
  #wakeWriter: (() => void) | undefined;
  /** The write in progress, so close() can send FIN after it. */
  #writing: Promise<void> = SETTLED;

  constructor(host: StreamHost, streamID: number, init: StreamInit) {
    this.#host = host;
    this.streamID = streamID;
    this.#window = init.window;
    this.#maxWindow = Math.max(init.maxWindow, init.window);
    this.#recvWindow = init.window;
    this.#acked = init.acked;
    this.#closeTimeout = init.closeTimeout;
  }

  get readable(): ReadableStream<Uint8Array> {
    return (this.#readable ??= new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#readController = controller;
          if (this.#error !== undefined) controller.error(this.#error);
        },
        pull: (controller) => this.#pull(controller),
        cancel: () => this.#cancelRead(),
      },
      READ_STRATEGY,
    ));
  }

  get writable(): WritableStream<Uint8Array> {
    return (this.#writable ??= new WritableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#writeController = controller;
          if (this.#error !== undefined) controller.error(this.#error);
        },
        write: (chunk) => this.#send(chunk),
        close: () => this.#sendFin(),
        abort: () => this.reset(),
      },
      WRITE_STRATEGY,
    ));
  }

  get closed(): Promise<void> {
    if (this.#closed === undefined) {
      this.#closed = new Promise<void>((resolve, reject) => (this.#settleClosed = (error) => (error ? reject(error) : resolve())));
      // Never an unhandled rejection: a stream reset nobody watches is not an error of the program.
      this.#closed.catch(() => {});
      // Closed or Reset already: settled now, with the reason of a reset.
      if (!this.#sending() && !this.#receiving()) this.#settleClosed!(this.#error);
    }
    return this.#closed;
  }

  get state(): StreamState {
    return this.#state;
  }

  async close(): Promise<void> {
    if (!this.#sending()) return;
    const writable = this.#writable;
    if (writable !== undefined && !writable.locked) {
      // Lets writes queued in the WritableStream go first; the sink's close() sends the FIN.
      await writable.close().catch(() => {});
      return;
    }
    // A writable built in this task hands its first queued write to the sink only once its start has
    // settled, one promise job after it was built: let that happen, so that write is the one in progress.
    if (writable !== undefined) await undefined;
    await this.#writing.catch(() => {});
    this.#sendFin();
  }

  reset(): void {
    if (!this.#sending() && !this.#receiving()) return; // Closed or Reset already
    this.#host.sendWindowUpdate(this.streamID, Flag.RST, 0);
    this.#fail(new StreamResetError(this.streamID, false));
  }

  // What the session calls, through streamControl.

  #handleFrame(frame: Frame): void {
    if (frame.flags & Flag.ACK) this.#handleAck();
    if (frame.flags & Flag.RST) {
      this.#fail(new StreamResetError(this.streamID, true));
      return;
    }
    if (frame.type === FrameType.Data) {
      this.#handleData(frame.body);
    } else if (frame.length > 0) {
      this.#sendWindow += frame.length;
      this.#wakeWriter?.();
      this.#wakeWriter = undefined;
    }
    if (frame.flags & Flag.FIN) this.#handleFin();
  }

  /**
   * Data beyond the receive window is a protocol error, refused from the frame's header before its body is
   * buffered (the session calls this for every Data header with a body, so #handleData need not again).
   */
  #admitData(length: number): void {
    if (length > this.#recvWindow) {
      throw new ProtocolError(`stream ${this.streamID}: ${length} bytes of data with a window of ${this.#recvWindow}`);
    }
  }

  #fail(error: Error): void {
    if (!this.#transition("reset")) return;
    this.#error = error;
    this.#queue = undefined;
    this.#tailQueued = false;
    // A readable or writable that already ended ignores this (the spec's error() does nothing then).
    this.#readController?.error(error);
    this.#writeController?.error(error);
    this.#wakeReader(undefined);
    this.#wakeWriter?.();
    this.#wakeWriter = undefined;
    this.#end();
    this.#settleClosed?.(error);
  }

  // Receive side.

  /** The next chunk for a {@link StreamIO} read (see there). */
  #read(): Uint8Array | null | Promise<Uint8Array | null> {
    if (this.#error !== undefined) throw this.#error;
    const chunk = this.#take();
    if (chunk !== undefined) return chunk;
    if (!this.#receiving()) return null;
    return new Promise<Uint8Array | null>((resolve, reject) => {
      this.#waiter = (next) => (next === undefined ? reject(this.#error) : resolve(next));
    });
  }

  /**
   * The consumer of `readable` wants a chunk (the readable buffers nothing itself: high water mark 0): one
   * that arrived is handed over at once, and its credit goes back; otherwise the next Data frame, FIN or
   * reset settles the read (on reset #fail has errored the readable already).
   */
  async #pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    const chunk = await this.#read();
    if (chunk === null) controller.close();
    else controller.enqueue(chunk);
  }

  /** Takes the oldest queued chunk, and returns its credit; undefined when none is queued. */
  #take(): Uint8Array | undefined {
    const chunk = this.#queue?.shift();
    if (chunk === undefined) return undefined;
    // Once the tail's chunk is handed out, later small bodies start a new chunk after it.
    if (this.#queue!.length === 0) this.#tailQueued = false;
    this.#grant(chunk.length);
    return chunk;
  }

  /** Settles the waiting read, if any, with `chunk` (see {@link Waiter}). */
  #wakeReader(chunk: Uint8Array | null | undefined): void {
    const waiter = this.#waiter;
    if (waiter === undefined) return;
    this.#waiter = undefined;
    waiter(chunk);
  }

  #handleData(body: Uint8Array): void {
    if (body.length === 0) return;
    if (this.#epochStart < 0) this.#epochStart = this.#host.now(); // the first epoch starts with the data
    this.#recvWindow -= body.length;
    if (!this.#receiving() || this.#readCanceled) {
      // Nobody will read it: drop it, and give the credit back so a writer is not stuck.
      this.#grant(body.length);
      return;
    }
    if (this.#waiter !== undefined) {
      // A read is waiting: this chunk is consumed now.
      this.#grant(body.length);
      this.#wakeReader(body);
    } else {
      this.#enqueue(body);
    }
  }

  /**
   * Keeps a chunk nobody is reading yet, so that what the stream holds stays within twice its window
   * whatever the peer sends: a body is a view of the message it came in, and a small view would keep
   * the whole message alive (a peer could pin megabytes with one byte per message), so a view of less
   * than half its buffer is copied; small bodies are packed together, so a million 1-byte frames are
   * not a million objects. A body queued alone is kept as it is (copied if a small view): a stream that
   * got one small body before it was read holds about that body, not a packing buffer.
   */
  #enqueue(body: Uint8Array): void {
    const queue = (this.#queue ??= []);
    if (body.length >= PACK_BELOW || queue.length === 0) {
      queue.push(body.length * 2 >= body.buffer.byteLength ? body : body.slice());
      this.#tailQueued = false;
      return;
    }
    let tail = this.#tail;
    if (tail === undefined || this.#tailFill + body.length > tail.length) {
      tail = new Uint8Array(PACK_SIZE);
      this.#tail = tail;
      this.#tailFill = 0;
      this.#tailQueued = false;
    }
    if (!this.#tailQueued) {
      this.#tailStart = this.#tailFill;
      queue.push(EMPTY_CHUNK);
      this.#tailQueued = true;
    }
    tail.set(body, this.#tailFill);
    this.#tailFill += body.length;
    // The last queued chunk is the tail's bytes since the chunk began; it grows in place.
    queue[queue.length - 1] = tail.subarray(this.#tailStart, this.#tailFill);
  }

  /**
   * Returns `n` consumed bytes to the peer as window credit, batched to a quarter window (hashicorp/yamux
   * waits for half; a quarter keeps a fast writer from stalling on every round trip).
   *
   * Auto-tuning: each time the consumer has read a whole window, the session's {@link WindowTuner} says
   * whether the window grows (it was read within four round trips). A stream nobody reads, or reads
   * slowly, never grows: it holds at most its first window.
   */
  #grant(n: number): void {
    this.#consumed += n;
    this.#epochConsumed += n;
    if (this.#consumed < this.#window / 4 || !this.#receiving()) return;
    let delta = this.#consumed;
    if (this.#epochConsumed >= this.#window) {
      const now = this.#host.now();
      const grown = Math.min(this.#host.tuner.next(this.#window, now - this.#epochStart, now), this.#maxWindow);
      delta += grown - this.#window;
      this.#window = grown;
      this.#epochStart = now;
      this.#epochConsumed = 0;
    }
    this.#recvWindow += delta;
    this.#host.sendWindowUpdate(this.streamID, 0, delta);
    this.#consumed = 0;
  }

  #cancelRead(): void {
    this.#readCanceled = true;
    let dropped = 0;
    for (const chunk of this.#queue ?? []) dropped += chunk.length;
    this.#queue = undefined;
    this.#tailQueued = false;
    if (dropped > 0) this.#grant(dropped);
    this.#wakeReader(null);
  }

  #handleFin(): void {
    // A read waiting means nothing is queued: the readable ends now.
    if (this.#transition("finReceived")) this.#wakeReader(null);
  }

  #handleAck(): void {
    if (this.#acked) return;
    this.#acked = true;
    this.#host.streamAcked(this);
  }

  // Send side.

  /**
   * One write, from the writable's sink or a {@link StreamIO}. A write that fails resets the stream, so
   * the peer's read does not wait forever for bytes that will never come (hashicorp/yamux
   * GHSA-29qp-crvh-w22m); the writable is left errored.
   */
  #send(chunk: unknown): Promise<void> | undefined {
    let pending: Promise<void> | undefined;
    try {
      pending = this.#write(toBytes(chunk), 0);
    } catch (error) {
      this.#writeFailed(error);
      throw error;
    }
    pending &&= pending.catch((error: unknown) => {
      this.#writeFailed(error);
      throw error;
    });
    this.#writing = pending ?? SETTLED;
    return pending;
  }

  /**
   * Sends `bytes` from `offset` on. Returns nothing when all of it went out at once (the usual case), or
   * a promise for the rest while it waits for window credit or for the transport to drain.
   */
  #write(bytes: Uint8Array, offset: number): Promise<void> | undefined {
    // Also when woken with nothing left to send: bytes queued before a reset never left. (Nothing in the
    // loop below fails the stream: it runs to its end or to a wait.)
    if (this.#error !== undefined) return Promise.reject(this.#error);
    while (offset < bytes.length) {
      if (!this.#sending()) return Promise.reject(new StreamClosedError(this.streamID));
      if (this.#sendWindow === 0) {
        const from = offset;
        this.#abortWhileWaiting();
        return new Promise<void>((resolve) => (this.#wakeWriter = resolve)).then(() => this.#write(bytes, from));
      }
      const n = Math.min(bytes.length - offset, this.#sendWindow, this.#host.maxFrameSize);
      this.#sendWindow -= n;
      const drained = this.#host.sendData(this.streamID, n === bytes.length ? bytes : bytes.subarray(offset, offset + n));
      offset += n;
      if (drained) {
        // Woken by the drain, or by a reset meanwhile (#fail) when the transport never drains. A session
        // that ends rejects its drain waiters (it may fail its streams in later turns): the write fails
        // with its reason, and nothing is left rejected with nobody to handle it.
        const from = offset;
        this.#abortWhileWaiting();
        return new Promise<void>((resolve, reject) => {
          this.#wakeWriter = resolve;
          drained.then(resolve, reject);
        }).then(() => this.#write(bytes, from));
      }
    }
    return undefined;
  }

  /**
   * A write of the writable is about to wait (for credit, or for the transport to drain). The spec calls
   * the sink's abort only once the write in flight settles, and a write waiting for credit from a peer
   * that never reads would never settle: from now on, aborting the writable resets the stream at once.
   * Only then: the controller's signal is an EventTarget made on first use, which a stream whose writes
   * never wait (most) does not need. In a microtask: erroring the controller inside the signal's event
   * breaks Node 20's abort (it read the state before the event, then calls the algorithms the error
   * cleared).
   */
  #abortWhileWaiting(): void {
    if (this.#abortWatched) return;
    this.#abortWatched = true;
    // No abort can have come first: the writable calls no sink write once aborted, and this write waits
    // from the call that started it. No controller: a StreamIO's write (it has no writable).
    (this.#writeController?.signal as AbortSignal | undefined)?.addEventListener("abort", () => queueMicrotask(() => this.reset()), { once: true });
  }

  /** A write failed: the stream is reset, unless the failure was writing after our FIN (the peer saw the end). */
  #writeFailed(error: unknown): void {
    if (!(error instanceof StreamClosedError)) this.reset();
  }

  #sendFin(): void {
    if (!this.#sending()) return;
    this.#host.sendWindowUpdate(this.streamID, Flag.FIN, 0);
    this.#transition("finSent");
  }

  // Both sides.

  /**
   * The one place the state changes (see {@link TRANSITIONS} and the diagram on {@link StreamState}), with
   * what entering a state does. Returns false when the event changes nothing in this state.
   */
  #transition(event: StreamEvent): boolean {
    const next = TRANSITIONS[this.#state][event];
    if (next === undefined) return false;
    this.#state = next;
    if (next === "localClose") {
      // Our FIN is out; a peer that never sends its own would hold the stream forever.
      if (this.#closeTimeout > 0) this.#closeTimer = this.#host.setTimeout(() => this.reset(), this.#closeTimeout);
    } else if (next === "closed") {
      this.#end();
      this.#settleClosed?.();
    }
    // Reset: #fail releases readers and writers, then ends the stream.
    return true;
  }

  /** We may still send (no FIN sent, not reset). */
  #sending(): boolean {
    return this.#state === "open" || this.#state === "remoteClose";
  }

  /** The peer may still send (no FIN received, not reset). */
  #receiving(): boolean {
    return this.#state === "open" || this.#state === "localClose";
  }

  #end(): void {
    if (this.#closeTimer !== undefined) this.#host.clearTimeout(this.#closeTimer);
    if (!this.#acked) this.#handleAck();
    this.#host.streamEnded(this);
  }
}

const SETTLED = Promise.resolve();
/** The readable buffers nothing itself (chunks wait in the stream's queue); the writable holds one write. */
const READ_STRATEGY = { highWaterMark: 0 };
const WRITE_STRATEGY = { highWaterMark: 1 };

/** Bodies smaller than this (bytes) are packed into shared buffers of PACK_SIZE when queued behind others. */
const PACK_BELOW = 4096;
const PACK_SIZE = 16 * 1024;
const EMPTY_CHUNK = new Uint8Array(0);

/** Accepts any binary chunk a writer may hand us; anything else is a caller's bug. */
function toBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  throw new TypeError(`wslis: a chunk must be a Uint8Array, an ArrayBuffer or a view, not ${typeof chunk}`);
}

/**
 * A yamux session (hashicorp/yamux spec.md): streams over one byte transport, pings, keepalive, GoAway.
 *
 * The session never sees a socket. It talks to a {@link Transport}: bytes in, bytes out with a
 * backpressure signal, close. Inbound frames are handled synchronously, one `for` loop per chunk (no
 * recursion); anything the peer does wrong becomes a GoAway(protocol error) and a closed session.
 */

import {
  AbusivePeerError,
  ProtocolError,
  RemoteGoAwayError,
  SessionClosedError,
  StreamLimitError,
  TimeoutError,
  WslisError,
} from "../errors.js";
import { deadline } from "../deadline.js";
import { integerOption } from "../options.js";
import { enqueue, rejectAll, resolveAll, type Waiter } from "../waiters.js";
import { systemClock, type Clock } from "./clock.js";
import { Decoder } from "./decode.js";
import {
  Flag,
  FrameType,
  GoAwayCode,
  INITIAL_WINDOW,
  HEADER_SIZE,
  MAX_STREAM_ID,
  type Frame,
  type FrameHeader,
} from "./frame.js";
import { MAX_MESSAGE_BYTES, MAX_MESSAGE_FRAMES, MIN_MESSAGE_BYTES, Outbox } from "./outbox.js";
import { BufferPool } from "./pool.js";
import { Stream, streamControl, type Conn, type StreamHost } from "./stream.js";
import { WindowTuner } from "./tuner.js";

/**
 * What the session needs from the message pipe under it (a WebSocket, an in-memory pair...). It knows no
 * frames: the session's outbox hands it whole messages.
 */
export interface Transport {
  /**
   * Starts the transport: from now on it calls `sink.data` with every message received, in order;
   * `sink.drain` when its outbound buffer falls back below its low watermark after a send returned
   * false; and `sink.close` once, when it closed or failed (with an Error saying why, if it failed).
   */
  start(sink: TransportSink): void;
  /**
   * Sends one message. `onSent` runs once the transport no longer needs the bytes (they are reused for a
   * later message): at once when it copies them, after the write otherwise, also when the connection
   * is gone. Returns false when the outbound buffer is above its high watermark; the caller then waits
   * for `drain`.
   */
  send(message: Uint8Array, onSent: () => void): boolean;
  /** Closes the transport; `reason` is why the session ended (adapters map it to a close code). Idempotent. */
  close(reason?: Error): void;
  /**
   * Stops reading from the network until `resume()` (Node's `ws`: the socket stops reading). The session
   * pauses while it keeps received bytes for a later turn (see {@link FRAMES_PER_TURN}); messages the
   * transport had already read may still arrive, and are kept in order. Optional: browsers cannot pause
   * a WebSocket, so there the kept bytes are bounded only by what the peer sends meanwhile.
   */
  pause?(): void;
  /** Reads again after `pause()`. */
  resume?(): void;
  /** Allocates a message buffer (Node: `Buffer.allocUnsafe`). Default `new Uint8Array(size)`. */
  allocate?(size: number): Uint8Array;
  /**
   * Largest message to hand to `send`, in bytes: an integer of at least {@link MIN_MESSAGE_BYTES}; at
   * most, and by default, {@link MAX_MESSAGE_BYTES} (a larger value means that). The session's frames fit
   * it (its `maxFrameSize` is at most this less a header). A browser's WebSocket sets 64 KiB: see
   * `webSocketTransport`.
   */
  readonly maxMessageBytes?: number;
  /**
   * Bytes of sent messages whose `onSent` has not run yet above which `send` returns false. The session
   * keeps enough message buffers to cover them, so a steady writer allocates none. Default 1 MiB.
   */
  readonly highWaterMark?: number;
}

export interface TransportSink {
  /**
   * Bytes received: a whole message, or with `more` a part of one whose rest follows in the next calls
   * (a transport that reads WebSocket frames itself hands a message over as its bytes arrive).
   */
  data(chunk: Uint8Array, more?: boolean): void;
  drain(): void;
  close(error?: Error): void;
}

/**
 * Frames the session handles in one turn, across every message of that turn; the rest waits for later
 * turns (the clock's `defer`), in order, with the transport paused. A peer's burst of tiny frames then
 * costs the event loop at most this many frames' work at a time, whatever it sends (pings, window
 * updates, empty Data frames, GoAways: 0.05-1 us each warm, about 1.5 us cold, in the first turns of a
 * process), and the messages one socket read delivers together (several thousand frames) are spread over
 * turns. Honest traffic rarely reaches it: 512 frames are 512 writes or window updates in one turn.
 */
export const FRAMES_PER_TURN = 512;

/**
 * Streams the peer may open per turn (each is a `Stream`, web streams and an accept handed to the
 * application: tens of us, more with the handler's own first steps); SYNs beyond it wait for the next
 * turn like frames beyond {@link FRAMES_PER_TURN}.
 */
export const STREAMS_PER_TURN = 64;

/**
 * Streams an ending session fails per turn; the rest fail in the next turns (the clock's `defer`).
 * Failing a stream wakes whatever waits on it: in Node about 5 us for the stream and 13 us more for a
 * `serveHttp` whose chain of awaits unwinds, so a session holding its 4096 streams (a hostile server can
 * open that many on a device) took 70 ms of one turn to end.
 */
export const STREAM_FAILS_PER_TURN = 128;

/**
 * The opaque value of the ping every wslis session sends first ("wSLS"): it tells the peer that this side
 * never sends a frame larger than a message it accepts (1 MiB - 12 bytes, {@link MAX_MESSAGE_BYTES}). A
 * Go or other yamux peer just answers it. A peer that sent it may be granted windows up to
 * `maxStreamWindow`; one that did not (hashicorp/yamux sends a Data body as large as the window it was
 * given, as one WebSocket message) is granted at most 1 MiB (or `streamWindow` if larger), so that every
 * message a peer may send fits `maxPayload` ({@link maxIncomingMessageBytes}). A peer that says so and
 * then sends larger frames only gets itself closed (WebSocket 1009).
 */
export const HELLO_PING = 0x77534c53;

/** Timers and a monotonic clock, injectable for tests and for pages whose timers are throttled. */
export type Timers = Clock;

export interface Logger {
  warn(message: string, ...details: unknown[]): void;
}

/** yamux settings, on both sides (`session: {…}` of `dialAndListen` and `Server`). */
export interface SessionOptions {
  /**
   * Streams the peer opened and nobody accepted yet; a SYN beyond it is answered with RST. 0 refuses
   * every stream the peer opens, at once (the wslis server, which never accepts, uses 0). Default 256.
   */
  acceptBacklog?: number;
  /** Streams opened here still waiting for their ACK; `open()` waits beyond it. Default 256. */
  maxUnackedOpens?: number;
  /** Live streams (both directions); beyond it `open()` rejects and SYNs get RST. Default 4096. */
  maxStreams?: number;
  /** Receive window per stream at first, in bytes; at least and by default 256 KiB (the spec's initial window). */
  streamWindow?: number;
  /**
   * Largest receive window per stream, in bytes. A stream whose consumer reads a whole window within four
   * round trips gets its window doubled, up to this (auto-tuning), and a later stream whose reader does
   * so goes straight to the largest window a stream of the session reached; one that is not read never
   * grows past `streamWindow`. Default 16 MiB; equal to `streamWindow` turns auto-tuning off.
   */
  maxStreamWindow?: number;
  /**
   * Largest Data frame body on the wire, in bytes: writes are cut into frames of at most this, and a
   * stream's consecutive frames that leave in one message are joined up to it. At most, and by default,
   * a message less its header: 1 MiB - 12, and 64 KiB - 12 on a browser's WebSocket (see
   * `webSocketTransport`). yamux peers bound frames by the window, not by size; lower it for peers that
   * cannot take large frames.
   */
  maxFrameSize?: number;
  /**
   * Frames one received WebSocket message may carry, of any kind (pings, window updates, empty data...:
   * frames are counted, not bytes); beyond it the peer is abusive: `ERR_ABUSIVE_PEER`, GoAway(protocol
   * error). wslis puts at most 4096 frames in a message, Go's yamux one. Default 4096.
   */
  maxFramesPerMessage?: number;
  /**
   * Replies a peer caused (RSTs refusing its streams) not yet handed to the transport: those of one
   * turn, and those waiting while the peer does not read; beyond it the peer is abusive
   * (`ERR_ABUSIVE_PEER`). Pings cost nothing here: a burst of them is answered with one pong. In frames
   * (12 bytes each). Default 1024.
   */
  maxPendingReplies?: number;
  /** Interval between keepalive pings, in ms; 0 disables them. Default 30 000 (hashicorp/yamux). */
  keepAliveInterval?: number;
  /** How long a ping may go unanswered, in ms, before the peer is dead. Default 10 000. */
  keepAliveTimeout?: number;
  /** After our FIN, how long to wait for the peer's before resetting the stream, in ms; 0 = forever. Default 300 000. */
  streamCloseTimeout?: number;
  /** Timers, clock and the outbox's end-of-turn flush (see {@link Clock}). Default the runtime's. */
  timers?: Clock;
  logger?: Logger;
}

/** What a {@link Session} is made with: the settings and which side of yamux it is. */
export interface SessionInit extends SessionOptions {
  /** `"client"` opens odd stream IDs (the wslis server); `"server"` opens even ones (the device). */
  role: "client" | "server";
  /** @internal First stream ID this side opens (tests of ID exhaustion). Must have the role's parity. */
  firstStreamID?: number;
}

/**
 * Lifecycle of a session (what the peer announced with its own GoAway is tracked apart: it only stops
 * `open()`).
 *
 * ```
 *   Open ── goAway() ──▶ GoingAway (SYNs refused; live streams go on)
 *     │                      │
 *     └──────────┬───────────┘
 *                ▼  close(reason), the connection lost, GoAway(error) received, a protocol error
 *             Closed (final: every stream and pending operation failed with the reason)
 * ```
 * Every transition into Closed goes through `#end`.
 */
export const SessionState = {
  Open: "open",
  GoingAway: "goingAway",
  Closed: "closed",
} as const;
export type SessionState = (typeof SessionState)[keyof typeof SessionState];

interface PendingPing extends Waiter<number> {
  start: number;
}

/**
 * @internal Fails the `accept()` calls waiting on `session` with `reason`, leaving the session as it is:
 * the device's listener moves them to its next session when this one is going away (GoAway), without an
 * abort listener per waiting accept.
 */
export let interruptAccepts: (session: Session, reason: Error) => void;

/**
 * A yamux session. Events (it is an EventTarget): `goaway` when the peer sent GoAway (no new streams),
 * `close` when the session ended (see {@link Session.closeReason}), `rtt` (a CustomEvent whose detail is
 * a ping's round-trip time in ms) for every ping answered, keepalives included.
 */
export class Session extends EventTarget {
  static {
    interruptAccepts = (session, reason) => rejectAll(session.#acceptWaiters, reason);
  }

  readonly role: "client" | "server";
  readonly maxFrameSize: number;
  /** Resolves with the reason once the session has ended. Never rejects. */
  readonly closed: Promise<Error>;

  readonly #transport: Transport;
  readonly #outbox: Outbox;
  readonly #decoder: Decoder;
  readonly #timers: Timers;
  readonly #logger: Logger | undefined;
  readonly #acceptBacklog: number;
  readonly #maxUnackedOpens: number;
  readonly #maxStreams: number;
  readonly #maxFramesPerMessage: number;
  readonly #maxPendingReplies: number;
  readonly #window: number;
  readonly #maxWindow: number;
  readonly #tuner: WindowTuner;
  /** What streams may call: the stream <-> session contract, kept off the public surface. */
  readonly #host: StreamHost;
  #rtt = 0;
  readonly #keepAliveInterval: number;
  readonly #keepAliveTimeout: number;
  readonly #streamCloseTimeout: number;

  readonly #streams = new Map<number, Stream>();
  #nextStreamID: number;
  readonly #acceptQueue: Stream[] = [];
  readonly #acceptWaiters: Waiter<Stream>[] = [];
  #unackedOpens = 0;
  readonly #openWaiters: Waiter<void>[] = [];
  readonly #pings = new Map<number, PendingPing>();
  readonly #drainWaiters: Waiter<void>[] = [];
  readonly #idleWaiters: (() => void)[] = [];
  #keepAliveTimer: unknown;

  /**
   * Inbound bytes kept for a later turn, in order: the first chunk from where decoding stopped, then
   * whole messages. Kept only while the turn's budget is spent; the transport is paused meanwhile.
   */
  readonly #backlog: Uint8Array[] = [];
  /** For each chunk of the backlog, whether its message goes on in the next one. */
  readonly #backlogMore: boolean[] = [];
  /** The last chunk received (decoded or kept) was part of a message that goes on. */
  #inMessage = false;
  /** Frames of the message being decoded so far (maxFramesPerMessage), across turns. */
  #messageFrames = 0;
  /** Frames and new streams handled this turn (FRAMES_PER_TURN, STREAMS_PER_TURN). */
  #turnFrames = 0;
  #turnStreams = 0;
  /** A deferred end of turn is queued: it resets the counts and goes on with the backlog. */
  #turnQueued = false;
  /**
   * The budget ran out on bytes the transport just delivered: the kept work waits one more deferral. In
   * Node a `setImmediate` queued from the poll phase (where sockets are read) runs in the same loop
   * iteration's check phase, so without it one iteration would handle twice the budget.
   */
  #yieldOnce = false;
  /** The transport was paused for the backlog. */
  #paused = false;
  readonly #defer: (fn: () => void) => void;

  #state: SessionState = SessionState.Open;
  /** The peer sent GoAway(normal): what it said, not a state of ours; `open()` rejects. */
  #remoteGoAway = false;
  #closeReason: Error | undefined;
  #resolveClosed!: (reason: Error) => void;

  constructor(transport: Transport, options: SessionInit) {
    super();
    const settings = sessionSettings(options);
    this.role = settings.role;
    this.#nextStreamID = settings.firstStreamID;
    this.#acceptBacklog = settings.acceptBacklog;
    this.#maxUnackedOpens = settings.maxUnackedOpens;
    this.#maxStreams = settings.maxStreams;
    this.#maxFramesPerMessage = settings.maxFramesPerMessage;
    this.#maxPendingReplies = settings.maxPendingReplies;
    this.#window = settings.streamWindow;
    this.#maxWindow = settings.maxStreamWindow;
    // Frames fit the transport's messages (a browser's are smaller, see webSocketTransport).
    const messageBytes = Math.min(integerOption("maxMessageBytes", transport.maxMessageBytes ?? MAX_MESSAGE_BYTES, MIN_MESSAGE_BYTES), MAX_MESSAGE_BYTES);
    this.maxFrameSize = Math.min(settings.maxFrameSize, messageBytes - HEADER_SIZE);
    this.#keepAliveInterval = settings.keepAliveInterval;
    this.#keepAliveTimeout = settings.keepAliveTimeout;
    this.#streamCloseTimeout = settings.streamCloseTimeout;
    this.#timers = options.timers ?? systemClock;
    // Windows beyond what fits one message wait for the peer's hello (HELLO_PING).
    this.#tuner = new WindowTuner({ maxWindow: Math.min(this.#maxWindow, Math.max(MAX_MESSAGE_BYTES, this.#window)) });
    const timers = this.#timers;
    this.#host = {
      maxFrameSize: this.maxFrameSize,
      tuner: this.#tuner,
      sendWindowUpdate: (streamID, flags, delta) => this.#sendWindowUpdate(streamID, flags, delta),
      sendData: (streamID, body) => this.#sendData(streamID, body),
      streamAcked: (stream) => this.#streamAcked(stream),
      streamEnded: (stream) => this.#streamEnded(stream),
      now: () => timers.now(),
      setTimeout: (fn, ms) => timers.setTimeout(fn, ms),
      clearTimeout: (handle) => timers.clearTimeout(handle),
    };
    this.#logger = options.logger;
    // A peer never sends a frame larger than the window it was given.
    this.#decoder = new Decoder({ maxDataLength: this.#maxWindow });
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));

    this.#transport = transport;
    this.#defer = timers.defer ? (fn) => timers.defer!(fn) : (fn) => queueMicrotask(fn);
    this.#outbox = new Outbox({
      sink: transport,
      pool: new BufferPool({
        size: messageBytes,
        // A steady writer has this many buffers out at once: the one being filled, the sent ones the
        // transport still holds (up to its high watermark), and the one whose send crossed it. One fewer
        // and every drain cycle dropped a buffer and allocated another: a 1 MiB buffer per 2 MiB sent,
        // which lived long enough to drive the sending process into a full GC every few MB (issue 10).
        keep: Math.ceil((transport.highWaterMark ?? 1024 * 1024) / messageBytes) + 2,
        allocate: transport.allocate?.bind(transport),
        clock: timers,
      }),
      defer: this.#defer,
      maxPendingReplies: settings.maxPendingReplies,
      maxFrameSize: this.maxFrameSize,
      onDrain: () => resolveAll(this.#drainWaiters),
    });
    transport.start({
      data: (chunk, more) => this.#receive(chunk, more === true),
      drain: () => this.#outbox.drain(),
      close: (error) =>
        this.#end(
          error instanceof WslisError
            ? error
            : new SessionClosedError("ERR_CONNECTION_LOST", error?.message ?? "the connection closed", { cause: error }),
          "silent",
        ),
    });
    this.#scheduleKeepAlive();
    // One ping at once, always: its round trip sizes stream windows (see maxStreamWindow), and its value
    // tells a wslis peer that our frames fit a message (HELLO_PING).
    this.#ping(HELLO_PING, {}).catch(() => {});
  }

  /** Live streams, both directions. */
  get numStreams(): number {
    return this.#streams.size;
  }

  /** Where the session is in its lifecycle (see {@link SessionState}). */
  get state(): SessionState {
    return this.#state;
  }

  /** Why the session ended, or undefined while it is open. */
  get closeReason(): Error | undefined {
    return this.#closeReason;
  }

  /** True once the peer sent GoAway: `open()` rejects. */
  get remoteGoAway(): boolean {
    return this.#remoteGoAway;
  }

  /**
   * Opens a stream. It is usable at once; the peer's ACK is not awaited, except that at most
   * `maxUnackedOpens` streams may wait for theirs (the call waits for a slot). `timeout` (ms) bounds that
   * wait (`ERR_TIMEOUT`, "dial timed out after …"); a call that does not wait makes no timer.
   */
  async open(options: { signal?: AbortSignal; timeout?: number } = {}): Promise<Conn> {
    const { signal, timeout } = options;
    let woken = false;
    try {
      for (;;) {
        this.#assertCanOpen();
        signal?.throwIfAborted();
        if (this.#unackedOpens < this.#maxUnackedOpens) break;
        await this.#waitToOpen(signal, timeout);
        woken = true;
      }
      if (this.#nextStreamID > MAX_STREAM_ID) {
        throw new StreamLimitError("ERR_STREAMS_EXHAUSTED", "stream IDs are exhausted on this session; open a new one");
      }
      if (this.#streams.size >= this.#maxStreams) {
        throw new StreamLimitError("ERR_TOO_MANY_STREAMS", `the session already has ${this.#maxStreams} streams`);
      }
    } catch (error) {
      // This call was woken for a free slot and does not take it: the next waiter gets the wake-up, or
      // it would wait for an ACK that may never come.
      if (woken) this.#wakeOpenWaiter();
      throw error;
    }
    const stream = this.#newStream(this.#nextStreamID, false);
    this.#nextStreamID += 2;
    this.#unackedOpens++;
    this.#outbox.control(FrameType.WindowUpdate, Flag.SYN, stream.streamID, this.#window - INITIAL_WINDOW);
    return stream;
  }

  /** Waits for a free slot among the unacknowledged opens, until `signal` aborts or `timeout` ms pass. */
  async #waitToOpen(signal: AbortSignal | undefined, timeout: number | undefined): Promise<void> {
    if (timeout === undefined) return enqueue(this.#openWaiters, signal);
    const expired = new AbortController();
    const cancel = deadline("dial", timeout, signal, (error) => expired.abort(error), this.#timers);
    try {
      await enqueue(this.#openWaiters, expired.signal);
    } finally {
      cancel();
    }
  }

  #wakeOpenWaiter(): void {
    if (this.#unackedOpens < this.#maxUnackedOpens) this.#openWaiters.shift()?.resolve();
  }

  /** Waits for a stream the peer opens. */
  async accept(options: { signal?: AbortSignal } = {}): Promise<Conn> {
    const stream = this.#acceptQueue.shift();
    if (stream !== undefined) return stream;
    if (this.#closeReason) throw this.#closeReason;
    options.signal?.throwIfAborted();
    return enqueue(this.#acceptWaiters, options.signal);
  }

  /** Sends a ping and resolves with the round-trip time in ms. Rejects with `ERR_TIMEOUT` after `timeout`. */
  ping(options: { signal?: AbortSignal; timeout?: number } = {}): Promise<number> {
    return this.#ping(this.#pingID(), options);
  }

  async #ping(id: number, options: { signal?: AbortSignal; timeout?: number }): Promise<number> {
    if (this.#closeReason) throw this.#closeReason;
    const { signal, timeout = this.#keepAliveTimeout } = options;
    signal?.throwIfAborted();
    return new Promise<number>((resolve, reject) => {
      const done = (error: Error | undefined, rtt?: number) => {
        cancel();
        this.#pings.delete(id);
        if (error) reject(error);
        else resolve(rtt!);
      };
      const cancel = deadline("ping", timeout, signal, done, this.#timers);
      this.#pings.set(id, {
        start: this.#timers.now(),
        resolve: (rtt) => done(undefined, rtt),
        reject: (error) => done(error),
      });
      this.#outbox.control(FrameType.Ping, Flag.SYN, 0, id);
    });
  }

  /**
   * An unpredictable ping id not in use: a peer that reads nothing cannot answer keepalives blind and
   * stay registered forever.
   */
  #pingID(): number {
    for (;;) {
      const id = crypto.getRandomValues(new Uint32Array(1))[0]!;
      if (!this.#pings.has(id) && id !== HELLO_PING) return id;
    }
  }

  /**
   * Tells the peer this side accepts no new streams (GoAway, normal). Streams already open go on; new
   * SYNs get RST. `close()` sends it too.
   */
  goAway(code: GoAwayCode = GoAwayCode.Normal): void {
    if (this.#state !== SessionState.Open) return;
    this.#state = SessionState.GoingAway;
    this.#outbox.control(FrameType.GoAway, 0, 0, code);
  }

  /** Resolves once no stream is live (or the session ended). For draining after `goAway()`. */
  idle(): Promise<void> {
    if (this.#streams.size === 0 || this.#closeReason) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Ends the session: sends GoAway if it was not sent, fails every stream and pending operation with
   * `reason` (default `ERR_SESSION_CLOSED`), and closes the transport. Idempotent.
   */
  close(reason: Error = new SessionClosedError("ERR_SESSION_CLOSED", "the session was closed")): void {
    this.#end(reason, reason instanceof AbusivePeerError ? "goAwayOnly" : "goAway");
  }

  /**
   * The one way into Closed. `farewell` says what the peer still gets: "goAway" (what is queued, then
   * GoAway unless sent), "goAwayOnly" (an abusive peer: what was queued for it is dropped), "silent" (the
   * connection is gone, or the peer left with GoAway(error): nothing to say).
   */
  #end(reason: Error, farewell: "goAway" | "goAwayOnly" | "silent"): void {
    if (this.#state === SessionState.Closed) return;
    if (farewell === "silent") {
      this.#outbox.abandon();
    } else if (farewell === "goAwayOnly") {
      this.#outbox.closeWith(FrameType.GoAway, 0, 0, reason instanceof ProtocolError ? reason.goAwayCode : GoAwayCode.ProtocolError);
    } else {
      this.goAway(reason instanceof ProtocolError ? reason.goAwayCode : GoAwayCode.Normal);
      this.#outbox.close();
    }
    this.#state = SessionState.Closed;
    this.#closeReason = reason;
    this.#backlog.length = 0; // what a closed session kept is never handled
    this.#backlogMore.length = 0;
    this.#timers.clearTimeout(this.#keepAliveTimer);
    this.#failStreams([...new Set([...this.#streams.values(), ...this.#acceptQueue.splice(0)])], 0, reason);
    rejectAll(this.#acceptWaiters, reason);
    rejectAll(this.#openWaiters, reason);
    rejectAll(this.#drainWaiters, reason);
    for (const ping of [...this.#pings.values()]) ping.reject(reason);
    this.#notifyIdle();
    this.#transport.close(reason);
    this.#resolveClosed(reason);
    this.dispatchEvent(new Event("close"));
  }

  /** Fails `streams` from `from` on, {@link STREAM_FAILS_PER_TURN} now and the rest in later turns. */
  #failStreams(streams: Stream[], from: number, reason: Error): void {
    const to = Math.min(streams.length, from + STREAM_FAILS_PER_TURN);
    for (let i = from; i < to; i++) streamControl.fail(streams[i]!, reason);
    if (to < streams.length) this.#defer(() => this.#failStreams(streams, to, reason));
  }

  // What streams call, through #host.

  #sendWindowUpdate(streamID: number, flags: number, delta: number): void {
    this.#outbox.control(FrameType.WindowUpdate, flags, streamID, delta);
  }

  #sendData(streamID: number, body: Uint8Array): Promise<void> | undefined {
    if (this.#closeReason) return Promise.reject(this.#closeReason);
    if (this.#outbox.data(streamID, body)) return undefined;
    return new Promise<void>((resolve, reject) => this.#drainWaiters.push({ resolve, reject }));
  }

  #streamAcked(stream: Stream): void {
    if (stream.streamID % 2 !== this.#nextStreamID % 2) return; // the peer's stream: ACKed on arrival
    this.#unackedOpens--;
    this.#wakeOpenWaiter();
  }

  #streamEnded(stream: Stream): void {
    if (this.#streams.get(stream.streamID) !== stream) return;
    this.#streams.delete(stream.streamID);
    if (this.#streams.size === 0) this.#notifyIdle();
  }

  #notifyIdle(): void {
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  /** The latest ping round-trip time in ms (keepalives and `ping()`; one ping at start), 0 while unknown. */
  get rtt(): number {
    return this.#rtt;
  }

  // Inbound.

  #receive(chunk: Uint8Array, more: boolean): void {
    if (this.#closeReason) return;
    if (this.#backlog.length > 0) {
      // Earlier bytes wait for a later turn: these go after them (messages the transport had read
      // before it paused).
      this.#backlog.push(chunk);
      this.#backlogMore.push(more);
      this.#inMessage = more;
      return;
    }
    // A new message's frames are counted afresh; the rest of one goes on counting.
    if (!this.#inMessage) this.#messageFrames = 0;
    this.#inMessage = more;
    const done = this.#spent() ? 0 : this.#decode(chunk);
    if (done < chunk.length && this.#closeReason === undefined) {
      this.#backlog.push(done === 0 ? chunk : chunk.subarray(done));
      this.#backlogMore.push(more);
      this.#yieldOnce = true;
      this.#paused = true;
      this.#transport.pause?.();
    }
  }

  /** True once this turn handled its budget of frames or new streams. */
  #spent(): boolean {
    return this.#turnFrames >= FRAMES_PER_TURN || this.#turnStreams >= STREAMS_PER_TURN;
  }

  /**
   * The end of a turn in which frames were handled: the budget starts again, and what was kept is
   * handled, in order, up to it. Once nothing is kept the transport reads again.
   */
  #endTurn(): void {
    if (this.#yieldOnce && this.#closeReason === undefined) {
      this.#yieldOnce = false;
      this.#defer(() => this.#endTurn());
      return;
    }
    this.#yieldOnce = false;
    this.#turnQueued = false;
    this.#turnFrames = 0;
    this.#turnStreams = 0;
    const backlog = this.#backlog;
    while (backlog.length > 0 && this.#closeReason === undefined) {
      if (this.#spent()) return;
      const chunk = backlog[0]!;
      const done = this.#decode(chunk);
      if (this.#closeReason !== undefined) return;
      if (done < chunk.length) {
        backlog[0] = chunk.subarray(done);
        return;
      }
      backlog.shift();
      // The next chunk starts a message of its own (its frames are counted afresh), or goes on with this one.
      if (!this.#backlogMore.shift()) this.#messageFrames = 0;
    }
    if (this.#paused && this.#closeReason === undefined) {
      this.#paused = false;
      this.#transport.resume?.();
    }
  }

  // The decoder's callbacks, made once (#decode runs for every chunk received).

  /** A decoded frame: counted against the message's and the turn's budgets, then handled. */
  readonly #onFrame = (frame: Frame): boolean => {
    // Frames are counted, not bytes: a message of tiny frames costs CPU and replies whatever its size.
    if (++this.#messageFrames > this.#maxFramesPerMessage) {
      throw new AbusivePeerError(`more than ${this.#maxFramesPerMessage} frames in one message (maxFramesPerMessage)`);
    }
    if (this.#turnFrames++ === 0 && !this.#turnQueued) {
      this.#turnQueued = true;
      this.#defer(() => this.#endTurn());
    }
    this.#handleFrame(frame);
    return this.#closeReason === undefined && !this.#spent();
  };

  readonly #onDataHeader = (header: FrameHeader): boolean => this.#admitData(header);

  /** Part of a plain Data frame's body (admitted with its header), as it arrives. */
  readonly #onPiece = (header: FrameHeader, piece: Uint8Array): boolean => {
    const stream = this.#streams.get(header.streamID);
    if (stream !== undefined) streamControl.handleData(stream, piece);
    return this.#closeReason === undefined;
  };

  /**
   * Decodes `chunk` (the rest of the message whose frames `#messageFrames` counts) until it ends, the
   * turn's budget is spent or the session ends; returns how many of its bytes were decoded.
   */
  #decode(chunk: Uint8Array): number {
    try {
      return this.#decoder.feed(chunk, this.#onFrame, this.#onDataHeader, this.#onPiece);
    } catch (error) {
      if (error instanceof ProtocolError) {
        this.#logger?.warn(`wslis: ${error.message}; closing the session`);
        this.close(error);
      } else {
        // A bug of ours: tell the peer, and fail loudly here.
        const internal = new ProtocolError(`internal error: ${String(error)}`, GoAwayCode.InternalError);
        this.#logger?.warn("wslis: internal error while handling a frame", error);
        this.close(internal);
      }
      return chunk.length;
    }
  }

  /**
   * Looks at a Data header before its body is kept: a body beyond the stream's receive window is a
   * protocol error from the header alone (no buffer is allocated for it); one for a stream nobody will
   * read (unknown: it crossed our RST; or a SYN we refuse) is passed over unbuffered.
   */
  #admitData(header: FrameHeader): boolean {
    const stream = this.#streams.get(header.streamID);
    if (header.flags & Flag.SYN) {
      if (stream !== undefined || header.flags & Flag.RST || this.#refusing()) return false; // #handleSyn decides
      if (header.length > this.#window) {
        throw new ProtocolError(`stream ${header.streamID} opened with ${header.length} bytes, beyond its window of ${this.#window}`);
      }
      return true;
    }
    if (stream === undefined) return false;
    streamControl.admitData(stream, header.length);
    return true;
  }

  /** True when a SYN arriving now would be refused. */
  #refusing(): boolean {
    return this.#state !== SessionState.Open || this.#acceptQueue.length >= this.#acceptBacklog || this.#streams.size >= this.#maxStreams;
  }

  #handleFrame(frame: Frame): void {
    switch (frame.type) {
      case FrameType.Data:
      case FrameType.WindowUpdate:
        this.#handleStreamFrame(frame);
        return;
      case FrameType.Ping:
        this.#handlePing(frame);
        return;
      case FrameType.GoAway:
        this.#handleGoAway(frame);
        return;
    }
  }

  #handleStreamFrame(frame: Frame): void {
    if (frame.streamID === 0) throw new ProtocolError(`stream frame on stream 0`);
    if (frame.flags & Flag.SYN) {
      this.#handleSyn(frame);
      return;
    }
    // A frame for a stream we no longer know is late (it crossed our RST or close): drop it.
    const stream = this.#streams.get(frame.streamID);
    if (stream !== undefined) streamControl.handleFrame(stream, frame);
  }

  #handleSyn(frame: Frame): void {
    const { streamID } = frame;
    const peerParity = this.role === "client" ? 0 : 1;
    if (streamID % 2 !== peerParity) {
      throw new ProtocolError(`the peer opened stream ${streamID}, which has this side's ID parity`);
    }
    if (this.#streams.has(streamID)) throw new ProtocolError(`duplicate SYN for stream ${streamID}`);
    if (frame.flags & Flag.RST) return;
    if (this.#refusing()) {
      // No log line per refusal: a peer could make us write one per 12 bytes it sends.
      if (!this.#outbox.refuse(streamID)) {
        throw new AbusivePeerError(`more than ${this.#maxPendingReplies} refused streams wait for a peer that does not read (maxPendingReplies)`);
      }
      return;
    }
    const stream = this.#newStream(streamID, true);
    this.#turnStreams++;
    // ACK at once, not on first data: hashicorp/yamux closes the whole session when an ACK is late.
    this.#outbox.control(FrameType.WindowUpdate, Flag.ACK, streamID, this.#window - INITIAL_WINDOW);
    streamControl.handleFrame(stream, frame);
    const waiter = this.#acceptWaiters.shift();
    if (waiter) waiter.resolve(stream);
    else this.#acceptQueue.push(stream);
  }

  #handlePing(frame: Frame): void {
    if (frame.flags & Flag.SYN) {
      // A wslis peer: its frames fit a message, so windows may grow to the full maxStreamWindow.
      if (frame.length === HELLO_PING) this.#tuner.maxWindow = this.#maxWindow;
      this.#outbox.pong(frame.length);
    } else if (frame.flags & Flag.ACK) {
      const ping = this.#pings.get(frame.length);
      if (ping === undefined) return;
      const rtt = this.#timers.now() - ping.start;
      this.#rtt = rtt;
      this.#tuner.observeRtt(rtt);
      ping.resolve(rtt);
      this.dispatchEvent(new CustomEvent("rtt", { detail: rtt }));
    }
  }

  #handleGoAway(frame: Frame): void {
    if (frame.length !== GoAwayCode.Normal) {
      const what = frame.length === GoAwayCode.ProtocolError ? "protocol error" : `error code ${frame.length}`;
      // The peer is leaving: answering it with GoAway is pointless.
      this.#end(new SessionClosedError("ERR_CONNECTION_LOST", `the peer closed the session with GoAway (${what})`), "silent");
      return;
    }
    if (this.#remoteGoAway) return;
    this.#remoteGoAway = true;
    rejectAll(this.#openWaiters, new RemoteGoAwayError());
    this.dispatchEvent(new Event("goaway"));
  }

  #newStream(streamID: number, acked: boolean): Stream {
    const stream = new Stream(this.#host, streamID, {
      window: this.#window,
      maxWindow: this.#maxWindow,
      acked,
      closeTimeout: this.#streamCloseTimeout,
    });
    this.#streams.set(streamID, stream);
    return stream;
  }

  #assertCanOpen(): void {
    if (this.#closeReason) throw this.#closeReason;
    if (this.#remoteGoAway) throw new RemoteGoAwayError();
  }

  #scheduleKeepAlive(): void {
    if (this.#keepAliveInterval === 0 || this.#closeReason) return;
    this.#keepAliveTimer = this.#timers.setTimeout(() => {
      this.ping({ timeout: this.#keepAliveTimeout }).then(
        () => this.#scheduleKeepAlive(),
        (error: unknown) => {
          if (!(error instanceof TimeoutError)) return; // the session closed meanwhile
          this.close(
            new SessionClosedError(
              "ERR_KEEPALIVE_TIMEOUT",
              `the peer did not answer a keepalive ping within ${this.#keepAliveTimeout} ms`,
            ),
          );
        },
      );
    }, this.#keepAliveInterval);
  }
}

/**
 * Session options with their defaults, validated: throws a RangeError or TypeError that names the bad
 * option. Entry points call it up front so a mistake fails at once, not on the first connection.
 */
export function sessionSettings(options: SessionInit) {
  const { role } = options;
  if (role !== "client" && role !== "server") {
    throw new TypeError(`wslis: session role must be "client" or "server", not ${String(role)}`);
  }
  const firstStreamID = options.firstStreamID ?? (role === "client" ? 1 : 2);
  if (firstStreamID % 2 !== (role === "client" ? 1 : 0)) {
    throw new RangeError(`wslis: a ${role} opens ${role === "client" ? "odd" : "even"} stream IDs`);
  }
  const maxFrameSize = integerOption("maxFrameSize", options.maxFrameSize ?? MAX_MESSAGE_BYTES - HEADER_SIZE);
  if (maxFrameSize > MAX_MESSAGE_BYTES - HEADER_SIZE) {
    throw new RangeError(`wslis: maxFrameSize must be at most ${MAX_MESSAGE_BYTES - HEADER_SIZE} bytes (a frame fits one message)`);
  }
  const streamWindow = integerOption("streamWindow", options.streamWindow ?? INITIAL_WINDOW);
  if (streamWindow < INITIAL_WINDOW || streamWindow > MAX_STREAM_ID) {
    throw new RangeError(`wslis: streamWindow must be between ${INITIAL_WINDOW} and ${MAX_STREAM_ID} bytes`);
  }
  const maxStreamWindow = integerOption("maxStreamWindow", options.maxStreamWindow ?? Math.max(16 * 1024 * 1024, streamWindow));
  if (maxStreamWindow < streamWindow || maxStreamWindow > MAX_STREAM_ID) {
    throw new RangeError(`wslis: maxStreamWindow must be between streamWindow and ${MAX_STREAM_ID} bytes`);
  }
  return {
    role,
    firstStreamID,
    streamWindow,
    maxStreamWindow,
    acceptBacklog: integerOption("acceptBacklog", options.acceptBacklog ?? 256, 0),
    maxUnackedOpens: integerOption("maxUnackedOpens", options.maxUnackedOpens ?? 256),
    maxStreams: integerOption("maxStreams", options.maxStreams ?? 4096),
    maxFrameSize,
    maxFramesPerMessage: integerOption("maxFramesPerMessage", options.maxFramesPerMessage ?? MAX_MESSAGE_FRAMES),
    maxPendingReplies: integerOption("maxPendingReplies", options.maxPendingReplies ?? 1024),
    keepAliveInterval: integerOption("keepAliveInterval", options.keepAliveInterval ?? 30_000, 0),
    keepAliveTimeout: integerOption("keepAliveTimeout", options.keepAliveTimeout ?? 10_000),
    streamCloseTimeout: integerOption("streamCloseTimeout", options.streamCloseTimeout ?? 300_000, 0),
  };
}

/**
 * Outbound frames -> whole WebSocket messages.
 *
 * The WebSocket under yamux is a byte stream, so what one turn of the event loop writes leaves as one
 * message, or one per {@link CUT_AFTER_DATA_FRAMES} Data frames (a peer with many calls in flight starts
 * on the first ones): frames are copied into reused buffers (see {@link BufferPool}), a stream's
 * consecutive Data frames become one frame, a stream's window credits in one message become one
 * WindowUpdate, and control frames ride in the same messages as data. A message holds at most
 * {@link MAX_MESSAGE_BYTES} and {@link MAX_MESSAGE_FRAMES}: the receiver's limits are derived from the
 * same constants.
 *
 * What a peer can make us send (pongs, RSTs for refused streams) is budgeted: pings are answered with one
 * pong for the latest ping id of a burst (the spec only asks that a ping be answered), and while the
 * transport is full (the peer does not read) at most `maxPendingReplies` refusals may wait; beyond that
 * the session closes the peer as abusive.
 */

import { FrameType, Flag, HEADER_SIZE, writeHeader, writeUint32 } from "./frame.js";
import type { BufferPool } from "./pool.js";

/**
 * Largest WebSocket message this side sends, in bytes (1 MiB). Data written in one turn is joined up to
 * this (measured: 1 MiB buffers are reused steadily under 64 KiB writes; smaller ones were not).
 */
export const MAX_MESSAGE_BYTES = 1024 * 1024;

/** Smallest message size a transport may ask for (`Transport.maxMessageBytes`), in bytes. */
export const MIN_MESSAGE_BYTES = 4096;

/** Most frames this side puts in one WebSocket message; the default receive budget is the same number. */
export const MAX_MESSAGE_FRAMES = 4096;

/**
 * Data frames (a stream's joined ones count once) after which the message being filled leaves at once
 * instead of at the end of the turn. With many calls in flight a turn answers a whole batch of them;
 * sent as one message, the peer would sit idle until the last one is done and then this side would wait
 * while it works through the batch: the two ends take turns. Cut every few frames, the peer starts on
 * the first answers while this side writes the rest. Measured, reverse-HTTP GETs between two Node
 * processes, the same processes switching between the two (median of 8): 16 in flight 13.4k -> 16.2k
 * requests/s, 64 in flight 17.4k -> 22.1k; 4 frames did as well, so the larger number (fewer messages).
 * Bulk data is unaffected: its frames are large, and one stream's consecutive writes join.
 */
export const CUT_AFTER_DATA_FRAMES = 8;

/**
 * Largest WebSocket message a receiver accepts (`ws`'s `maxPayload`), in bytes: what wslis sends
 * ({@link MAX_MESSAGE_BYTES}), or one Data frame filling the largest window this side grants (Go's
 * yamux sends a frame's body as one message of up to the window), whichever is larger.
 */
export function maxIncomingMessageBytes(streamWindow: number): number {
  return Math.max(MAX_MESSAGE_BYTES, streamWindow) + HEADER_SIZE;
}

/** What the outbox hands messages to: the session's transport. */
export interface MessageSink {
  /** Sends one message; `onSent` runs once its bytes may be reused. False: full, wait for `drain()`. */
  send(message: Uint8Array, onSent: () => void): boolean;
}

export interface OutboxOptions {
  sink: MessageSink;
  pool: BufferPool;
  /** Runs the flush once the current turn is done. */
  defer(fn: () => void): void;
  /** Largest Data frame, joined frames included, in bytes (at most a message less its header). */
  maxFrameSize: number;
  /** Replies to the peer (RSTs for refused streams) that may wait while the transport is full. */
  maxPendingReplies: number;
  /** Called when the transport drained and nothing is held back any more: writers may go on. */
  onDrain(): void;
}

/** A buffer frames are copied into, and how many messages cut from it are not yet sent out. */
interface Slab {
  readonly bytes: Uint8Array;
  inFlight: number;
}

/** A message cut from a slab and not yet handed to the transport (it is full). */
interface Held {
  slab: Slab;
  start: number;
  end: number;
  replies: number;
}

export class Outbox {
  readonly #sink: MessageSink;
  readonly #pool: BufferPool;
  readonly #defer: (fn: () => void) => void;
  readonly #maxPendingReplies: number;
  readonly #maxFrameSize: number;
  readonly #onDrain: () => void;

  #slab: Slab | undefined;
  /** Where the message being filled starts in the slab, and where it ends now. */
  #start = 0;
  #end = 0;
  #frames = 0;
  /** Data frames (joined ones count once) in the message being filled. */
  #dataFrames = 0;
  /** Replies (refusals) in the message being filled, and in every message not yet sent. */
  #replies = 0;
  #pendingReplies = 0;
  /** Offset of the last frame when it is a plain Data frame that may be extended, and its stream; -1 otherwise. */
  #openData = -1;
  #openDataStream = 0;
  /** Plain WindowUpdates in the message being filled, by stream: later credit is added to them. */
  readonly #credits = new Map<number, number>();
  /** The pong owed for the latest ping of a burst, written when the message is cut. */
  #pong: number | undefined;
  readonly #held: Held[] = [];
  /** The transport said it is full: messages wait until it drains. */
  #blocked = false;
  #scheduled = false;
  #closed = false;

  constructor(options: OutboxOptions) {
    this.#sink = options.sink;
    this.#pool = options.pool;
    this.#defer = options.defer;
    this.#maxPendingReplies = options.maxPendingReplies;
    this.#maxFrameSize = options.maxFrameSize;
    this.#onDrain = options.onDrain;
  }

  /** True while the transport is full: writers wait for `onDrain`. */
  get blocked(): boolean {
    return this.#blocked;
  }

  /** Bytes queued here and not yet handed to the transport. */
  get queuedBytes(): number {
    let bytes = this.#end - this.#start;
    for (const held of this.#held) bytes += held.end - held.start;
    return bytes;
  }

  /** Queues a Data frame (the body is copied). Returns false when the writer must wait for `onDrain`. */
  data(streamID: number, body: Uint8Array): boolean {
    if (this.#closed) return true;
    const slab = this.#slab;
    if (
      this.#openData >= 0 &&
      this.#openDataStream === streamID &&
      this.#end + body.length <= slab!.bytes.length &&
      this.#end + body.length - this.#openData - HEADER_SIZE <= this.#maxFrameSize
    ) {
      // The same stream's next Data frame right behind its previous one: one frame of the two lengths
      // carries the same bytes. The peer's window admits it: both were sent within credit it granted.
      slab!.bytes.set(body, this.#end);
      this.#end += body.length;
      writeUint32(slab!.bytes, this.#openData + 8, this.#end - this.#openData - HEADER_SIZE);
    } else {
      const at = this.#reserve(HEADER_SIZE + body.length);
      const bytes = this.#slab!.bytes;
      writeHeader(bytes, at, FrameType.Data, 0, streamID, body.length);
      bytes.set(body, at + HEADER_SIZE);
      this.#openData = at;
      this.#openDataStream = streamID;
      if (++this.#dataFrames >= CUT_AFTER_DATA_FRAMES && !this.#blocked) {
        // A burst of many streams' frames: this much leaves now (see CUT_AFTER_DATA_FRAMES).
        this.#cut();
        this.#sendHeld();
      }
    }
    this.#schedule();
    return !this.#blocked;
  }

  /** Queues a frame without a body (flags on WindowUpdate, Ping, GoAway). */
  control(type: FrameType, flags: number, streamID: number, length: number): void {
    if (this.#closed) return;
    if (type === FrameType.WindowUpdate && flags === 0) {
      const at = this.#credits.get(streamID);
      if (at !== undefined) {
        // Credit for a stream that already has a WindowUpdate in this message: one frame says both.
        const bytes = this.#slab!.bytes;
        const sum = ((bytes[at + 8]! << 24) | (bytes[at + 9]! << 16) | (bytes[at + 10]! << 8) | bytes[at + 11]!) >>> 0;
        writeUint32(bytes, at + 8, sum + length);
        return;
      }
    }
    const at = this.#reserve(HEADER_SIZE);
    writeHeader(this.#slab!.bytes, at, type, flags, streamID, length);
    this.#openData = -1;
    if (type === FrameType.WindowUpdate && flags === 0) this.#credits.set(streamID, at);
    this.#schedule();
  }

  /** Owes the peer a pong for ping `id`; a later ping before the flush replaces it (one pong per burst). */
  pong(id: number): void {
    if (this.#closed) return;
    this.#pong = id;
    this.#schedule();
  }

  /**
   * Queues the RST that refuses a stream the peer opened. Returns false when more refusals than the
   * budget wait for a transport the peer does not drain: the caller closes the session.
   */
  refuse(streamID: number): boolean {
    if (this.#closed) return true;
    this.control(FrameType.WindowUpdate, Flag.RST, streamID, 0);
    this.#replies++;
    this.#pendingReplies++;
    return this.#pendingReplies <= this.#maxPendingReplies;
  }

  /** Sends what is queued, unless the transport is full. Runs at the end of every turn that queued a frame. */
  flush(): void {
    this.#scheduled = false;
    if (this.#closed) return;
    if (!this.#blocked) this.#writePong();
    this.#cut();
    this.#sendHeld();
  }

  /** The transport drained below its low watermark. */
  drain(): void {
    if (this.#closed) return;
    this.#blocked = false;
    this.flush();
    if (!this.#blocked) this.#onDrain();
  }

  /** Sends everything still queued, full transport or not (the GoAway before the close), and stops. */
  close(): void {
    if (this.#closed) return;
    this.#writePong();
    this.#cut();
    this.#blocked = false;
    this.#sendHeld(true);
    this.#closed = true;
    this.#release(this.#slab);
    this.#pool.dispose();
  }

  /** Drops what was queued and then sends `type` alone, before a close: the abusive peer gets a GoAway only. */
  closeWith(type: FrameType, flags: number, streamID: number, length: number): void {
    if (this.#closed) return;
    this.#drop();
    this.control(type, flags, streamID, length);
    this.close();
  }

  /** Drops what was queued and stops (the connection is gone). */
  abandon(): void {
    if (this.#closed) return;
    this.#drop();
    this.close();
  }

  #drop(): void {
    for (const held of this.#held.splice(0)) this.#sent(held.slab);
    this.#end = this.#start;
    this.#pong = undefined;
    this.#credits.clear();
    this.#openData = -1;
    this.#frames = 0;
    this.#dataFrames = 0;
  }

  #writePong(): void {
    if (this.#pong === undefined) return;
    const id = this.#pong;
    this.#pong = undefined;
    const at = this.#reserve(HEADER_SIZE);
    writeHeader(this.#slab!.bytes, at, FrameType.Ping, Flag.ACK, 0, id);
    this.#openData = -1;
  }

  /** Room for `size` more bytes in the message being filled; returns where they go. */
  #reserve(size: number): number {
    let slab = this.#slab;
    if (slab !== undefined && (this.#end + size > slab.bytes.length || this.#frames >= MAX_MESSAGE_FRAMES)) {
      // Full: this message leaves now, not at the end of the turn.
      this.#cut();
      this.#sendHeld();
      slab = this.#slab;
      if (slab !== undefined && this.#end + size > slab.bytes.length) {
        this.#slab = undefined;
        this.#release(slab);
        slab = undefined;
      }
    }
    if (slab === undefined) {
      slab = { bytes: this.#pool.take(), inFlight: 0 };
      this.#slab = slab;
      this.#start = 0;
      this.#end = 0;
    }
    const at = this.#end;
    this.#end += size;
    this.#frames++;
    return at;
  }

  /** Ends the message being filled: it waits among the held ones until the transport takes it. */
  #cut(): void {
    this.#openData = -1;
    this.#credits.clear();
    this.#frames = 0;
    this.#dataFrames = 0;
    const slab = this.#slab;
    if (slab === undefined || this.#end === this.#start) return;
    slab.inFlight++;
    this.#held.push({ slab, start: this.#start, end: this.#end, replies: this.#replies });
    this.#replies = 0;
    this.#start = this.#end;
  }

  #sendHeld(force = false): void {
    while (this.#held.length > 0 && (force || !this.#blocked)) {
      const held = this.#held.shift()!;
      this.#pendingReplies -= held.replies;
      const { slab } = held;
      if (!this.#sink.send(slab.bytes.subarray(held.start, held.end), () => this.#sent(slab))) this.#blocked = true;
    }
  }

  #sent(slab: Slab): void {
    slab.inFlight--;
    this.#release(slab);
  }

  /** Gives a slab back to the pool once no message cut from it is on its way and nothing more goes in. */
  #release(slab: Slab | undefined): void {
    if (slab === undefined || slab.inFlight > 0) return;
    if (slab === this.#slab) {
      if (this.#end !== this.#start && !this.#closed) return;
      this.#slab = undefined;
      this.#start = this.#end = 0;
    }
    this.#pool.give(slab.bytes);
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    this.#defer(() => this.flush());
  }
}

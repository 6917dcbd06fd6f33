/**
 * Binary WebSocket messages read straight off `ws`'s socket (RFC 6455 section 5), for Node.
 *
 * `ws` joins a message that spans several socket reads into a new buffer before it hands it over: every
 * byte a session receives was copied once more, and the buffers made V8 collect garbage more often
 * (each 32 MiB of young buffers costs a scavenge, in a small heap a mark-compact). yamux is a byte
 * stream, so a message need not be whole: this reader takes the binary frames out of the socket's
 * chunks itself, unmasks them in place, and hands over each chunk's part of a message as a view
 * (`more` until the message ends). Every other frame goes to `ws`'s own receiver unchanged, which keeps
 * doing what it did: pings and pongs, the close handshake, text messages, and refusing what breaks the
 * protocol.
 *
 * It sits in front of `ws`'s receiver (its `write`, which `ws`'s socket listener calls for every chunk)
 * and reads the limits from it (server or client, `maxPayload`). A frame it does not take as data is
 * passed on; a malformed one, or one that breaks the message sequence, is passed on with everything
 * after it, so `ws` fails the connection as it would have (1002 for a protocol error; a message over
 * `maxPayload` is announced to it as one, so it closes with 1009 before a byte of it is kept).
 */

import { createRequire } from "node:module";

/** The parts of `ws`'s Receiver this uses (ws 8). */
interface WsReceiver {
  write(chunk: Buffer): boolean;
  readonly _isServer: boolean;
  readonly _maxPayload: number;
  readonly _bufferedBytes: number;
  readonly _state: number;
  readonly _fragmented: number;
}

type Unmask = (bytes: Uint8Array, mask: Uint8Array) => void;

/** `bufferutil`'s native unmask (an optional dependency `ws` uses too), if installed. */
const nativeUnmask: Unmask | undefined = (() => {
  try {
    return (createRequire(import.meta.url)("bufferutil") as { unmask: Unmask }).unmask;
  } catch {
    return undefined;
  }
})();

function unmaskBytes(bytes: Uint8Array, mask: Uint8Array): void {
  if (nativeUnmask !== undefined && bytes.length >= 32) return nativeUnmask(bytes, mask);
  for (let i = 0; i < bytes.length; i++) bytes[i]! ^= mask[i & 3]!;
}

const Opcode = { Continuation: 0, Binary: 2 } as const;

/**
 * Puts a frame reader in front of `ws`'s receiver, delivering binary messages to `deliver`. Returns
 * false, changing nothing, when `ws` is not a `ws` WebSocket with a receiver between two frames.
 */
export function readBinaryFrames(ws: unknown, deliver: (chunk: Uint8Array, more: boolean) => void): boolean {
  const receiver = (ws as { _receiver?: WsReceiver } | null)?._receiver;
  if (
    receiver === undefined ||
    receiver === null ||
    typeof receiver.write !== "function" ||
    typeof receiver._isServer !== "boolean" ||
    receiver._bufferedBytes !== 0 ||
    receiver._state !== 0 ||
    receiver._fragmented !== 0
  ) {
    return false;
  }
  const reader = new FrameReader(receiver.write.bind(receiver), receiver._isServer, receiver._maxPayload, deliver);
  // ws's socket listener calls `receiver.write(chunk)` for every chunk it reads (and for what is left
  // when the socket closes): an own property ahead of the prototype's.
  (receiver as { write: (chunk: Buffer) => boolean }).write = (chunk) => reader.write(chunk);
  return true;
}

export class FrameReader {
  readonly #pass: (chunk: Buffer) => boolean;
  /** Frames come masked (a server's receiver) or not (a client's). */
  readonly #masked: boolean;
  readonly #maxPayload: number;
  readonly #deliver: (chunk: Uint8Array, more: boolean) => void;
  /** The frame header being read (at most 14 bytes), how much of it is here, and how long it is. */
  readonly #header = Buffer.alloc(14);
  #headerFill = 0;
  #headerLength = 2;
  /** Payload bytes of the current frame still to come; which kind of frame it is. */
  #remaining = 0;
  #kind: "data" | "passed" = "data";
  #fin = false;
  /** The current data frame's mask, rotated to where the next byte falls. */
  readonly #mask = Buffer.alloc(4);
  readonly #rotated = Buffer.alloc(4);
  #maskOffset = 0;
  /** A binary message is under way (its first frame had no FIN), and its bytes so far. */
  #inMessage = false;
  #messageBytes = 0;
  /** Everything now goes to `ws` (it refused a frame, or will). */
  #passAll = false;
  /** A close frame is being passed on; after it nothing is read (as `ws` reads nothing after one). */
  #closing = false;
  #closed = false;

  constructor(pass: (chunk: Buffer) => boolean, masked: boolean, maxPayload: number, deliver: (chunk: Uint8Array, more: boolean) => void) {
    this.#pass = pass;
    this.#masked = masked;
    this.#maxPayload = maxPayload;
    this.#deliver = deliver;
  }

  /** Takes one chunk read from the socket; returns what `ws`'s receiver would (false: pause the socket). */
  write(chunk: Buffer): boolean {
    let ok = true;
    let offset = 0;
    while (offset < chunk.length && !this.#closed) {
      if (this.#passAll) return this.#pass(offset === 0 ? chunk : chunk.subarray(offset)) && ok;
      if (this.#remaining > 0) {
        const n = Math.min(this.#remaining, chunk.length - offset);
        const piece = chunk.subarray(offset, offset + n);
        offset += n;
        this.#remaining -= n;
        if (this.#kind === "passed") ok = this.#pass(piece) && ok;
        else this.#data(piece);
        if (this.#remaining === 0 && this.#closing) this.#closed = true;
        continue;
      }
      // A header: 2 bytes, then as many more as they say.
      const n = Math.min(this.#headerLength - this.#headerFill, chunk.length - offset);
      chunk.copy(this.#header, this.#headerFill, offset, offset + n);
      this.#headerFill += n;
      offset += n;
      if (this.#headerFill === 2) this.#headerLength = headerLength(this.#header);
      if (this.#headerFill < this.#headerLength) continue;
      this.#frame();
    }
    return ok;
  }

  /** A whole header is in: decides what becomes of the frame. */
  #frame(): void {
    const header = this.#header;
    const headerBytes = this.#headerLength;
    this.#headerFill = 0;
    this.#headerLength = 2;
    const fin = (header[0]! & 0x80) !== 0;
    const reserved = header[0]! & 0x70;
    const opcode = header[0]! & 0x0f;
    const masked = (header[1]! & 0x80) !== 0;
    let length = header[1]! & 0x7f;
    if (length === 126) length = header.readUInt16BE(2);
    else if (length === 127) {
      const high = header.readUInt32BE(2);
      // Beyond 2^53 - 1: ws refuses it (1009).
      if (high > 0x1fffff) return this.#passFrom(header.subarray(0, headerBytes));
      length = high * 2 ** 32 + header.readUInt32BE(6);
    }
    if (opcode >= 8 && fin && length <= 125 && reserved === 0 && masked === this.#masked) {
      // A control frame (ping, pong, close), in a message or not: ws's, whole.
      this.#pass(Buffer.from(header.subarray(0, headerBytes)));
      this.#kind = "passed";
      this.#remaining = length;
      this.#closing = opcode === 8;
      this.#closed = this.#closing && length === 0;
      return;
    }
    const data = this.#inMessage ? opcode === Opcode.Continuation : opcode === Opcode.Binary;
    if (!data || reserved !== 0 || masked !== this.#masked) {
      // Text (ws reads it, and the transport refuses it), or a frame that breaks the protocol (ws
      // refuses it). In the middle of a binary message, ws knows nothing of it: a lone final
      // continuation frame first makes it fail the connection as a protocol error whatever follows.
      if (this.#inMessage) this.#pass(this.#synthetic(Opcode.Continuation, true, 0));
      return this.#passFrom(header.subarray(0, headerBytes));
    }
    if (this.#maxPayload > 0 && this.#messageBytes + length > this.#maxPayload) {
      // Too large: announced to ws as a message over its limit (an empty first fragment, then one past
      // the limit), which it refuses with 1009 before reading any of it.
      this.#pass(this.#synthetic(Opcode.Binary, false, 0));
      this.#pass(this.#synthetic(Opcode.Continuation, true, this.#maxPayload + 1));
      this.#passAll = true;
      return;
    }
    if (this.#masked) {
      header.copy(this.#mask, 0, headerBytes - 4, headerBytes);
      this.#maskOffset = 0;
    }
    this.#kind = "data";
    this.#fin = fin;
    this.#inMessage = !fin;
    this.#messageBytes = fin ? 0 : this.#messageBytes + length;
    this.#remaining = length;
    // An empty frame that ends a message still says so.
    if (length === 0 && fin) this.#deliver(new Uint8Array(0), false);
  }

  /** Part of a data frame's payload: unmasked in place (the chunk is this reader's), then handed over. */
  #data(piece: Buffer): void {
    if (this.#masked) {
      const mask = this.#maskOffset % 4 === 0 ? this.#mask : this.#rotate();
      unmaskBytes(piece, mask);
      this.#maskOffset += piece.length;
    }
    this.#deliver(piece, !(this.#fin && this.#remaining === 0));
  }

  #rotate(): Buffer {
    const shift = this.#maskOffset % 4;
    for (let i = 0; i < 4; i++) this.#rotated[i] = this.#mask[(i + shift) % 4]!;
    return this.#rotated;
  }

  /** Hands ws this frame's header and everything after it. */
  #passFrom(header: Uint8Array): void {
    this.#pass(Buffer.from(header));
    this.#passAll = true;
  }

  /** A frame header of ws's own making (masked as frames to this side are; a zero mask), no payload. */
  #synthetic(opcode: number, fin: boolean, length: number): Buffer {
    const bytes = Buffer.alloc(10 + (this.#masked ? 4 : 0));
    bytes[0] = (fin ? 0x80 : 0) | opcode;
    bytes[1] = (this.#masked ? 0x80 : 0) | 127;
    bytes.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    bytes.writeUInt32BE(length >>> 0, 6);
    return bytes;
  }
}

/** Header length from its first two bytes: 2, plus the extended length, plus the mask. */
function headerLength(header: Buffer): number {
  const length = header[1]! & 0x7f;
  return 2 + (length === 126 ? 2 : length === 127 ? 8 : 0) + (header[1]! & 0x80 ? 4 : 0);
}

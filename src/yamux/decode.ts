/**
 * Incremental frame decoder. The WebSocket under yamux is a byte stream: a message may hold part of a
 * frame (Go sends the 12-byte header and the body as two messages), one frame, or many. Feed the decoder
 * every chunk in order; it yields the same frames however the bytes were split.
 *
 * Bodies that lie whole inside one chunk are returned as views of it (no copy), also when their header
 * came in the chunk before; a body split across chunks is assembled into one buffer, the only copy the
 * decoder makes.
 */

import { ProtocolError } from "../errors.js";
import { FrameType, HEADER_SIZE, PROTO_VERSION, readHeader, type Frame, type FrameHeader } from "./frame.js";

const EMPTY = new Uint8Array(0);

export interface DecoderOptions {
  /**
   * Largest Data body accepted, in bytes. A peer never sends more than the receive window it was given,
   * so the session sets this to its largest window; anything larger is a protocol error, caught before
   * a byte of it is buffered. Default: 16 MiB.
   */
  maxDataLength?: number;
}

export class Decoder {
  readonly #maxDataLength: number;
  /** Header bytes received so far when a header is split across chunks. */
  readonly #headerBytes = new Uint8Array(HEADER_SIZE);
  #headerFill = 0;
  /** The header whose body is being assembled, with the body buffer and how much of it is filled. */
  #pending: FrameHeader | undefined;
  #body: Uint8Array = EMPTY;
  #bodyFill = 0;

  constructor(options: DecoderOptions = {}) {
    this.#maxDataLength = options.maxDataLength ?? 16 * 1024 * 1024;
  }

  /** Decodes `chunk`, yielding every frame it completes. Throws {@link ProtocolError} on a bad header. */
  *decode(chunk: Uint8Array): Generator<Frame> {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#pending !== undefined) {
        const bodyLength = this.#pending.length;
        if (this.#bodyFill === 0 && chunk.length - offset >= bodyLength) {
          // The header came alone (Go writes header and body separately) and the body is whole here: a view.
          const frame = { ...this.#pending, body: chunk.subarray(offset, offset + bodyLength) };
          offset += bodyLength;
          this.#pending = undefined;
          yield frame;
          continue;
        }
        // Continue a body split across chunks.
        if (this.#body.length === 0) this.#body = new Uint8Array(bodyLength);
        const n = Math.min(chunk.length - offset, this.#body.length - this.#bodyFill);
        this.#body.set(chunk.subarray(offset, offset + n), this.#bodyFill);
        this.#bodyFill += n;
        offset += n;
        if (this.#bodyFill === this.#body.length) {
          const frame = { ...this.#pending, body: this.#body };
          this.#pending = undefined;
          this.#body = EMPTY;
          yield frame;
        }
        continue;
      }

      let header: FrameHeader;
      if (this.#headerFill === 0 && chunk.length - offset >= HEADER_SIZE) {
        header = readHeader(chunk, offset);
        offset += HEADER_SIZE;
      } else {
        const n = Math.min(chunk.length - offset, HEADER_SIZE - this.#headerFill);
        this.#headerBytes.set(chunk.subarray(offset, offset + n), this.#headerFill);
        this.#headerFill += n;
        offset += n;
        if (this.#headerFill < HEADER_SIZE) return;
        this.#headerFill = 0;
        header = readHeader(this.#headerBytes, 0);
      }
      this.#check(header);

      const bodyLength = header.type === FrameType.Data ? header.length : 0;
      if (bodyLength === 0) {
        yield { ...header, body: EMPTY };
      } else if (chunk.length - offset >= bodyLength) {
        const body = chunk.subarray(offset, offset + bodyLength);
        offset += bodyLength;
        yield { ...header, body };
      } else {
        // The body goes on in later chunks; its buffer is allocated once some of it must be kept.
        this.#pending = header;
        this.#bodyFill = 0;
      }
    }
  }

  /** True when no partial frame is buffered (the byte stream ended on a frame boundary). */
  get idle(): boolean {
    return this.#pending === undefined && this.#headerFill === 0;
  }

  #check(header: FrameHeader): void {
    if (header.version !== PROTO_VERSION) {
      throw new ProtocolError(`unsupported version ${header.version}`);
    }
    if (header.type > FrameType.GoAway) {
      throw new ProtocolError(`unknown frame type ${header.type}`);
    }
    if (header.type === FrameType.Data && header.length > this.#maxDataLength) {
      throw new ProtocolError(`data frame of ${header.length} bytes exceeds the largest window (${this.#maxDataLength})`);
    }
  }
}

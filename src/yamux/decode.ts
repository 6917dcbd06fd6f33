/**
 * Incremental frame decoder. The WebSocket under yamux is a byte stream: a message may hold part of a
 * frame (Go sends the 12-byte header and the body as two messages), one frame, or many. Feed the decoder
 * every chunk in order; it yields the same frames however the bytes were split.
 *
 * Bodies that lie whole inside one chunk are returned as views of it (no copy), also when their header
 * came in the chunk before. A body split across chunks is assembled into one buffer, the only copy the
 * decoder makes, unless the caller takes plain Data bodies in pieces (`onPiece`): then each chunk's part
 * of it is handed over as a view as it arrives, and nothing is copied.
 */

import { ProtocolError } from "../errors.js";
import { EMPTY, FrameType, HEADER_SIZE, PROTO_VERSION, readFrame, type Frame, type FrameHeader } from "./frame.js";

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
  /** The Data frame whose body is still to come, the buffer assembling it, and how much of it is filled. */
  #pending: Frame | undefined;
  #body: Uint8Array = EMPTY;
  #bodyFill = 0;
  /** Body bytes of a discarded Data frame still to pass over. */
  #skip = 0;
  /** The plain Data frame whose body is being handed over in pieces, and how much of it is still to come. */
  #piecewise: Frame | undefined;
  #pieceLeft = 0;

  constructor(options: DecoderOptions = {}) {
    this.#maxDataLength = options.maxDataLength ?? 16 * 1024 * 1024;
  }

  /**
   * Decodes `chunk`, calling `onFrame` with every frame it completes, in order. When `onFrame` returns
   * false decoding stops right after that frame; the return value is how many bytes of `chunk` were
   * decoded (all of it unless stopped), so the caller may feed the rest later (the session does when a
   * turn's budget is spent) or drop it (the session ended). Throws {@link ProtocolError} on a bad
   * header, after passing on the frames before it.
   *
   * `onDataHeader`, when given, sees every Data header with a body as soon as the header is read, before
   * any of the body is kept: it may throw (a body beyond the stream's window), or return false to have
   * the body passed over unbuffered (a stream nobody will read); such a frame reaches `onFrame` at once,
   * with an empty body.
   *
   * `onPiece`, when given, takes the body of a plain Data frame (no flags) that does not lie whole in one
   * chunk: each chunk's part of it, as a view, as it arrives; the frame then reaches `onFrame` with an
   * empty body once its last piece was handed over. Returning false stops decoding after that piece.
   */
  feed(
    chunk: Uint8Array,
    onFrame: (frame: Frame) => boolean | void,
    onDataHeader?: (header: FrameHeader) => boolean,
    onPiece?: (header: FrameHeader, piece: Uint8Array) => boolean,
  ): number {
    let offset = 0;
    while (offset < chunk.length) {
      let frame: Frame;
      if (this.#skip > 0) {
        const n = Math.min(chunk.length - offset, this.#skip);
        this.#skip -= n;
        offset += n;
        continue;
      }
      if (this.#piecewise !== undefined) {
        frame = this.#piecewise;
        if (this.#pieceLeft > 0) {
          const n = Math.min(chunk.length - offset, this.#pieceLeft);
          this.#pieceLeft -= n;
          offset += n;
          // Stopped after the last piece, the frame itself comes first in the next call.
          if (!onPiece!(frame, chunk.subarray(offset - n, offset))) return offset;
          if (this.#pieceLeft > 0) return offset;
        }
        this.#piecewise = undefined;
        if (onFrame(frame) === false) return offset;
        continue;
      }
      if (this.#pending !== undefined) {
        frame = this.#pending;
        const length = frame.length;
        if (this.#bodyFill === 0 && chunk.length - offset >= length) {
          // The header came alone (Go writes header and body separately) and the body is whole here: a view.
          frame.body = chunk.subarray(offset, offset + length);
          offset += length;
        } else {
          // A body split across chunks: assembled, the decoder's one copy.
          if (this.#body.length === 0) this.#body = new Uint8Array(length);
          const n = Math.min(chunk.length - offset, length - this.#bodyFill);
          this.#body.set(chunk.subarray(offset, offset + n), this.#bodyFill);
          this.#bodyFill += n;
          offset += n;
          if (this.#bodyFill < length) return offset;
          frame.body = this.#body;
          this.#body = EMPTY;
          this.#bodyFill = 0;
        }
        this.#pending = undefined;
      } else {
        if (this.#headerFill === 0 && chunk.length - offset >= HEADER_SIZE) {
          frame = readFrame(chunk, offset);
          offset += HEADER_SIZE;
        } else {
          const n = Math.min(chunk.length - offset, HEADER_SIZE - this.#headerFill);
          this.#headerBytes.set(chunk.subarray(offset, offset + n), this.#headerFill);
          this.#headerFill += n;
          offset += n;
          if (this.#headerFill < HEADER_SIZE) return offset;
          this.#headerFill = 0;
          frame = readFrame(this.#headerBytes, 0);
        }
        this.#check(frame);
        if (frame.type === FrameType.Data && frame.length > 0) {
          if (onDataHeader !== undefined && !onDataHeader(frame)) {
            this.#skip = frame.length;
            if (onFrame(frame) === false) return offset;
            continue;
          }
          if (chunk.length - offset < frame.length) {
            if (onPiece !== undefined && frame.flags === 0) {
              // Handed over in pieces: this chunk's part now (if any), the rest as it comes.
              this.#piecewise = frame;
              this.#pieceLeft = frame.length;
              continue;
            }
            // The body goes on in later chunks; its buffer is allocated once some of it must be kept.
            this.#pending = frame;
            continue;
          }
          frame.body = chunk.subarray(offset, offset + frame.length);
          offset += frame.length;
        }
      }
      if (onFrame(frame) === false) return offset;
    }
    return offset;
  }

  /** True when no partial frame is buffered (the byte stream ended on a frame boundary). */
  get idle(): boolean {
    return this.#pending === undefined && this.#piecewise === undefined && this.#headerFill === 0 && this.#skip === 0;
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

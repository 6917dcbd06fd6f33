/**
 * The yamux frame header (hashicorp/yamux spec.md): 12 bytes, big endian.
 *
 * ```
 * | Version (8) | Type (8) | Flags (16) | StreamID (32) | Length (32) |
 * ```
 * `Length` is the body length for Data frames, the window delta for WindowUpdate, the opaque value for
 * Ping and the error code for GoAway; only Data frames carry a body.
 */

/** Protocol version; the only one defined. */
export const PROTO_VERSION = 0;

/** Size of a frame header in bytes. */
export const HEADER_SIZE = 12;

/** The body of every frame but a non-empty Data frame. */
export const EMPTY = new Uint8Array(0);

/** Initial receive window of every stream, in bytes (256 KiB), fixed by the spec. */
export const INITIAL_WINDOW = 256 * 1024;

/** Largest stream ID: IDs are 32-bit and never reused within a session. */
export const MAX_STREAM_ID = 0xffff_ffff;

export const FrameType = {
  Data: 0,
  WindowUpdate: 1,
  Ping: 2,
  GoAway: 3,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Header flags. They are bits and combine; SYN/ACK/FIN/RST may ride on Data and WindowUpdate frames. */
export const Flag = {
  SYN: 0x1,
  ACK: 0x2,
  FIN: 0x4,
  RST: 0x8,
} as const;
export type Flag = (typeof Flag)[keyof typeof Flag];

/** The `Length` of a GoAway frame. */
export const GoAwayCode = {
  Normal: 0,
  ProtocolError: 1,
  InternalError: 2,
} as const;
export type GoAwayCode = (typeof GoAwayCode)[keyof typeof GoAwayCode];

export interface FrameHeader {
  version: number;
  type: number;
  /** Bit set of {@link Flag}. */
  flags: number;
  streamID: number;
  /** Body length (Data), window delta (WindowUpdate), opaque value (Ping) or code (GoAway). */
  length: number;
}

/** A decoded frame. `body` is empty except for Data frames. */
export interface Frame extends FrameHeader {
  body: Uint8Array;
}

/** Encodes a header into 12 fresh bytes. */
export function encodeHeader(type: FrameType, flags: number, streamID: number, length: number): Uint8Array {
  const bytes = new Uint8Array(HEADER_SIZE);
  writeHeader(bytes, 0, type, flags, streamID, length);
  return bytes;
}

/** Writes a header into `into` at `offset` (12 bytes). Values are taken modulo their field width. */
export function writeHeader(
  into: Uint8Array,
  offset: number,
  type: FrameType,
  flags: number,
  streamID: number,
  length: number,
): void {
  // Byte by byte: a DataView per header costs more than the header (this runs once per frame).
  into[offset] = PROTO_VERSION;
  into[offset + 1] = type;
  into[offset + 2] = (flags >>> 8) & 0xff;
  into[offset + 3] = flags & 0xff;
  writeUint32(into, offset + 4, streamID);
  writeUint32(into, offset + 8, length);
}

/** Writes `value` big endian at `at` (4 bytes), modulo 2^32. */
export function writeUint32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 24;
  bytes[at + 1] = (value >>> 16) & 0xff;
  bytes[at + 2] = (value >>> 8) & 0xff;
  bytes[at + 3] = value & 0xff;
}

/** Reads the 12 header bytes at `offset`. The caller checks that they are there. */
export function readHeader(bytes: Uint8Array, offset: number): FrameHeader {
  const { body: _, ...header } = readFrame(bytes, offset);
  return header;
}

/** Reads the header at `offset` as a frame with an empty body (the decoder fills it in). */
export function readFrame(bytes: Uint8Array, offset: number): Frame {
  return {
    version: bytes[offset]!,
    type: bytes[offset + 1]!,
    flags: (bytes[offset + 2]! << 8) | bytes[offset + 3]!,
    streamID: readUint32(bytes, offset + 4),
    length: readUint32(bytes, offset + 8),
    body: EMPTY,
  };
}

function readUint32(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
}

/** True when every bit of `flag` is set in `flags`. */
export function hasFlag(flags: number, flag: Flag): boolean {
  return (flags & flag) === flag;
}

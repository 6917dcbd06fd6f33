/** Frame helpers for tests: decoding whole buffers, splitting messages, describing frames. */

import { Decoder } from "../../src/yamux/decode.js";
import { Flag, FrameType, HEADER_SIZE, readHeader, type Frame, type FrameHeader } from "../../src/yamux/frame.js";

/** Decodes `chunk` and returns every frame it completes; a protocol error is thrown after them, as `feed` does. */
export function decodeFrames(decoder: Decoder, chunk: Uint8Array): Frame[] {
  const frames: Frame[] = [];
  try {
    for (const frame of decodeEach(decoder, chunk)) frames.push(frame);
  } catch (error) {
    throw Object.assign(error as Error, { frames });
  }
  return frames;
}

/** The frames `chunk` completes, one by one; a protocol error is thrown after the last of them. */
export function* decodeEach(decoder: Decoder, chunk: Uint8Array): Generator<Frame> {
  const frames: Frame[] = [];
  let failure: unknown;
  try {
    decoder.feed(chunk, (frame) => {
      frames.push(frame);
    });
  } catch (error) {
    failure = error;
  }
  yield* frames;
  if (failure !== undefined) throw failure;
}

/** The frames of a message the outbox made (it never splits a frame across messages), each as its own bytes. */
export function splitFrames(message: Uint8Array): Uint8Array[] {
  const frames: Uint8Array[] = [];
  let offset = 0;
  while (offset < message.length) {
    const header = readHeader(message, offset);
    const size = HEADER_SIZE + (header.type === FrameType.Data ? header.length : 0);
    frames.push(message.subarray(offset, offset + size));
    offset += size;
  }
  if (offset !== message.length) throw new Error("a frame runs past the end of its message");
  return frames;
}

/** Human-readable frame, for test failures: `Data[SYN|FIN] id=3 len=5`. */
export function describeFrame(header: FrameHeader): string {
  const type = Object.keys(FrameType).find((k) => FrameType[k as keyof typeof FrameType] === header.type);
  const flags = Object.keys(Flag).filter((k) => header.flags & Flag[k as keyof typeof Flag]);
  return `${type ?? `type${header.type}`}[${flags.join("|")}] id=${header.streamID} len=${header.length}`;
}

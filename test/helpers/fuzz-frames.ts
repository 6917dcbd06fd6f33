/**
 * Random and mutated yamux byte streams (fast-check), sent by a hostile device to the measured target,
 * for test/fuzz.test.ts (short) and `npm run fuzz` (long).
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { ABUSIVE_CODE } from "./attacks.js";
import { F, GoAway, T, frame, hostileDevice } from "./hostile.js";
import type { Target, TargetEvent } from "./target.js";
import { within } from "./assert.js";

/** Stream IDs worth hitting: 0, the server's stream 1 (opened to every hostile device), near ones, any. */
const streamID = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(0, 1, 2, 3, 4, 5) },
  { weight: 1, arbitrary: fc.nat({ max: 0xffff_ffff }) },
);

const lengthValue = fc.oneof(
  { weight: 4, arbitrary: fc.nat({ max: 300_000 }) },
  { weight: 1, arbitrary: fc.constantFrom(0, 1, 0x7fff_ffff, 0xffff_ffff, 256 * 1024, 16 * 1024 * 1024) },
  { weight: 1, arbitrary: fc.nat({ max: 0xffff_ffff }) },
);

/** One frame, mostly well-formed, sometimes not (version, type, lying lengths). */
const anyFrame: fc.Arbitrary<Uint8Array> = fc
  .record({
    version: fc.oneof({ weight: 20, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat({ max: 255 }) }),
    type: fc.oneof({ weight: 20, arbitrary: fc.constantFrom(T.Data, T.WindowUpdate, T.Ping, T.GoAway) }, { weight: 1, arbitrary: fc.nat({ max: 255 }) }),
    flags: fc.oneof({ weight: 10, arbitrary: fc.nat({ max: 15 }) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff }) }),
    streamID,
    length: lengthValue,
    body: fc.uint8Array({ maxLength: 64 }),
    honest: fc.boolean(),
  })
  .map(({ version, type, flags, streamID, length, body, honest }) => {
    const isData = type === T.Data;
    const out = frame(type, flags, streamID, isData && honest ? body.length : length, isData ? body : undefined);
    out[0] = version;
    return out;
  });

/** A plausible conversation on stream 1 and friends, for mutation. */
function conversation(): Uint8Array[] {
  const hello = new TextEncoder().encode("hello over yamux");
  return [
    frame(T.WindowUpdate, F.ACK, 1, 0),
    frame(T.Data, 0, 1, hello.length, hello),
    frame(T.WindowUpdate, 0, 1, 4096),
    frame(T.Ping, F.SYN, 0, 7),
    frame(T.Ping, F.ACK, 0, 1),
    frame(T.WindowUpdate, F.SYN, 2, 0),
    frame(T.Data, F.SYN, 4, hello.length, hello),
    frame(T.Data, F.FIN, 1, 0),
    frame(T.WindowUpdate, F.RST, 2, 0),
    frame(T.GoAway, 0, 0, GoAway.Normal),
  ];
}

/** Byte edits: flip a byte, drop a range, duplicate a range, overwrite a 32-bit field. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant("drop" as const), at: fc.nat(), n: fc.integer({ min: 1, max: 24 }) }),
  fc.record({ kind: fc.constant("dup" as const), at: fc.nat(), n: fc.integer({ min: 1, max: 48 }), times: fc.integer({ min: 1, max: 50 }) }),
  fc.record({ kind: fc.constant("u32" as const), at: fc.nat(), value: fc.nat({ max: 0xffff_ffff }) }),
);

function mutate(bytes: Uint8Array, edits: Array<{ kind: string; at: number; value?: number; n?: number; times?: number }>): Uint8Array {
  let out = Buffer.from(bytes);
  for (const edit of edits) {
    if (out.length === 0) break;
    const at = edit.at % out.length;
    if (edit.kind === "set") out[at] = edit.value!;
    else if (edit.kind === "drop") out = Buffer.concat([out.subarray(0, at), out.subarray(at + edit.n!)]);
    else if (edit.kind === "dup") {
      const piece = out.subarray(at, at + edit.n!);
      out = Buffer.concat([out.subarray(0, at), ...Array<Buffer>(edit.times!).fill(piece), out.subarray(at)]);
    } else if (at + 4 <= out.length) out.writeUInt32BE(edit.value!, at);
  }
  return out;
}

/** Cuts `bytes` into messages at the given fractions (any split: the WebSocket is a byte stream). */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => Math.floor(c * bytes.length)))].filter((p) => p > 0 && p < bytes.length).sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.subarray(from, p));
    from = p;
  }
  return out.filter((m) => m.length > 0);
}

const cuts = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 });

/** Random frame sequences, cut anywhere into messages. */
export const randomMessages: fc.Arbitrary<Uint8Array[]> = fc
  .tuple(fc.array(anyFrame, { minLength: 1, maxLength: 60 }), cuts)
  .map(([frames, at]) => split(Buffer.concat(frames), at));

/** A plausible conversation, mutated, cut anywhere into messages. */
export const mutatedMessages: fc.Arbitrary<Uint8Array[]> = fc
  .tuple(fc.array(mutation, { minLength: 1, maxLength: 8 }), cuts)
  .map(([edits, at]) => split(mutate(Buffer.concat(conversation()), edits), at));

/** What one fuzz case did to the target, for the checks. */
export interface CaseOutcome {
  goAwayCodes: number[];
  closed: TargetEvent | undefined;
  faults: TargetEvent[];
}

/**
 * Sends `messages` from a new hostile device (which reads its socket), then closes it politely: once the
 * server reports the session's end, every message was handled.
 */
export async function runCase(target: Target, messages: Uint8Array[]): Promise<CaseOutcome> {
  const id = `fuzz-${Math.random().toString(36).slice(2, 10)}`;
  const from = target.events.length;
  const peer = await hostileDevice(`ws://127.0.0.1:${target.port}/`, id);
  try {
    await target.waitEvent((e) => e.event === "connect" && e.id === id, 10_000, "the fuzzing device's session");
    for (const message of messages) {
      if (peer.isClosed) break;
      await Promise.race([peer.send(message), peer.closed]);
    }
    if (!peer.isClosed) peer.ws.close(1000);
    const closed = await target.waitEvent(
      (e) => target.events.indexOf(e) >= from && e.event === "disconnect" && e.id === id,
      10_000,
      "the server ending the fuzzing device's session",
    );
    await within(peer.closed, 10_000, "the fuzzing device's WebSocket closing");
    const events = target.events.slice(from);
    return { goAwayCodes: [...peer.reader.goAwayCodes], closed, faults: events.filter((e) => e.event === "uncaught" || (e.event === "logged" && e.level === "error")) };
  } finally {
    peer.destroy();
  }
}

/** Reasons a fuzzed session may end with: the peer's fault or its leaving, never ours. */
const FAIR_ENDS = new Set(["ERR_PROTOCOL", "ERR_CONNECTION_LOST", ABUSIVE_CODE]);

export function checkCase(outcome: CaseOutcome, messages: Uint8Array[]): void {
  const what = `after ${messages.length} message(s) of ${messages.reduce((n, m) => n + m.length, 0)} bytes`;
  assert.deepEqual(outcome.faults, [], `${what}: uncaught or logged errors in the server`);
  assert.ok(!outcome.goAwayCodes.includes(GoAway.InternalError), `${what}: the server sent GoAway(internal error)`);
  const reason = outcome.closed?.event === "disconnect" ? outcome.closed.reason : undefined;
  assert.notEqual(reason?.goAwayCode, GoAway.InternalError, `${what}: the session ended with an internal error: ${reason?.message}`);
  assert.ok(reason?.code !== undefined && FAIR_ENDS.has(reason.code), `${what}: the session ended with ${JSON.stringify(reason)}`);
}

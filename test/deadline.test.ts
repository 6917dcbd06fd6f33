/**
 * The shared waiting and option-checking pieces every layer uses (src/deadline.ts, src/waiters.ts,
 * src/options.ts), on a fake clock: no test here sleeps.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { deadline, withTimeout } from "../src/deadline.js";
import { TimeoutError } from "../src/errors.js";
import { integerOption, msOption, numberOption } from "../src/options.js";
import { enqueue, rejectAll, resolveAll, type Waiter } from "../src/waiters.js";
import { FakeClock } from "./helpers/clock.js";

describe("deadline", () => {
  test("expires with a TimeoutError naming what and after how long, at the time on the clock", () => {
    const clock = new FakeClock();
    const errors: Error[] = [];
    const cancel = deadline("ping", 500, undefined, (e) => errors.push(e), clock);
    clock.advance(499);
    assert.equal(errors.length, 0);
    clock.advance(1);
    assert.equal(errors.length, 1);
    const [error] = errors;
    assert.ok(error instanceof TimeoutError);
    assert.equal(error.code, "ERR_TIMEOUT");
    assert.match(error.message, /ping.*500 ms/);
    cancel();
    assert.equal(clock.pending, 0);
  });

  test("expires with the signal's reason when it aborts first; cancel stops the timer and the listener", () => {
    const clock = new FakeClock();
    const controller = new AbortController();
    const errors: Error[] = [];
    const cancel = deadline("dial", 1000, controller.signal, (e) => (cancel(), errors.push(e)), clock);
    const reason = new Error("caller gave up");
    controller.abort(reason);
    assert.deepEqual(errors, [reason]);
    assert.equal(clock.pending, 0, "the timer went with the abort");
    clock.advance(5000);
    assert.deepEqual(errors, [reason], "expired once");

    const later = new AbortController();
    const stop = deadline("dial", 1000, later.signal, (e) => errors.push(e), clock);
    stop();
    later.abort();
    clock.advance(5000);
    assert.equal(errors.length, 1, "nothing after cancel");
  });

  test("withTimeout: the signal it hands over aborts on time, on the caller's abort, and not after it settled", async () => {
    const clock = new FakeClock();
    let handed: AbortSignal | undefined;
    const pending = withTimeout("op", 100, undefined, (signal) => {
      handed = signal;
      return new Promise<never>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
    }, clock);
    clock.advance(100);
    await assert.rejects(pending, (e: unknown) => e instanceof TimeoutError && /op/.test(e.message));
    assert.ok(handed?.aborted);

    const caller = new AbortController();
    const reason = new Error("stop");
    const aborted = withTimeout("op", 100, caller.signal, (signal) =>
      new Promise<never>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))), clock);
    caller.abort(reason);
    await assert.rejects(aborted, (e) => e === reason);

    assert.equal(await withTimeout("op", 100, new AbortController().signal, async () => 7, clock), 7);
    assert.equal(clock.pending, 0, "no timer left behind");
    await assert.rejects(withTimeout("op", 100, AbortSignal.abort(reason), async () => 7, clock), (e) => e === reason);
  });

  test("withTimeout settles by its deadline even when fn ignores the signal (a server's drain waited forever)", async () => {
    const clock = new FakeClock();
    const never = new Promise<never>(() => {});
    const pending = withTimeout("drain", 100, undefined, () => never, clock);
    clock.advance(100);
    await assert.rejects(pending, (e: unknown) => e instanceof TimeoutError && /drain/.test(e.message));
    const caller = new AbortController();
    const reason = new Error("stop");
    const aborted = withTimeout("drain", 100, caller.signal, () => never, clock);
    caller.abort(reason);
    await assert.rejects(aborted, (e) => e === reason);
    assert.equal(clock.pending, 0, "no timer left behind");
  });
});

describe("waiters", () => {
  test("settled in order; an aborted waiter leaves the queue and rejects with the reason", async () => {
    const waiters: Waiter<number>[] = [];
    const controller = new AbortController();
    const first = enqueue(waiters, undefined);
    const second = enqueue(waiters, controller.signal);
    const third = enqueue(waiters, undefined);
    const reason = new Error("no longer waiting");
    controller.abort(reason);
    await assert.rejects(second, (e) => e === reason);
    assert.equal(waiters.length, 2);
    waiters.shift()!.resolve(1);
    waiters.shift()!.resolve(3);
    assert.deepEqual(await Promise.all([first, third]), [1, 3]);
  });

  test("resolveAll and rejectAll empty the queue", async () => {
    const done: Waiter<void>[] = [];
    const a = enqueue(done, undefined);
    resolveAll(done);
    await a;
    assert.equal(done.length, 0);
    const failed: Waiter<string>[] = [];
    const b = enqueue(failed, new AbortController().signal);
    const error = new Error("closed");
    rejectAll(failed, error);
    await assert.rejects(b, (e) => e === error);
    assert.equal(failed.length, 0);
  });
});

describe("option checks", () => {
  test("return what is acceptable, throw a RangeError naming the option otherwise", () => {
    assert.equal(integerOption("maxStreams", 1), 1);
    assert.equal(integerOption("acceptBacklog", 0, 0), 0);
    assert.equal(msOption("handshakeTimeout", 0.5, 0), 0.5);
    assert.equal(msOption("timeout", 0, 0), 0, "0 where it turns the timer off");
    assert.equal(numberOption("reconnect.maxRetries", Infinity), Infinity);
    const bad: [() => unknown, RegExp][] = [
      [() => integerOption("maxStreams", 0), /maxStreams must be an integer of at least 1, not 0/],
      [() => integerOption("maxStreams", 1.5), /maxStreams/],
      [() => integerOption("maxStreams", Infinity), /maxStreams/],
      [() => integerOption("maxStreams", "2" as never), /maxStreams/],
      [() => msOption("handshakeTimeout", 0), /handshakeTimeout must be a number of ms of at least 1, not 0/],
      [() => msOption("drainTimeout", Infinity), /drainTimeout/],
      [() => msOption("timeout", NaN, 0), /timeout/],
      [() => msOption("cluster.ttl", 299, 300), /cluster\.ttl must be a number of ms of at least 300/],
      [() => numberOption("reconnect.multiplier", 0.5, 1), /reconnect\.multiplier must be a number of at least 1/],
      [() => numberOption("reconnect.initialDelay", NaN), /initialDelay/],
    ];
    for (const [call, message] of bad) assert.throws(call, (e: unknown) => e instanceof RangeError && message.test(e.message));
  });
});

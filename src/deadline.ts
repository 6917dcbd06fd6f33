/**
 * Bounded waiting: an operation ends when its caller's signal aborts or when its time is up, whichever
 * comes first. One implementation for every timeout in the SDK and the server (pings, handshakes, dials,
 * forwarded calls), on an injected {@link Clock} so tests advance time instead of sleeping.
 */

import { TimeoutError, abortReason } from "./errors.js";
import { systemClock, type Clock } from "./yamux/clock.js";

/**
 * Calls `expire` with `signal`'s reason when it aborts, or with a {@link TimeoutError} naming `what` after
 * `ms` milliseconds (finite: runtimes fire an Infinity timer at once). Returns a function that stops
 * both: call it when the operation settles, `expire` included, so `expire` runs once. An already aborted
 * `signal` is the caller's to check first.
 */
export function deadline(
  what: string,
  ms: number,
  signal: AbortSignal | undefined,
  expire: (error: Error) => void,
  clock: Clock = systemClock,
): () => void {
  const onAbort = () => expire(abortReason(signal!));
  const timer = clock.setTimeout(() => expire(new TimeoutError(what, ms)), ms);
  signal?.addEventListener("abort", onAbort, { once: true });
  return () => {
    clock.clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  };
}

/**
 * Runs `fn` with a signal that aborts when `signal` does or after `ms` (a {@link TimeoutError} naming
 * `what`); rejects at once if `signal` is already aborted. The returned promise settles by the deadline
 * whether or not `fn` heeds its signal: a caller is never held past it (a `fn` that ignores the signal
 * goes on in the background, its outcome dropped).
 */
export function withTimeout<T>(
  what: string,
  ms: number,
  signal: AbortSignal | undefined,
  fn: (signal: AbortSignal) => Promise<T>,
  clock?: Clock,
): Promise<T> {
  if (signal?.aborted) return Promise.reject(abortReason(signal));
  const controller = new AbortController();
  return new Promise<T>((resolve, reject) => {
    const cancel = deadline(
      what,
      ms,
      signal,
      (error) => {
        cancel();
        controller.abort(error);
        reject(error);
      },
      clock,
    );
    fn(controller.signal).then(
      (value) => {
        cancel();
        resolve(value);
      },
      (error: unknown) => {
        cancel();
        reject(error);
      },
    );
  });
}

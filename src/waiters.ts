/**
 * Queues of callers waiting for something (a stream to accept, a free open slot, the next session):
 * each waiter is settled by whoever has what it waits for, or taken off its queue when its signal aborts.
 */

import { abortReason } from "./errors.js";

/** One caller waiting: settle it with `resolve` or `reject` after taking it off its queue. */
export interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

/**
 * Queues a waiter on `waiters` and returns its promise. Aborting `signal` takes the waiter off the queue
 * and rejects with the signal's reason; an already aborted `signal` is the caller's to check first.
 */
export function enqueue<T>(waiters: Waiter<T>[], signal: AbortSignal | undefined): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      const index = waiters.indexOf(waiter);
      if (index >= 0) waiters.splice(index, 1);
      reject(abortReason(signal!));
    };
    const waiter: Waiter<T> = {
      resolve(value) {
        signal?.removeEventListener("abort", onAbort);
        resolve(value);
      },
      reject(error) {
        signal?.removeEventListener("abort", onAbort);
        reject(error);
      },
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    waiters.push(waiter);
  });
}

/** Empties `waiters`, resolving each. */
export function resolveAll(waiters: Waiter<void>[]): void {
  for (const waiter of waiters.splice(0)) waiter.resolve();
}

/** Empties `waiters`, rejecting each with `error`. */
export function rejectAll<T>(waiters: Waiter<T>[], error: Error): void {
  for (const waiter of waiters.splice(0)) waiter.reject(error);
}

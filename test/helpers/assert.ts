/**
 * What every suite checks with: bounded waits that fail naming what did not happen (`within`, `until`),
 * error codes (`hasCode`), digests (`sha256Hex`). One of each, for unit, end-to-end and bench code alike.
 */

import { createHash } from "node:crypto";
import { WslisError } from "../../src/errors.js";

/** Settles like `promise`, or rejects with an error naming `what` when it has not settled within `ms` milliseconds. */
export async function within<T>(promise: Promise<T>, ms: number, what = "operation"): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits for `predicate` (sync or async) to hold, asking every `every` ms, for at most `ms`; then rejects
 * naming `what`.
 */
export async function until(predicate: () => boolean | Promise<boolean>, ms = 2000, what = "condition", every = 5): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`${what}: did not hold within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, every));
  }
}

/** Lets `n` event-loop turns go by (setImmediate): queued I/O and promise chains run; no time passes on a fake clock. */
export async function turns(n = 1): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** A predicate for `assert.throws`/`assert.rejects`: a {@link WslisError} with this `code`. */
export const hasCode = (code: string) => (error: unknown) => error instanceof WslisError && error.code === code;

/** SHA-256 of `data`, in hex. */
export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

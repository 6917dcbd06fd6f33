/** A clock tests move by hand: timers fire only in `advance()`, in order of their due time. */

import type { Clock } from "../../src/yamux/clock.js";

export class FakeClock implements Clock {
  #now = 0;
  #nextID = 1;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();
  /** `defer` runs work after the current turn; here, as Node does, with setImmediate. */
  readonly defer = (fn: () => void): void => void setImmediate(fn);

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#nextID++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Timers pending now. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, running every timer that falls due, in order (timers they set included). */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.#timers) if (entry[1].at <= end && (next === undefined || entry[1].at < next[1].at)) next = entry;
      if (next === undefined) break;
      this.#timers.delete(next[0]);
      this.#now = next[1].at;
      next[1].fn();
    }
    this.#now = end;
  }
}

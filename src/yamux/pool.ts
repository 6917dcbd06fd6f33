/**
 * Reusable message buffers for the outbox. A busy connection copies its frames into the same few
 * buffers over and over (steady traffic allocates nothing); a connection that stays idle for `idleTime`
 * lets them go, so a server holding many thousands of quiet connections holds no buffer for them.
 *
 * Time comes from the injected {@link Clock}: tests advance it instead of sleeping.
 */

import type { Clock } from "./clock.js";

export interface BufferPoolOptions {
  /** Size of every buffer, in bytes. */
  size: number;
  /** Free buffers kept for reuse; more are dropped when returned. */
  keep: number;
  /** How long the pool must go unused, in ms, before its free buffers are let go. Default 1000. */
  idleTime?: number;
  /** Allocates a buffer. Default `new Uint8Array(size)`; Node passes `Buffer.allocUnsafe`. */
  allocate?: (size: number) => Uint8Array;
  clock: Clock;
}

export class BufferPool {
  readonly size: number;
  readonly #keep: number;
  readonly #idleTime: number;
  readonly #allocate: (size: number) => Uint8Array;
  readonly #clock: Clock;
  readonly #free: Uint8Array[] = [];
  /** Buffers handed out and not yet given back. */
  #out = 0;
  /** The pool was used since the release timer was armed. */
  #used = false;
  #timer: unknown;
  #allocations = 0;
  #disposed = false;

  constructor(options: BufferPoolOptions) {
    this.size = options.size;
    this.#keep = options.keep;
    this.#idleTime = options.idleTime ?? 1000;
    this.#allocate = options.allocate ?? ((size) => new Uint8Array(size));
    this.#clock = options.clock;
  }

  /** Buffers allocated so far (tests and metrics). */
  get allocations(): number {
    return this.#allocations;
  }

  /** Free buffers held now. */
  get held(): number {
    return this.#free.length;
  }

  /** A buffer of `size` bytes, reused when one is free. Its contents are stale: write before reading. */
  take(): Uint8Array {
    this.#used = true;
    this.#out++;
    const buffer = this.#free.pop();
    if (buffer !== undefined) return buffer;
    this.#allocations++;
    return this.#allocate(this.size);
  }

  /** Gives a buffer back once nothing refers to its bytes any more. */
  give(buffer: Uint8Array): void {
    this.#out--;
    if (this.#disposed) return;
    if (this.#free.length < this.#keep) this.#free.push(buffer);
    if (this.#out === 0) this.#releaseWhenIdle();
  }

  /** Drops the free buffers and stops the timer (the connection closed). */
  dispose(): void {
    this.#disposed = true;
    this.#free.length = 0;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Lets the free buffers go if the pool is still unused `idleTime` from now: not at once, or a stream
   * that pauses between writes would allocate a buffer per burst.
   */
  #releaseWhenIdle(): void {
    if (this.#timer !== undefined) return;
    this.#used = false;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#out > 0) return; // busy: the next idle moment looks again
      if (this.#used) {
        // Idle now, but not for the whole time: a transfer pausing between writes keeps its buffers.
        this.#releaseWhenIdle();
        return;
      }
      this.#free.length = 0;
    }, this.#idleTime);
    // Node: this timer alone must not keep the process alive.
    (this.#timer as { unref?: () => void } | undefined)?.unref?.();
  }
}

/**
 * Receive-window auto-tuning, as one pure piece (no clock, no I/O: times come in as arguments).
 *
 * As QUIC and libp2p's yamux do it: when a stream's consumer reads a whole window within four round
 * trips, the window, not the reader, limits the stream, so the window doubles, up to the maximum. A later
 * stream of the same session whose reader proves as fast goes straight to the largest window the
 * session reached (the server asks for one bulk stream after another; each should not climb again from
 * 256 KiB). A stream nobody reads, or reads slowly, never grows.
 *
 * The round trip is the session's minimum over its recent pings, not the latest one: a full send
 * buffer inflates a ping's round trip, and growth should not get easier because of it. A JavaScript
 * receiver answers no faster than its event loop turns, so the round trip counts as at least
 * `minRoundTrip` (2 ms): on loopback an idle ping measures less than a busy turn.
 */

export interface WindowTunerOptions {
  /** Largest window, in bytes. */
  maxWindow: number;
  /** Floor of the round trip used, in ms. Default 2. */
  minRoundTrip?: number;
  /** Round-trip samples the minimum is taken over (older ones are forgotten). Default 8. */
  samples?: number;
}

export class WindowTuner {
  readonly #maxWindow: number;
  readonly #minRoundTrip: number;
  readonly #samples: number[] = [];
  readonly #keep: number;
  /** The largest window a stream of the session was given so far. */
  #reached = 0;

  constructor(options: WindowTunerOptions) {
    this.#maxWindow = options.maxWindow;
    this.#minRoundTrip = options.minRoundTrip ?? 2;
    this.#keep = options.samples ?? 8;
  }

  /** A measured round trip, in ms. */
  observeRtt(ms: number): void {
    this.#samples.push(ms);
    if (this.#samples.length > this.#keep) this.#samples.shift();
  }

  /** The round trip growth is judged against, in ms (min over recent samples, floored); 0 while unknown. */
  get rtt(): number {
    if (this.#samples.length === 0) return 0;
    return Math.max(Math.min(...this.#samples), this.#minRoundTrip);
  }

  /** The largest window given so far, in bytes. */
  get reached(): number {
    return this.#reached;
  }

  /**
   * A stream's consumer read a whole window of `current` bytes in `elapsed` ms: the window it gets now
   * (`current` when it does not grow).
   */
  next(current: number, elapsed: number): number {
    const rtt = this.rtt;
    if (current >= this.#maxWindow || rtt === 0 || elapsed >= 4 * rtt) return current;
    const grown = Math.min(Math.max(current * 2, this.#reached), this.#maxWindow);
    this.#reached = Math.max(this.#reached, grown);
    return grown;
  }
}

/**
 * Receive-window auto-tuning, as one pure piece (no clock, no I/O: times come in as arguments).
 *
 * As QUIC and libp2p's yamux do it: when a stream's consumer reads a whole window within four round
 * trips, the window, not the reader, limits the stream, so the window doubles, up to the maximum. A later
 * stream of the same session whose reader proves as fast goes straight to the largest window the
 * session reached (the server asks for one bulk stream after another; each should not climb again from
 * 256 KiB). A stream nobody reads, or reads slowly, never grows.
 *
 * That largest window is not kept forever: it halves for every `decayTime` during which no stream read
 * a whole window within four round trips (no stream needed it), so after a burst the session's later
 * streams climb again from their first window, one doubling per window read fast. A stream keeps the
 * window it was given for its life: the peer may have been told about it already (credit cannot be
 * taken back), so what one stream can hold is bounded by `maxWindow`, not by this.
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
  /**
   * How long the largest window reached stays on offer to later streams once no stream needs it, in ms:
   * after each such period it halves. Default 10 000.
   */
  decayTime?: number;
}

export class WindowTuner {
  #maxWindow: number;
  readonly #minRoundTrip: number;
  readonly #samples: number[] = [];
  readonly #keep: number;
  readonly #decayTime: number;
  /** The largest window a stream of the session was given, halved for every `decayTime` nobody needed it. */
  #reached = 0;
  /** When a stream last read a whole window within four round trips (ms; the decay counts from here). */
  #neededAt = 0;

  constructor(options: WindowTunerOptions) {
    this.#maxWindow = options.maxWindow;
    this.#minRoundTrip = options.minRoundTrip ?? 2;
    this.#keep = options.samples ?? 8;
    this.#decayTime = options.decayTime ?? 10_000;
  }

  /** Largest window, in bytes: may be raised once the session learns the peer can use more (never lowered). */
  get maxWindow(): number {
    return this.#maxWindow;
  }

  set maxWindow(bytes: number) {
    this.#maxWindow = Math.max(this.#maxWindow, bytes);
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

  /** The window a later stream that proves fast goes straight to at time `now` (ms), in bytes; 0: none. */
  reached(now: number): number {
    this.#decay(now);
    return this.#reached;
  }

  /**
   * A stream's consumer read a whole window of `current` bytes in `elapsed` ms, ending at `now` (ms): the
   * window it gets now (`current` when it does not grow).
   */
  next(current: number, elapsed: number, now: number): number {
    this.#decay(now);
    const rtt = this.rtt;
    if (rtt === 0 || elapsed >= 4 * rtt) return current;
    // The window, not the reader, limited this stream: windows this large are still needed.
    this.#neededAt = now;
    const grown = current >= this.#maxWindow ? current : Math.min(Math.max(current * 2, this.#reached), this.#maxWindow);
    this.#reached = Math.max(this.#reached, grown);
    return grown;
  }

  /** Halves the window on offer for every whole `decayTime` since a stream last needed it. */
  #decay(now: number): void {
    const periods = Math.floor((now - this.#neededAt) / this.#decayTime);
    if (periods <= 0 || this.#reached === 0) return;
    this.#reached = Math.floor(this.#reached / 2 ** Math.min(periods, 52));
    this.#neededAt += periods * this.#decayTime;
  }
}

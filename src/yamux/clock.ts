/**
 * Time, injected: every timer and timestamp below an entry point comes from one {@link Clock}, so tests
 * advance time instead of sleeping and pages can supply timers that survive throttling.
 */

/** Timers, a monotonic clock, and a way to run work once the current turn is done. */
export interface Clock {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** Milliseconds from a monotonic clock (ping round trips, window tuning). */
  now(): number;
  /**
   * Runs `fn` after the work of the current turn, so what the turn wrote leaves as one WebSocket
   * message: `setImmediate` in Node, a `MessageChannel` task in browsers (not throttled in hidden tabs,
   * unlike timers). Default: a microtask.
   */
  defer?(fn: () => void): void;
}

/** The runtime's own timers; `defer` runs a microtask. Entry points pass a better `defer` for their runtime. */
export const systemClock: Clock = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
  now: () => performance.now(),
  defer: (fn) => queueMicrotask(fn),
};

let channelDefer: ((fn: () => void) => void) | undefined;

/**
 * A `defer` on a `MessageChannel`: a task after the current one, like `setImmediate`, in every browser.
 * One channel per realm, made on first use and shared by every caller (the outbox's flush, reverse HTTP's
 * look-ahead): what they defer in the same task runs in one task, for one `postMessage`. In Chromium each
 * is a mojo message (measured: postMessage was 5% of a page's CPU samples serving reverse-HTTP GETs, with
 * two channels posting once per request each).
 */
export function messageChannelDefer(): (fn: () => void) => void {
  return (channelDefer ??= channel());
}

function channel(): (fn: () => void) => void {
  let port: MessagePort | undefined;
  const queue: (() => void)[] = [];
  return (fn) => {
    if (port === undefined) {
      const channel = new MessageChannel();
      channel.port1.onmessage = () => {
        for (const run of queue.splice(0)) run();
      };
      port = channel.port2;
    }
    if (queue.push(fn) === 1) port.postMessage(undefined);
  };
}

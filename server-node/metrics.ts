/**
 * Server metrics: low-cardinality counters and gauges (no per-device labels), as a plain snapshot that
 * maps one-to-one onto Prometheus series (see the README).
 */

import { WslisError } from "../src/errors.js";
import type { Transport } from "../src/yamux/session.js";

/** Upper bounds of the ping RTT histogram buckets, in ms. */
export const RTT_BUCKETS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000] as const;

export interface MetricsSnapshot {
  /** Devices connected now (one per id). */
  devices: number;
  /** Streams open now, over all sessions. */
  streams: number;
  /** Sessions established since start. */
  sessionsOpened: number;
  /** Sessions ended since start, by reason (the error code, e.g. ERR_CONNECTION_LOST). */
  sessionsClosed: Record<string, number>;
  /** Upgrades refused before the WebSocket, by reason: unauthorized, origin, capacity. */
  refused: Record<string, number>;
  /** Bytes received from and sent to devices (yamux frames, WebSocket framing excluded). */
  bytesIn: number;
  bytesOut: number;
  /** Ping round-trip times (keepalives and ping()): cumulative counts per upper bound in ms, plus sum and count. */
  rtt: { buckets: Record<string, number>; sum: number; count: number };
}

export class Metrics {
  #sessionsOpened = 0;
  readonly #sessionsClosed: Record<string, number> = {};
  readonly #refused: Record<string, number> = {};
  #bytesIn = 0;
  #bytesOut = 0;
  readonly #rttCounts: number[] = RTT_BUCKETS.map(() => 0);
  #rttOverflow = 0;
  #rttSum = 0;

  opened(): void {
    this.#sessionsOpened++;
  }

  closed(reason: Error): void {
    const code = reason instanceof WslisError ? reason.code : "ERR_UNKNOWN";
    this.#sessionsClosed[code] = (this.#sessionsClosed[code] ?? 0) + 1;
  }

  refused(why: "unauthorized" | "origin" | "capacity"): void {
    this.#refused[why] = (this.#refused[why] ?? 0) + 1;
  }

  rtt(ms: number): void {
    this.#rttSum += ms;
    const index = RTT_BUCKETS.findIndex((bound) => ms <= bound);
    if (index < 0) this.#rttOverflow++;
    else this.#rttCounts[index]!++;
  }

  /** Wraps a transport so its bytes are counted. */
  count(transport: Transport): Transport {
    return {
      start: (sink) =>
        transport.start({
          ...sink,
          data: (chunk, more) => {
            this.#bytesIn += chunk.length;
            sink.data(chunk, more);
          },
        }),
      send: (message, onSent) => {
        this.#bytesOut += message.length;
        return transport.send(message, onSent);
      },
      close: (reason) => transport.close(reason),
      allocate: transport.allocate?.bind(transport),
      highWaterMark: transport.highWaterMark,
    };
  }

  snapshot(gauges: { devices: number; streams: number }): MetricsSnapshot {
    const buckets: Record<string, number> = {};
    let cumulative = 0;
    RTT_BUCKETS.forEach((bound, i) => {
      cumulative += this.#rttCounts[i]!;
      buckets[String(bound)] = cumulative;
    });
    buckets["+Inf"] = cumulative + this.#rttOverflow;
    return {
      ...gauges,
      sessionsOpened: this.#sessionsOpened,
      sessionsClosed: { ...this.#sessionsClosed },
      refused: { ...this.#refused },
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
      rtt: { buckets, sum: this.#rttSum, count: cumulative + this.#rttOverflow },
    };
  }
}

/** Renders a snapshot in the Prometheus text format (metric names prefixed `wslis_`). */
export function toPrometheus(m: MetricsSnapshot): string {
  const lines: string[] = [];
  const metric = (name: string, type: string, help: string, samples: [string, number][]) => {
    lines.push(`# HELP wslis_${name} ${help}`, `# TYPE wslis_${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`wslis_${name}${labels} ${value}`);
  };
  const labelled = (label: string, values: Record<string, number>): [string, number][] =>
    Object.entries(values).map(([key, value]) => [`{${label}="${key}"}`, value]);
  metric("devices", "gauge", "Devices connected now.", [["", m.devices]]);
  metric("streams", "gauge", "Streams open now.", [["", m.streams]]);
  metric("sessions_opened_total", "counter", "Sessions established.", [["", m.sessionsOpened]]);
  metric("sessions_closed_total", "counter", "Sessions ended, by reason.", labelled("reason", m.sessionsClosed));
  metric("upgrades_refused_total", "counter", "Upgrades refused before the WebSocket, by reason.", labelled("reason", m.refused));
  metric("bytes_received_total", "counter", "yamux bytes received from devices.", [["", m.bytesIn]]);
  metric("bytes_sent_total", "counter", "yamux bytes sent to devices.", [["", m.bytesOut]]);
  metric(
    "ping_rtt_milliseconds",
    "histogram",
    "Ping round-trip times.",
    [
      ...Object.entries(m.rtt.buckets).map(([le, n]): [string, number] => [`_bucket{le="${le}"}`, n]),
      ["_sum", m.rtt.sum],
      ["_count", m.rtt.count],
    ],
  );
  return lines.join("\n") + "\n";
}

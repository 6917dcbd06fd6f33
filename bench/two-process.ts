/**
 * One-stream throughput with the receiver in its own process, as deployed (a device is never in the
 * server's process): the server side sends 64 KiB writes over ws on 127.0.0.1 to bench/receiver-child.ts,
 * which counts and answers the total. A run is timed from the first byte written to that answer.
 * Raw ws against wslis; the numbers of both ends no longer share one core.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import WebSocket, { WebSocketServer } from "ws";
import { listenAndServe, type Dialer } from "./lib.js";
import { median } from "./format.js";
import { roundOrder, sendRaw, writeAll } from "./throughput.js";

const MiB = 1024 * 1024;
const child = fileURLToPath(new URL("./receiver-child.ts", import.meta.url));

export interface TwoProcessRow {
  implementation: string;
  mbps: number;
  min: number;
  max: number;
  ratio: number;
  bytesPerRun: number;
  runs: number;
}

function receiver(kind: string, url: string): ChildProcess {
  return spawn(process.execPath, ["--import", "tsx", child, kind, url], { stdio: ["ignore", "inherit", "inherit"] });
}

interface Harness {
  run(): Promise<void>;
  close(): Promise<void>;
}

async function rawWs(bytes: number): Promise<Harness> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
  await once(wss, "listening");
  const proc = receiver("raw ws", `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
  const [ws] = (await once(wss, "connection")) as [WebSocket];
  return {
    async run() {
      const answer = once(ws, "message");
      ws.send(String(bytes));
      await sendRaw(ws, bytes);
      const [data] = (await answer) as [Buffer];
      if (Number(String(data)) !== bytes) throw new Error(`the receiver counted ${String(data)} bytes`);
    },
    async close() {
      proc.kill("SIGTERM");
      await new Promise((resolve) => wss.close(resolve));
    },
  };
}

async function wslis(bytes: number): Promise<Harness> {
  let onDevice!: (dialer: Dialer) => void;
  const connected = new Promise<Dialer>((resolve) => (onDevice = resolve));
  const server = await listenAndServe("127.0.0.1:0", (dialer) => onDevice(dialer), {
    logger: { warn() {}, error: console.error },
    drainTimeout: 100,
  });
  const proc = receiver("wslis", `ws://127.0.0.1:${server.address().port}`);
  const dialer = await connected;
  return {
    async run() {
      const conn = await dialer.dial();
      await writeAll(conn.writable, bytes);
      const counted = Number(await new Response(conn.readable).text());
      if (counted !== bytes) throw new Error(`the device counted ${counted} bytes`);
    },
    async close() {
      proc.kill("SIGTERM");
      await server.close();
    },
  };
}

/** Raw ws and wslis, interleaved round by round (see bench/throughput.ts), one row each. */
export async function benchTwoProcess(options: { bytes?: number; runs?: number; log?: (line: string) => void } = {}): Promise<TwoProcessRow[]> {
  const bytes = options.bytes ?? 64 * MiB;
  const runs = options.runs ?? 21;
  const variants = [
    ["raw ws", rawWs],
    ["wslis", wslis],
  ] as const;
  const harnesses: Harness[] = [];
  try {
    for (const [, setup] of variants) {
      const harness = await setup(bytes);
      harnesses.push(harness);
      await harness.run(); // warm-up
    }
    const rates: number[][] = variants.map(() => []);
    for (let round = 0; round < runs; round++) {
      for (const k of roundOrder(variants.length, round)) {
        const [name] = variants[k]!;
        const start = performance.now();
        await harnesses[k]!.run();
        rates[k]!.push(bytes / 1e6 / ((performance.now() - start) / 1000));
        options.log?.(`${name} (two processes): round ${round + 1}/${runs}: ${rates[k]!.at(-1)!.toFixed(1)} MB/s`);
      }
    }
    return variants.map(([name], k) => {
      const sorted = [...rates[k]!].sort((a, b) => a - b);
      return {
        implementation: name,
        mbps: median(sorted),
        min: sorted[0]!,
        max: sorted.at(-1)!,
        ratio: median(rates[k]!.map((rate, round) => rate / rates[0]![round]!)),
        bytesPerRun: bytes,
        runs,
      };
    });
  } finally {
    for (const harness of harnesses) await harness.close();
  }
}

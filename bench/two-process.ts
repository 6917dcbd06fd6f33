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
import { listenAndServe, type Dialer } from "../server-node/index.js";
import { sendRaw, slice } from "./throughput.js";

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

/** Times `runs` runs (after one warm-up) and returns MB/s of each. */
async function timeRuns(runs: number, bytes: number, run: () => Promise<void>): Promise<number[]> {
  await run();
  const rates: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await run();
    rates.push(bytes / 1e6 / ((performance.now() - start) / 1000));
  }
  return rates.sort((a, b) => a - b);
}

async function rawWs(bytes: number, runs: number): Promise<number[]> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
  await once(wss, "listening");
  const proc = receiver("raw ws", `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
  try {
    const [ws] = (await once(wss, "connection")) as [WebSocket];
    return await timeRuns(runs, bytes, async () => {
      const answer = once(ws, "message");
      ws.send(String(bytes));
      await sendRaw(ws, bytes);
      const [data] = (await answer) as [Buffer];
      if (Number(String(data)) !== bytes) throw new Error(`the receiver counted ${String(data)} bytes`);
    });
  } finally {
    proc.kill("SIGTERM");
    await new Promise((resolve) => wss.close(resolve));
  }
}

async function wslis(bytes: number, runs: number): Promise<number[]> {
  let onDevice!: (dialer: Dialer) => void;
  const connected = new Promise<Dialer>((resolve) => (onDevice = resolve));
  const server = await listenAndServe("127.0.0.1:0", (dialer) => onDevice(dialer), {
    logger: { warn() {}, error: console.error },
    drainTimeout: 100,
  });
  const proc = receiver("wslis", `ws://127.0.0.1:${server.address().port}`);
  try {
    const dialer = await connected;
    return await timeRuns(runs, bytes, async () => {
      const conn = await dialer.dial();
      const writer = conn.writable.getWriter();
      for (let sent = 0; sent < bytes; ) {
        const chunk = slice(bytes - sent);
        sent += chunk.length;
        await writer.ready;
        void writer.write(chunk).catch(() => {}); // a failure surfaces in close()
      }
      await writer.close();
      const counted = Number(await new Response(conn.readable).text());
      if (counted !== bytes) throw new Error(`the device counted ${counted} bytes`);
    });
  } finally {
    proc.kill("SIGTERM");
    await server.close();
  }
}

export async function benchTwoProcess(options: { bytes?: number; runs?: number; log?: (line: string) => void } = {}): Promise<TwoProcessRow[]> {
  const bytes = options.bytes ?? 64 * MiB;
  const runs = options.runs ?? 5;
  const rows: TwoProcessRow[] = [];
  for (const [name, fn] of [["raw ws", rawWs], ["wslis", wslis]] as const) {
    const rates = await fn(bytes, runs);
    options.log?.(`${name} (two processes): ${rates.map((r) => r.toFixed(0)).join(", ")} MB/s`);
    rows.push({
      implementation: name,
      mbps: rates[Math.floor(rates.length / 2)]!,
      min: rates[0]!,
      max: rates.at(-1)!,
      ratio: 0,
      bytesPerRun: bytes,
      runs,
    });
  }
  for (const row of rows) row.ratio = row.mbps / rows[0]!.mbps;
  return rows;
}

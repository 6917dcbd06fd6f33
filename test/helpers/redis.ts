/**
 * A real redis-server for a test: on a free port, no persistence, stopped by PID. Debian's
 * `redis-server` (`npm run setup` installs it); without it the test fails and says how to get it.
 */

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { killProcess } from "./child.js";

export interface RedisProcess {
  port: number;
  url: string;
  process: ChildProcess;
  /** SIGKILL and wait for the exit. */
  stop(): Promise<void>;
  /** SIGSTOP / SIGCONT: Redis hangs with its data, as a frozen host would. */
  pause(): void;
  resume(): void;
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/** Starts redis-server on `port` (default: a free one) and waits until it accepts connections. */
export async function startRedis(port?: number): Promise<RedisProcess> {
  if (spawnSync("redis-server", ["--version"]).error) {
    throw new Error("redis-server is not installed: run `npm run setup` (or apt-get install redis-server)");
  }
  const p = port ?? (await freePort());
  const child = spawn("redis-server", ["--port", String(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(child);
  child.on("exit", () => live.delete(child));
  await new Promise<void>((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => reject(new Error(`redis-server did not start within 5 s:\n${output}`)), 5000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("Ready to accept connections")) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}:\n${output}`));
    });
  });
  child.stdout!.resume();
  child.stderr!.resume();
  return {
    port: p,
    url: `redis://127.0.0.1:${p}`,
    process: child,
    stop: () => killProcess(child),
    pause() {
      child.kill("SIGSTOP");
    },
    resume() {
      child.kill("SIGCONT");
    },
  };
}

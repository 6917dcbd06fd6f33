/**
 * Runs test/fixtures/hostile-target.ts in a child process (its memory and event loop measured alone) and
 * talks to it over IPC. See that file for what the child runs.
 */

import { fork, type ChildProcess } from "node:child_process";
import { resolve } from "node:path";

const root = resolve(import.meta.dirname, "../..");
const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

export interface ErrorInfo {
  name: string;
  code?: string;
  goAwayCode?: number;
  message: string;
}

export type TargetEvent =
  | { event: "ready"; port: number }
  | { event: "connect"; id: string }
  | { event: "goaway"; id: string }
  | { event: "disconnect"; id: string; reason: ErrorInfo }
  | { event: "probe-disconnect"; reason: ErrorInfo }
  | { event: "uncaught"; error: ErrorInfo; stack?: string }
  | { event: "logged"; level: "warn" | "error"; message: string; details?: ErrorInfo[] };

export interface Stats {
  wallMs: number;
  cpuMs: number;
  /** CPU of the target's main thread during the attack, in ms. */
  threadCpuMs: number;
  /** The most CPU (ms) the target's main thread spent in one turn of its event loop. */
  cpuTurnMaxMs: number;
  probe: { count: number; p50: number; p99: number; max: number; failures: string[]; failed: number };
  eld: { max: number; p99: number; mean: number };
  memory: {
    base: { rss: number; heapUsed: number; external: number; arrayBuffers: number };
    rssPeak: number;
    rssPeakGrowth: number;
    heapPeakGrowth: number;
    rssNow: number;
    heapAfterGcGrowth: number;
    rssAfterGc: number;
  };
}

export interface Target {
  readonly child: ChildProcess;
  /** The well-behaved (server mode: the attacked) server's port. */
  readonly port: number;
  readonly events: TargetEvent[];
  /** How the child ended, once it did (a crash shows here: signal SIGABRT for an exhausted heap). */
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  reset(): Promise<Stats["memory"]["base"]>;
  stats(): Promise<Stats>;
  metrics(): Promise<{ bytesIn: number; bytesOut: number; devices: number; streams: number; sessionsClosed: Record<string, number> }>;
  /** Resolves with the first event (seen or future) `match` accepts; rejects after `ms` or when the child dies. */
  waitEvent<E extends TargetEvent>(match: (e: TargetEvent) => e is E, ms: number, what: string): Promise<E>;
  waitEvent(match: (e: TargetEvent) => boolean, ms: number, what: string): Promise<TargetEvent>;
  /** Events the child reported that a hostile peer must never cause: uncaught errors, logged errors. */
  faults(): TargetEvent[];
  stop(): Promise<void>;
}

/**
 * Starts the target. `heapMiB` caps the child's V8 heap, so a flood that piles memory up ends the child
 * (and the test) instead of the machine.
 */
export async function startTarget(mode: "server" | "device", args: string[] = [], heapMiB = 1024): Promise<Target> {
  const child = fork(resolve(root, "test/fixtures/hostile-target.ts"), [mode, ...args], {
    cwd: root,
    execArgv: ["--expose-gc", `--max-old-space-size=${heapMiB}`, "--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const events: TargetEvent[] = [];
  const watchers = new Set<() => void>();
  const replies = new Map<number, (result: unknown) => void>();
  let nextId = 1;
  const target: Target = {
    child,
    port: 0,
    events,
    exit: undefined,
    reset: () => request("reset") as Promise<Stats["memory"]["base"]>,
    stats: () => request("stats") as Promise<Stats>,
    metrics: () => request("metrics") as ReturnType<Target["metrics"]>,
    waitEvent(match: (e: TargetEvent) => boolean, ms: number, what: string): Promise<any> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = events.find(match);
          if (found) done(() => resolve(found));
          else if (target.exit) done(() => reject(new Error(`${what}: the target died (${JSON.stringify(target.exit)})`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`${what}: not within ${ms} ms`))), ms);
        const done = (fn: () => void) => {
          clearTimeout(timer);
          watchers.delete(check);
          fn();
        };
        watchers.add(check);
        check();
      });
    },
    faults: () => events.filter((e) => e.event === "uncaught" || (e.event === "logged" && e.level === "error")),
    async stop() {
      if (target.exit) return;
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      try {
        await Promise.race([request("close"), exited]);
      } catch {
        child.kill("SIGKILL");
      }
      await exited;
      clearTimeout(timer);
    },
  };
  child.on("message", (message: { rid?: number; result?: unknown } & Partial<TargetEvent>) => {
    if (message.rid !== undefined) {
      replies.get(message.rid)?.(message.result);
      replies.delete(message.rid);
      return;
    }
    events.push(message as TargetEvent);
    for (const watch of [...watchers]) watch();
  });
  child.on("exit", (code, signal) => {
    live.delete(child);
    target.exit = { code, signal };
    for (const watch of [...watchers]) watch();
    for (const [, reply] of replies) reply(undefined);
  });
  live.add(child);

  /** Asks the child; a child that does not answer within 60 s (its loop blocked) is an error. */
  function request(cmd: string): Promise<unknown> {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      if (target.exit || !child.connected) return reject(new Error(`the target is gone (${JSON.stringify(target.exit)}); cannot ${cmd}`));
      const timer = setTimeout(() => {
        replies.delete(id);
        reject(new Error(`the target did not answer "${cmd}" within 60 s`));
      }, 60_000);
      replies.set(id, (result) => {
        clearTimeout(timer);
        if (result === undefined) reject(new Error(`the target died before answering "${cmd}" (${JSON.stringify(target.exit)})`));
        else resolve(result);
      });
      child.send({ rid: id, cmd });
    });
  }

  const ready = await target.waitEvent((e): e is Extract<TargetEvent, { event: "ready" }> => e.event === "ready", 30_000, "target start");
  (target as { port: number }).port = ready.port;
  return target;
}

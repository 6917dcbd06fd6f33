/**
 * Child processes for tests: a fixture script run with tsx, its stdout as lines, killed at the end.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { resolve } from "node:path";
import { createInterface } from "node:readline";

export interface Child {
  process: ChildProcess;
  /** Every stdout line so far. */
  lines: string[];
  /** Waits for a line matching `pattern` (already seen or future), at most `ms`. */
  waitFor(pattern: RegExp, ms?: number): Promise<RegExpMatchArray>;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
}

const root = resolve(import.meta.dirname, "../..");
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

export function startFixture(name: string, args: string[]): Child {
  const child = spawn(process.execPath, ["--import", "tsx", resolve(root, "test/fixtures", name), ...args], {
    cwd: root,
    stdio: ["ignore", "pipe", "inherit"],
  });
  live.add(child);
  child.on("exit", () => live.delete(child));
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on("line", (line) => {
    lines.push(line);
    for (const wake of waiters) wake();
  });
  return {
    process: child,
    lines,
    waitFor(pattern, ms = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          for (const line of lines) {
            const match = pattern.exec(line);
            if (match) {
              clearTimeout(timer);
              waiters.delete(check);
              resolve(match);
              return;
            }
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`${name} printed no line matching ${pattern} within ${ms} ms (saw ${lines.length} lines)`));
        }, ms);
        waiters.add(check);
        check();
      });
    },
    kill: () => killProcess(child),
  };
}

/** SIGKILL (after SIGCONT, so a stopped process dies too); resolves once it exited. */
export function killProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGCONT");
    child.kill("SIGKILL");
  });
}

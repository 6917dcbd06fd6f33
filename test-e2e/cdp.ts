/**
 * Chromium driven over the raw DevTools protocol, for the one thing Playwright will not do: let a page
 * be hidden. Playwright keeps every page "visible and active"; a tab opened behind another one here is
 * really hidden (document.visibilityState === "hidden") and its timers are really throttled.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { CHROMIUM_ARGS, chromiumPath } from "./harness.js";

export interface CdpBrowser {
  /** Opens a tab on `url`; `background` opens it behind the current one (hidden). Returns a session id. */
  open(url: string, options?: { background?: boolean }): Promise<string>;
  /** Evaluates an expression (awaiting a promise) in a tab; returns its JSON value. */
  evaluate<T = unknown>(session: string, expression: string): Promise<T>;
  close(): Promise<void>;
}

export async function launchCdp(extraArgs: string[] = []): Promise<CdpBrowser> {
  const profile = mkdtempSync(join(tmpdir(), "wslis-cdp-"));
  const child: ChildProcess = spawn(
    chromiumPath(),
    [...CHROMIUM_ARGS, ...extraArgs, `--user-data-dir=${profile}`, "--remote-debugging-port=0", "about:blank"],
    { stdio: "ignore" },
  );
  const portFile = join(profile, "DevToolsActivePort");
  // Chromium writes the file in two steps: it may exist before it holds "port\npath".
  const devtools = (): RegExpExecArray | null =>
    existsSync(portFile) ? /^(\d+)\n(\S+)/.exec(readFileSync(portFile, "utf8")) : null;
  let found = devtools();
  for (let i = 0; i < 200 && !found; i++) {
    await new Promise((r) => setTimeout(r, 50));
    found = devtools();
  }
  if (!found) {
    child.kill("SIGKILL");
    throw new Error("Chromium did not open its DevTools port within 10 s");
  }
  const [, port, path] = found;
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });

  let nextId = 0;
  const pending = new Map<number, { resolve(v: any): void; reject(e: Error): void }>();
  ws.on("message", (data) => {
    const message = JSON.parse(String(data));
    const waiter = pending.get(message.id);
    if (!waiter) return;
    pending.delete(message.id);
    if (message.error) waiter.reject(new Error(`CDP: ${message.error.message}`));
    else waiter.resolve(message.result);
  });
  const send = (method: string, params: object = {}, sessionId?: string, ms = 30_000): Promise<any> =>
    new Promise((resolve, reject) => {
      const id = ++nextId;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`CDP ${method} got no answer within ${ms} ms`));
      }, ms);
      pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      ws.send(JSON.stringify({ id, method, params, sessionId }));
    });

  return {
    async open(url, options = {}) {
      const { targetId } = await send("Target.createTarget", { url, background: options.background ?? false });
      const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
      // Wait for the document (not the initial about:blank) to load before anyone evaluates in it.
      const loaded = `location.href === ${JSON.stringify(url)} && document.readyState === "complete"`;
      for (let i = 0; ; i++) {
        const state = await send("Runtime.evaluate", { expression: loaded, returnByValue: true }, sessionId);
        if (state.result?.value === true) break;
        if (i === 200) throw new Error(`${url} did not load within 10 s`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return sessionId as string;
    },
    async evaluate(session, expression) {
      const result = await send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true }, session, 200_000);
      if (result.exceptionDetails) {
        throw new Error(`page threw: ${result.exceptionDetails.exception?.description ?? result.exceptionDetails.text}`);
      }
      return result.result?.value;
    },
    async close() {
      for (const waiter of pending.values()) waiter.reject(new Error("browser closed"));
      pending.clear();
      ws.close();
      if (child.exitCode === null) {
        await new Promise<void>((resolve) => {
          child.once("exit", () => resolve());
          child.kill("SIGKILL");
        });
      }
      try {
        rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
      } catch {
        // A profile file still being flushed by the dying browser: a stray temp dir, not a failure.
      }
    },
  };
}

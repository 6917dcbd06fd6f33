/**
 * The examples stay runnable: examples/dashboard/server.js runs as a user runs it (its own process,
 * importing "wslis/server", which resolves to this package's build), and its page runs in real Chromium:
 * the page shows that it is connected, and the server prints the status the page answered.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { resolve } from "node:path";
import { test } from "node:test";
import { assertBuilt, launchChromium } from "./harness.js";

const root = resolve(import.meta.dirname, "..");

test("examples/dashboard: the page connects, shows it, and answers the server's GET /status", async () => {
  assertBuilt();
  const child = spawn(process.execPath, ["examples/dashboard/server.js"], {
    cwd: root,
    env: { ...process.env, PORT: "0", STATUS_EVERY: "300" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = once(child, "exit");

  /** Resolves with the first match of `pattern` in the server's output; fails after `ms` or if it exits. */
  function printed(pattern: RegExp, ms = 10_000): Promise<RegExpExecArray> {
    return new Promise((resolvePromise, reject) => {
      const check = () => {
        const match = pattern.exec(stdout);
        if (match) finish(() => resolvePromise(match));
      };
      const fail = () =>
        finish(() => reject(new Error(`the server did not print ${pattern}; stdout:\n${stdout}\nstderr:\n${stderr}`)));
      const timer = setTimeout(fail, ms);
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        child.stdout.off("data", check);
        child.off("exit", fail);
        settle();
      };
      child.stdout.on("data", check);
      child.on("exit", fail);
      check();
    });
  }

  const browser = await launchChromium();
  try {
    const url = (await printed(/dashboard: (http:\/\/127\.0\.0\.1:\d+\/\?device=lobby)/))[1]!;
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(String(error)));
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById("status")?.dataset.state === "connected", null, {
      timeout: 10_000,
    });
    assert.equal(await page.textContent("#status"), "connected");
    assert.equal(await page.textContent("#device"), "lobby");

    const status = JSON.parse((await printed(/^lobby status: (.*)$/m))[1]!);
    assert.equal(status.deviceId, "lobby");
    assert.equal(status.link, "connected");
    assert.equal(typeof status.uptime, "number");
    assert.match(status.userAgent, /Chrom/);
    // And it keeps answering: the server asks again every STATUS_EVERY ms.
    await printed(/^lobby status: .*\n(?:.*\n)*lobby status: /m);

    // The server going away shows on the page.
    child.kill("SIGTERM");
    await page.waitForFunction(() => document.getElementById("status")?.dataset.state === "reconnecting", null, {
      timeout: 10_000,
    });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    if (!child.killed) child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }
  assert.equal(child.exitCode, 0, `the server exits cleanly on SIGTERM; stderr:\n${stderr}`);
});

/**
 * What importing wslis costs a process before it does anything. Node loads its fetch implementation
 * (undici) the first time a global `Request`, `Response` or `Headers` is named; a device entry that did so
 * at import (a `class … extends Request` at module level) made a receiving Node device run a full garbage
 * collection every few megabytes and halved its throughput (issue 10). The device entries must leave it
 * unloaded until reverse HTTP actually builds a request.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { test } from "node:test";

const root = resolve(import.meta.dirname, "..");

/** Imports `entry` in a fresh Node process and returns the internal modules it loaded whose name has `undici`. */
function undiciAfterImport(entry: string): Promise<string[]> {
  const script = `await import(${JSON.stringify(resolve(root, entry))});
process.stdout.write(JSON.stringify(process.moduleLoadList.filter((name) => name.includes("undici"))));`;
  return new Promise((resolvePromise, reject) => {
    execFile(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: root, timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${error.message}\n${stderr}`));
      else resolvePromise(JSON.parse(stdout) as string[]);
    });
  });
}

for (const entry of ["src/index.ts", "server-node/device.ts"]) {
  test(`importing ${entry} does not load Node's fetch implementation`, async () => {
    assert.deepEqual(await undiciAfterImport(entry), []);
  });
}

/** Imports `entry` in a fresh Node process and returns the npm packages it loaded. */
function packagesAfterImport(entry: string): Promise<string[]> {
  const script = `await import(${JSON.stringify(resolve(root, entry))});
const { createRequire } = await import("node:module");
const names = Object.keys(createRequire(import.meta.url).cache).map((path) => /node_modules[\\\\/](@[^\\\\/]+[\\\\/][^\\\\/]+|[^\\\\/]+)/.exec(path)?.[1]);
process.stdout.write(JSON.stringify([...new Set(names.filter(Boolean))]));`;
  return new Promise((resolvePromise, reject) => {
    execFile(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: root, timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${error.message}\n${stderr}`));
      else resolvePromise(JSON.parse(stdout) as string[]);
    });
  });
}

test("importing the server entry loads neither the Redis client nor undici until a server has `cluster`", async () => {
  const loaded = await packagesAfterImport("server-node/index.ts");
  assert.ok(loaded.includes("ws"), `the check sees packages the entry does load (saw ${loaded.join(", ")})`);
  assert.deepEqual(loaded.filter((name) => name === "ioredis" || name === "undici"), []);
});

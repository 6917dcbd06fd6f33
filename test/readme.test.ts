/**
 * The README's examples are code that runs: the block marked `<!-- example: node -->` is run as it is
 * written, with "wslis" and "wslis/server" resolved to this package's built Node entries.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { test } from "node:test";

const root = resolve(import.meta.dirname, "..");

function example(name: string): string {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const match = new RegExp(`<!-- example: ${name} -->\\s*\`\`\`js\\n([\\s\\S]*?)\`\`\``).exec(readme);
  assert.ok(match, `README has no "${name}" example`);
  return match[1]!;
}

/** Runs a README example with "wslis", "wslis/server" (and "jose") resolved; resolves with its stdout. */
async function run(name: string): Promise<string> {
  const entry = (path: string) => pathToFileURL(join(root, path)).href;
  const code = example(name)
    .replace(`from "wslis/server"`, `from "${entry("dist/node/server-node/index.js")}"`)
    .replace(`from "wslis"`, `from "${entry("dist/node/server-node/device.js")}"`)
    .replace(`from "jose"`, `from "${import.meta.resolve("jose")}"`);
  assert.doesNotMatch(code, /from "(wslis|jose)/, "every import was resolved");
  const dir = mkdtempSync(join(tmpdir(), "wslis-readme-"));
  try {
    const file = join(dir, "example.mjs");
    writeFileSync(file, code);
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [file], { timeout: 15_000 }, (error, out, err) =>
        error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out),
      );
    });
    return stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("the README's Node example runs and prints what the README says", async () => {
  assert.equal((await run("node")).trim(), "123 answered: hola");
});

test("the README's auth example: the id comes from the signed token, a device without one is refused", async () => {
  const lines = (await run("auth")).trim().split("\n");
  // The server logs nothing: no warning, since authorize is given.
  assert.deepEqual(lines, ["kiosk-7 connected from lobby", "registered: kiosk-7", "without a token: ERR_UNAUTHORIZED"]);
});

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

test("the README's Node example runs and prints what the README says", async () => {
  const entry = (path: string) => pathToFileURL(join(root, path)).href;
  const code = example("node")
    .replace(`from "wslis/server"`, `from "${entry("dist/node/server-node/index.js")}"`)
    .replace(`from "wslis"`, `from "${entry("dist/node/server-node/device.js")}"`);
  assert.doesNotMatch(code, /from "wslis/, "every wslis import was resolved");
  const dir = mkdtempSync(join(tmpdir(), "wslis-readme-"));
  try {
    const file = join(dir, "example.mjs");
    writeFileSync(file, code);
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [file], { timeout: 15_000 }, (error, out, err) =>
        error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out),
      );
    });
    assert.equal(stdout.trim(), "123 answered: hola");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

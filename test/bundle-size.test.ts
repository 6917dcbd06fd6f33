/**
 * Bundle-size budget of the device SDK as shipped: the gzip size of the BUILT browser bundles.
 *
 * Budgets are the size measured when the budget was set plus about 20%. A failure means the browser build
 * grew: either trim it, or raise the budget here on purpose, in the same commit that explains why.
 */

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { gzipSync } from "node:zlib";

const root = resolve(import.meta.dirname, "..");

/**
 * Gzip budgets in bytes (level 9). Measured on 2025-11-25 with reverse HTTP (src/http) in the bundle:
 * 13 199 (ESM) and 12 112 (IIFE); without it they were 8 236 and 7 516.
 */
const budgets = {
  "dist/wslis.js": 16_000,
  "dist/wslis.iife.js": 14_500,
} as const;

for (const [file, budget] of Object.entries(budgets)) {
  test(`${file} stays within ${budget} bytes gzipped`, () => {
    const path = join(root, file);
    assert.ok(existsSync(path), `${file} is missing: run \`npm run build\` first (npm test does)`);
    const raw = readFileSync(path);
    const gzipped = gzipSync(raw, { level: 9 }).length;
    assert.ok(raw.length > 1000, `${file} is suspiciously small (${raw.length} bytes): is the build broken?`);
    assert.ok(
      gzipped <= budget,
      `${file} is ${gzipped} bytes gzipped (${raw.length} raw), over its budget of ${budget}: ` +
        `trim the browser build, or raise the budget in test/bundle-size.test.ts and say why`,
    );
  });
}

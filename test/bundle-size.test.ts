/**
 * Bundle-size budgets of the device SDK: the gzip size of the BUILT browser bundles, and min+gzip of
 * tree-shaken apps that import only part of it (built by bench/bundle.ts with the project's Vite).
 *
 * Budgets are the size measured when the budget was set plus about 20%. A failure means the browser build
 * grew: either trim it, or raise the budget here on purpose, in the same commit that explains why.
 */

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import { ENTRIES, measureBundle } from "../bench/bundle.js";

const root = resolve(import.meta.dirname, "..");

/**
 * Gzip budgets in bytes (level 9). Measured on 2025-11-25 with reverse HTTP (src/http) in the bundle:
 * 13 199 (ESM) and 12 112 (IIFE); without it they were 8 236 and 7 516. Raised on 2026-12-02, when the
 * browser got the same outbox as Node (frames joined and packed into messages, control replies budgeted,
 * a buffer pool, a MessageChannel flush): 16 153 and 14 729. Raised again the same day for the Web Lock
 * that keeps one connection per kiosk across tabs (and typed listener events): 17 009 (ESM) and 15 737
 * (IIFE); and for the listener's state machine and injected platform (one clock, `online`, base URL):
 * 17 568 (ESM). Raised again for the receive budget per turn (a backlog kept across turns, the
 * transport paused meanwhile), the hello ping that lets a wslis peer's windows grow past 1 MiB, and the
 * 1009 close read as an abusive peer: 18 476 (ESM), 16 766 (IIFE), 12 525 (`dialAndListen` app). Raised
 * for `serveHttp`'s `maxPendingConns` (a peer opening streams and sending nothing held up to 4096 of them
 * on a device, 50 MB): 18 827 (ESM), 17 061 (IIFE). Raised on 2026-12-03 for messages handed over in
 * parts (Node's frame reader: the decoder takes a plain Data body in pieces, the session counts a
 * message's frames across its parts, the transport takes a reader): 19 192 (ESM), 17 371 (IIFE). These
 * budgets only stop silent growth: the target for a tree-shaken `dialAndListen` app is 6 KB
 * (see `npm run bench`), far below today's size.
 */
const budgets = {
  "dist/wslis.js": 19_400,
  "dist/wslis.iife.js": 17_600,
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

/**
 * Min+gzip budgets (level 9) of tree-shaken apps, in bytes: what an app importing only these names ships.
 * Measured on 2026-12-02: 9 556-9 565 (`dialAndListen`) and 15 006 (`dialAndListen` + `serveHttp`); the
 * same day, with the outbox in the browser build (as for the budgets above): 10 951 and 16 483; with the
 * Web Lock and the listener's state machine and injected platform: 11 679 (`dialAndListen`); with the
 * receive budget per turn and the hello ping: 12 525 (`dialAndListen`); with those and a writable's
 * abort that resets a stream whose write waits for credit: 18 134 (`dialAndListen` + `serveHttp`); on
 * 2026-12-03, 12 690 measured against the budget of 12 700, then 12 708 once a write waiting for the
 * transport to drain fails with the session's reason when the session ends (it left a rejection nobody
 * handled, which ends a Node process); the same day, with messages handed over in parts (see above):
 * 13 054 and 18 823. The budgets add about 1-3%. The goals are 6 KiB and 10 KiB
 * (printed by `npm run bench`).
 */
const appBudgets: Record<string, number> = {
  "wslis: dialAndListen": 13_200,
  "wslis: dialAndListen + serveHttp": 19_100,
};

test("tree-shaken apps stay within their min+gzip budgets, and serveHttp costs only those who import it", async () => {
  const sizes = new Map<string, number>();
  for (const [name, budget] of Object.entries(appBudgets)) {
    const entry = ENTRIES.find((e) => e.name === name);
    assert.ok(entry, `bench/bundle.ts has no entry named ${name}`);
    const { gzipped, minified } = await measureBundle(entry);
    sizes.set(name, gzipped);
    assert.ok(minified > 5000, `${name} is suspiciously small (${minified} bytes minified): did tree shaking drop the SDK?`);
    assert.ok(
      gzipped <= budget,
      `${name} is ${gzipped} bytes min+gzip (${minified} minified), over its budget of ${budget}: ` +
        `trim it, or raise the budget in test/bundle-size.test.ts and say why`,
    );
  }
  const alone = sizes.get("wslis: dialAndListen")!;
  const withHttp = sizes.get("wslis: dialAndListen + serveHttp")!;
  assert.ok(withHttp - alone > 2000, `serveHttp adds only ${withHttp - alone} bytes: is it bundled into every app?`);
});

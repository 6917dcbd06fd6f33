/**
 * Random and mutated yamux byte streams from hostile devices against a default server in a child
 * process, with a well-behaved device probed throughout: nothing uncaught, never GoAway(internal error),
 * memory flat over all cases. `npm run fuzz` runs many more cases.
 */

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import fc from "fast-check";
import { BOUNDS, mb } from "./helpers/attacks.js";
import { checkCase, mutatedMessages, randomMessages, runCase } from "./helpers/fuzz-frames.js";
import { startTarget, type Target } from "./helpers/target.js";

const RUNS = 40;

let target: Target;
before(async () => {
  target = await startTarget("server");
  await target.reset();
});
after(() => target?.stop());

test(`random frame sequences, ${RUNS} devices`, async () => {
  await fc.assert(
    fc.asyncProperty(randomMessages, async (messages) => checkCase(await runCase(target, messages), messages)),
    { numRuns: RUNS, seed: 0x77f0 },
  );
});

test(`mutated conversations, ${RUNS} devices`, async () => {
  await fc.assert(
    fc.asyncProperty(mutatedMessages, async (messages) => checkCase(await runCase(target, messages), messages)),
    { numRuns: RUNS, seed: 0x77f1 },
  );
});

test("after every case: memory flat, the well-behaved device served throughout", async () => {
  const stats = await target.stats();
  assert.ok(stats.probe.count > 0, "the well-behaved device was never answered");
  assert.equal(stats.probe.failed, 0, `probes failed: ${stats.probe.failures.join("; ")}`);
  assert.ok(
    stats.memory.heapAfterGcGrowth <= BOUNDS.heapAfterGcGrowth,
    `the server held ${mb(stats.memory.heapAfterGcGrowth)} MB more after GC than before the fuzzing`,
  );
  assert.ok(stats.memory.rssPeakGrowth <= BOUNDS.rssPeakGrowth, `the server's RSS peaked ${mb(stats.memory.rssPeakGrowth)} MB above its start`);
  assert.deepEqual(target.faults(), []);
});

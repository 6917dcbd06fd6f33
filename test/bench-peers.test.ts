/**
 * The bench's Go comparison keeps working: the Go bench peer (test/go/bench) and its wslis twin
 * (bench/peer.ts) speak the same protocol in all four pairings. Tiny sizes, one round, no timing
 * asserted: the figures belong to `npm run bench`, this only proves every scenario completes and
 * yields a number.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { benchStreams } from "../bench/streams.js";

test("every pair of bench peers (wslis and Go, both roles) runs every scenario", { timeout: 240_000 }, async () => {
  const result = await benchStreams({
    rounds: 1,
    warmupRounds: 1,
    rrOps: 10,
    rrConcurrentOps: 64,
    bulkStreams: 3,
    bulkBytes: 100_000,
    singleBytes: 200_000,
    holdStreams: 50,
  });
  assert.equal(result.tables.length, 3);
  assert.match(result.tables[0]!.note, /First warm-up round \(fresh processes\): wslis ↔ wslis p50 \d+ µs, Go ↔ Go p50 \d+ µs/);
  assert.match(result.tables[0]!.note, /Right after 50 streams were released .*: wslis ↔ wslis \d+ µs, Go ↔ Go \d+ µs/);
  // Node's bare web streams, measured in the wslis server's process: a size and a time, both numbers.
  assert.match(result.tables[2]!.note, /Node's own web streams, .*: -?\d+\.\d KiB per stream, .*× Go's whole stream on the server, and \d+(\.\d+)? µs to make\./);
  for (const table of result.tables) {
    assert.deepEqual(
      table.rows.map((row) => row.pair),
      ["wslis ↔ wslis", "Go ↔ Go", "wslis server → Go device", "Go server → wslis device"],
    );
    for (const row of table.rows) {
      for (const [column, value] of Object.entries(row)) {
        if (column === "pair") continue;
        // Memory per stream is a difference of two heaps: with few streams, GC noise can make it negative
        // or zero (so its ratio to Go's may be anything).
        const memory = column.includes("per stream");
        if (memory && column.endsWith("× Go")) continue;
        assert.ok(Number.isFinite(Number(value)) && (memory || Number(value) > 0), `${table.title}: ${row.pair}: ${column} is ${value}`);
      }
    }
  }
  assert.equal(result.targets.length, 9);
  for (const target of result.targets.filter((t) => !t.measure.includes("memory"))) {
    assert.ok(Number.isFinite(target.measured) && target.measured > 0, `${target.measure}: ${target.measured}`);
  }
});

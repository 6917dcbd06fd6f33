/**
 * `npm run fuzz`: the long flood and fuzz suite. Every attack of test/flood.test.ts at full size, every
 * frame kind flooded for a million frames with the attacker reading and not reading, the same against a
 * Node device from a hostile server, then thousands of random and mutated frame sequences; the checks
 * are those of the short suite. Prints one table (the README's Reliability figures) and exits non-zero
 * if any check failed.
 *
 *   npm run fuzz                      everything
 *   npm run fuzz -- --scale 0.01      the same attacks at 1% of their sizes (a smoke run)
 */

import fc from "fast-check";
import { parseArgs } from "node:util";
import { HEADER, MESSAGE_FRAMES, flood, kinds, mb, row, runAgainstDevice, runAgainstServer, runChecked, BOUNDS, type Attack, type Result } from "./helpers/attacks.js";
import { checkCase, mutatedMessages, randomMessages, runCase } from "./helpers/fuzz-frames.js";
import { F, T, frame, hostileServer } from "./helpers/hostile.js";
import { startTarget, type Target } from "./helpers/target.js";

const { values } = parseArgs({ options: { scale: { type: "string", default: "1" }, cases: { type: "string", default: "2000" } } });
const scale = Number(values.scale);
const cases = Math.max(1, Math.round(Number(values.cases) * scale));
const n = (count: number) => Math.max(1, Math.round(count * scale));
const TIMEOUT = 120_000;
/** Below 1% of their size the measured attacks fit the frame budget: then they need only stay bounded. */
const overBudget = scale >= 0.01 ? "abusive" : "either";

const rows: string[][] = [];
const failures: string[] = [];

async function measure(run: () => Promise<Result>, attack: Attack, control = false): Promise<void> {
  process.stderr.write(`${attack.name} (${attack.read ? "reading" : "not reading"})... `);
  try {
    if (control) {
      rows.push(row(await run(), attack));
      process.stderr.write("measured (a control: not checked)\n");
      return;
    }
    // Every run of the attack is a row: a CPU-only failure is run once more (runChecked), both are shown.
    let runs = 0;
    try {
      await runChecked(run, attack, (result) => {
        if (runs++ > 0) process.stderr.write("(over the CPU bound alone the first time: run again) ");
        rows.push(row(result, attack));
      });
      process.stderr.write("ok\n");
    } catch (error) {
      if (runs === 0) throw error;
      failures.push((error as Error).message);
      process.stderr.write(`FAILED: ${(error as Error).message}\n`);
    }
  } catch (error) {
    failures.push(`${attack.name}: ${(error as Error).message}`);
    rows.push([attack.name, attack.read ? "yes" : "no", ...Array<string>(HEADER.length - 3).fill("-"), `error: ${(error as Error).message}`]);
    process.stderr.write(`ERROR: ${(error as Error).message}\n`);
  }
}

/** A fresh server per attack: one attack's leftovers never blur the next one's figures. */
async function onServer(attack: Attack, control = false): Promise<void> {
  const target = await startTarget("server");
  try {
    await measure(() => runAgainstServer(target, attack, TIMEOUT), attack, control);
  } finally {
    await target.stop();
  }
}

async function onDevice(attack: Attack): Promise<void> {
  const server = await hostileServer();
  let target: Target | undefined;
  try {
    target = await startTarget("device", [server.url]);
    await measure(() => runAgainstDevice(target!, server, attack, TIMEOUT), attack);
  } finally {
    await target?.stop();
    await server.close();
  }
}

// A control, not an attack: what one honest message of the largest size wslis sends (1 MiB: one Data frame,
// for a stream the server does not know, so it is passed over) costs the server, to read the rows below by.
await onServer({ name: "control: one 1 MB Data frame", messages: function* () { yield frame(T.Data, 0, 3, 1_000_000, new Uint8Array(1_000_000)); }, read: true, expect: "either" }, true);

// The attacks measured against the unfixed code.
await onServer({ name: `${n(1_000_000).toLocaleString("en-US")} Ping(SYN), one message`, messages: flood(n(1_000_000), n(1_000_000), kinds["Ping(SYN)"]!), read: true, expect: overBudget });
await onServer({ name: `8 × ${n(1_000_000).toLocaleString("en-US")} Ping(SYN)`, messages: flood(8 * n(1_000_000), n(1_000_000), kinds["Ping(SYN)"]!), read: false, expect: overBudget });
await onServer({ name: `${n(1_300_000).toLocaleString("en-US")} SYN (device-opened)`, messages: flood(n(1_300_000), Math.min(MESSAGE_FRAMES, n(1_300_000)), kinds["SYN (device-opened)"]!), read: false, expect: overBudget });
await onDevice({ name: `device: ${n(8_000_000).toLocaleString("en-US")} Ping(SYN), one message`, messages: flood(n(8_000_000), n(8_000_000), kinds["Ping(SYN)"]!), read: false, expect: overBudget });
await onDevice({
  name: `device: ${n(1_300_000).toLocaleString("en-US")} server-opened SYN`,
  messages: flood(n(1_300_000), Math.min(MESSAGE_FRAMES, n(1_300_000)), (i) => [T.WindowUpdate, F.SYN, 2 * i + 1, 0]),
  read: false,
  expect: overBudget,
});

// Every kind: one message over the frame budget, and a million frames in messages under it.
for (const [kind, at] of Object.entries(kinds)) {
  for (const read of [true, false]) {
    await onServer({ name: `${kind} × ${MESSAGE_FRAMES.toLocaleString("en-US")} in one message`, messages: flood(MESSAGE_FRAMES, MESSAGE_FRAMES, at), read, expect: "abusive" });
    await onServer({ name: `${kind}: ${n(1000)} messages × 1,000`, messages: flood(n(1000) * 1000, 1000, at), read, expect: "either" });
  }
}
for (const read of [true, false]) {
  await onDevice({ name: `device: Ping(SYN): ${n(1000)} messages × 1,000`, messages: flood(n(1000) * 1000, 1000, kinds["Ping(SYN)"]!), read, expect: "either" });
}

// One message over the frame budget in 16-byte WebSocket fragments: Node hands a message over as its
// frames arrive, and its yamux frames are still counted across all its parts.
const fragmented = `Ping(SYN) × ${MESSAGE_FRAMES.toLocaleString("en-US")} in one message, 16-byte fragments`;
for (const read of [true, false]) {
  await onServer({ name: fragmented, messages: flood(MESSAGE_FRAMES, MESSAGE_FRAMES, kinds["Ping(SYN)"]!), read, expect: "abusive", fragment: 16 });
}
await onDevice({ name: `device: ${fragmented}`, messages: flood(MESSAGE_FRAMES, MESSAGE_FRAMES, kinds["Ping(SYN)"]!), read: true, expect: "abusive", fragment: 16 });

// Random and mutated sequences, one device each, against one server: memory must stay flat over all.
{
  const target = await startTarget("server");
  try {
    await target.reset();
    for (const [name, arbitrary] of [["random frame sequences", randomMessages], ["mutated conversations", mutatedMessages]] as const) {
      process.stderr.write(`${name}, ${cases} devices... `);
      try {
        await fc.assert(fc.asyncProperty(arbitrary, async (messages) => checkCase(await runCase(target, messages), messages)), { numRuns: cases });
        process.stderr.write("ok\n");
      } catch (error) {
        failures.push(`${name}: ${(error as Error).message}`);
        process.stderr.write(`FAILED: ${(error as Error).message}\n`);
      }
    }
    const s = await target.stats();
    const flat = s.memory.heapAfterGcGrowth <= BOUNDS.heapAfterGcGrowth && s.memory.rssPeakGrowth <= BOUNDS.rssPeakGrowth;
    if (!flat) failures.push(`fuzzing: memory grew (RSS peak +${mb(s.memory.rssPeakGrowth)} MB, heap after GC +${mb(s.memory.heapAfterGcGrowth)} MB)`);
    if (s.probe.failed > 0) failures.push(`fuzzing: probes failed: ${s.probe.failures.join("; ")}`);
    if (target.faults().length > 0) failures.push(`fuzzing: ${JSON.stringify(target.faults().slice(0, 3))}`);
    const fixed = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : "-");
    rows.push([`fuzz: ${2 * cases} devices, random + mutated`, "yes", String(2 * cases), "-", "-", fixed(s.probe.p50), fixed(s.probe.p99), fixed(s.probe.max), fixed(s.eld.max), fixed(s.cpuTurnMaxMs), mb(s.memory.rssPeakGrowth), mb(Math.max(0, s.memory.heapAfterGcGrowth)), failures.some((f) => f.startsWith("random") || f.startsWith("mutated") || f.startsWith("fuzzing")) ? "FAILED" : "ok"]);
  } finally {
    await target.stop();
  }
}

const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
console.log(`\nNode ${process.version}, scale ${scale}; bounds: ${BOUNDS.cpuTurnMs} ms of CPU in one loop turn, RSS peak +${mb(BOUNDS.rssPeakGrowth)} MB, heap after GC +${mb(BOUNDS.heapAfterGcGrowth)} MB\n`);
console.log(line(HEADER));
console.log(line(HEADER.map(() => "---")));
for (const r of rows) console.log(line(r));
if (failures.length > 0) {
  console.log(`\n${failures.length} check(s) failed:\n${failures.map((f) => `- ${f}`).join("\n")}`);
  process.exitCode = 1;
}

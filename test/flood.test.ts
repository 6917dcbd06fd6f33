/**
 * Control-frame floods by hostile peers, against a default server and a default Node device each running
 * in a child process with a well-behaved device probed throughout (see test/helpers/attacks.ts for the
 * figures and the bounds). The short tier: floods under the per-message frame budget for every cheap
 * frame kind, reading and not, and a lying Data header; the same pings against the device.
 * `npm run fuzz` runs these at full size, with the measured million-frame floods and every kind over
 * the budget.
 */

import { after, before, describe, test, type TestContext } from "node:test";
import { F, T, frame, hostileServer } from "./helpers/hostile.js";
import { HEADER, MESSAGE_FRAMES, flood, kinds, row, runAgainstDevice, runAgainstServer, runChecked, type Attack, type Result } from "./helpers/attacks.js";
import { startTarget, type Target } from "./helpers/target.js";

const TIMEOUT = 20_000;

/** Runs and checks an attack (see runChecked: a CPU-only failure is run once more), printing each run's figures (the columns of `npm run fuzz`). */
async function report(t: TestContext, run: () => Promise<Result>, attack: Attack): Promise<void> {
  await runChecked(run, attack, (result) => {
    const cells = row(result, attack);
    t.diagnostic(HEADER.map((h, i) => `${h}: ${cells[i]}`).join(", "));
  });
}

describe("hostile device against the default server", () => {
  let target: Target;
  before(async () => {
    target = await startTarget("server");
  });
  after(() => target?.stop());

  const run = (attack: Attack) => async (t: TestContext) => report(t, () => runAgainstServer(target, attack, TIMEOUT), attack);

  for (const [kind, at] of Object.entries(kinds)) {
    for (const read of [true, false]) {
      const how = read ? "reading" : "not reading";
      test(`${kind}: 20 messages of 1,000 (${how}) stay bounded`,
        run({ name: `${kind} 20 × 1000`, messages: flood(20_000, 1000, at), read, expect: "either" }));
    }
  }

  test("one 12 MB message: refused from its header (maxPayload), never buffered",
    run({ name: "Ping(SYN) × 1,000,000, one message", messages: flood(1_000_000, 1_000_000, kinds["Ping(SYN)"]!), read: true, expect: "abusive" }));

  test("one message of 5,000 pings in 1-byte WebSocket fragments: its frames counted across its parts, closed as abusive",
    run({ name: "Ping(SYN) × 5,000, one message in 1-byte fragments", messages: flood(5000, 5000, kinds["Ping(SYN)"]!), read: true, expect: "abusive", fragment: 1 }));

  test("Data frames whose header promises more than the window: refused before the body arrives",
    run({
      name: "oversized Data headers",
      // Stream 1 is opened by the server to every hostile device; its window is 256 KiB.
      messages: function* () {
        yield frame(T.WindowUpdate, F.ACK, 1, 0);
        yield frame(T.Data, 0, 1, 16 * 1024 * 1024 - 1, new Uint8Array(25));
      },
      read: true,
      expect: "protocol",
    }));
});

describe("hostile server against the default Node device", () => {
  let target: Target;
  let server: Awaited<ReturnType<typeof hostileServer>>;
  before(async () => {
    server = await hostileServer();
    target = await startTarget("device", [server.url]);
  });
  after(async () => {
    await target?.stop();
    await server?.close();
  });

  const run = (attack: Attack) => async (t: TestContext) => report(t, () => runAgainstDevice(target, server, attack, TIMEOUT), attack);

  test("Ping(SYN), 20 messages of 1,000, not reading, stays bounded",
    run({ name: "device: Ping(SYN) 20 × 1000", messages: flood(20_000, 1000, kinds["Ping(SYN)"]!), read: false, expect: "either" }));

  test("one message of 5,000 pings in 1-byte WebSocket fragments: counted across its parts, closed as abusive",
    run({ name: "device: Ping(SYN) × 5,000, one message in 1-byte fragments", messages: flood(5000, 5000, kinds["Ping(SYN)"]!), read: true, expect: "abusive", fragment: 1 }));
});

/**
 * What one call costs in memory and CPU, both ends in this process (server and Node device over ws on
 * 127.0.0.1): a reverse-HTTP 1 KB GET (`dialer.fetch` → `serveHttp`, connections reused) and a new stream
 * with 1 KiB each way (`dialer.dial`, public web streams on both ends). Young-generation garbage is what
 * sets the p99 of request/response (GC pauses), so bytes allocated per call is the figure to push down.
 *
 * Allocation is measured with V8's sampling heap profiler with collected objects included (one sample per
 * 4 KiB allocated on average): the sampled total over N calls, divided by N. ArrayBuffer contents live
 * outside the JS heap and are not counted. `node --import tsx bench/alloc.ts [calls]` (default 5000 each).
 */

import { Session } from "node:inspector/promises";
import { dialAndListen, listenAndServe, serveHttp, type Dialer } from "./lib.js";

const calls = Number(process.argv[2] ?? 5000);
const BODY = new Uint8Array(1000).fill(0x61);
const REQUEST = new Uint8Array(1024).fill(0x65);

interface ProfileNode {
  selfSize: number;
  children: ProfileNode[];
}

// Two devices: one serves HTTP, the other echoes (the HTTP one's streams must reach serveHttp untouched).
const dialers = new Map<string, (dialer: Dialer) => void>();
const server = await listenAndServe("127.0.0.1:0", (dialer) => dialers.get(dialer.id)?.(dialer), { logger: { warn() {}, error: console.error } });
async function device(id: string) {
  const dialer = new Promise<Dialer>((resolve) => dialers.set(id, resolve));
  const listener = await dialAndListen(`ws://127.0.0.1:${server.address().port}/`, { params: { deviceId: id }, reconnect: false });
  return { listener, dialer: await dialer };
}
const http = await device("http");
const echo = await device("echo");
void serveHttp(http.listener, () => new Response(BODY, { headers: { "content-type": "text/plain" } }));
void (async () => {
  for await (const conn of echo.listener) {
    void (async () => {
      const reader = conn.readable.getReader();
      for (let got = 0; got < REQUEST.length; ) {
        const { value, done } = await reader.read();
        if (done) break;
        got += value.length;
      }
      const writer = conn.writable.getWriter();
      void writer.write(BODY);
      await writer.close();
    })().catch(() => conn.reset());
  }
})();

const scenarios: Record<string, () => Promise<void>> = {
  "reverse HTTP 1 KB GET (dialer.fetch → serveHttp)": async () => {
    const response = await http.dialer.fetch("http://device/1k");
    if ((await response.arrayBuffer()).byteLength !== BODY.length) throw new Error("short body");
  },
  "new stream, 1 KiB each way, close (dial, web streams)": async () => {
    const conn = await echo.dialer.dial();
    const writer = conn.writable.getWriter();
    void writer.write(REQUEST).catch(() => {});
    let got = 0;
    for await (const chunk of conn.readable) got += chunk.length;
    if (got !== BODY.length) throw new Error("short answer");
    await writer.close();
  },
};

const inspector = new Session();
inspector.connect();
await inspector.post("HeapProfiler.enable");
const rows: string[] = [];
for (const [name, once] of Object.entries(scenarios)) {
  for (let i = 0; i < 1000; i++) await once(); // warm: JIT, pooled connections
  await inspector.post("HeapProfiler.startSampling", {
    samplingInterval: 4096,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  const cpu = process.cpuUsage();
  for (let i = 0; i < calls; i++) await once();
  const used = process.cpuUsage(cpu);
  const { profile } = await inspector.post("HeapProfiler.stopSampling");
  let bytes = 0;
  const walk = (node: ProfileNode): void => {
    bytes += node.selfSize;
    node.children.forEach(walk);
  };
  walk(profile.head as ProfileNode);
  rows.push(`| ${name} | ${(bytes / calls / 1024).toFixed(1)} | ${Math.round((used.user + used.system) / calls)} |`);
}
console.log(`| per call, both ends in one process (${calls} calls) | KB allocated (JS heap) | CPU µs |\n| --- | ---: | ---: |`);
console.log(rows.join("\n"));
await http.listener.close();
await echo.listener.close();
await server.close();

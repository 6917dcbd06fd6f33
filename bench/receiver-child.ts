/**
 * The receiving end of bench/two-process.ts, in its own process (as a device is): it connects to the
 * URL it is given and, per run, counts the bytes and answers with their number.
 * argv: "raw ws" | "wslis", url.
 */

import WebSocket from "ws";
import { dialAndListen } from "./lib.js";

const [kind, url] = process.argv.slice(2);
process.on("SIGTERM", () => process.exit(0));

if (kind === "raw ws") {
  // Per run: a text message announces the byte count; binary messages follow; "done" answers.
  const ws = new WebSocket(url!, { perMessageDeflate: false });
  let expected = 0;
  let got = 0;
  ws.on("message", (data: Buffer, isBinary) => {
    if (!isBinary) {
      expected = Number(String(data));
      got = 0;
      return;
    }
    got += data.length;
    if (got === expected) ws.send(String(got));
  });
  ws.on("error", (error) => {
    console.error(error);
    process.exit(1);
  });
} else {
  // Per run: the server opens a stream, writes, closes it; we answer with the count and close ours.
  const listener = await dialAndListen(url!, { params: { deviceId: "bench" }, reconnect: false });
  for await (const conn of listener) {
    void (async () => {
      let got = 0;
      for await (const chunk of conn.readable) got += chunk.length;
      const writer = conn.writable.getWriter();
      await writer.write(new TextEncoder().encode(String(got)));
      await writer.close();
    })().catch((error: unknown) => {
      console.error(error);
      process.exit(1);
    });
  }
}

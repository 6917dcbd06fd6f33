/**
 * A Node device for bench/http.ts, in its own process (as a real device is): dials the URL given as the
 * first argument and serves `GET /1k` (1000 bytes) and `POST /echo` (the body back, streamed) with
 * `serveHttp`. Prints "ready" once connected; exits when its parent closes stdin.
 */

import { dialAndListen, serveHttp } from "./lib.js";

const url = process.argv[2];
if (!url) throw new Error("usage: http-device-child.ts ws://host:port/?deviceId=…");
const BODY = new Uint8Array(1000).fill(0x61);
const listener = await dialAndListen(url, { reconnect: false });
void serveHttp(listener, (request) => {
  if (request.method === "POST") return new Response(request.body);
  return new Response(BODY, { headers: { "content-type": "text/plain" } });
});
process.stdout.write("ready\n");
process.stdin.resume();
process.stdin.on("end", () => void listener.close().finally(() => process.exit(0)));

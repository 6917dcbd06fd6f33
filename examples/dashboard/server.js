// The dashboard example's server: serves the page and the script-tag build, accepts devices on /wslis,
// and asks each device for its status as it connects, then every STATUS_EVERY ms (default 10 000).
//
//   npm run build && node examples/dashboard/server.js     # then open http://127.0.0.1:8081/?device=lobby
//
// Outside this repository, with wslis installed, the same file runs as is. PORT picks the port (0: any).
// There is no authentication here: see `authorize` in the README before exposing it.

import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { Server } from "wslis/server";

const port = Number(process.env.PORT ?? 8081);
const every = Number(process.env.STATUS_EVERY ?? 10_000);
const page = new URL("./index.html", import.meta.url);
const iife = createRequire(import.meta.url).resolve("wslis/iife"); // the installed dist/wslis.iife.js

async function askStatus(dialer) {
  const response = await dialer.fetch("http://device/status", { timeout: 5_000 });
  console.log(`${dialer.id} status: ${JSON.stringify(await response.json())}`);
}

const wslis = new Server(
  async (dialer) => {
    console.log(`${dialer.id} connected from ${dialer.remoteAddress}`);
    const timer = setInterval(() => askStatus(dialer).catch((error) => console.error(`${dialer.id}: ${error.message}`)), every);
    dialer.closed.then(() => clearInterval(timer));
    await askStatus(dialer);
  },
  { path: "/wslis" },
);
wslis.addEventListener("disconnect", (event) => console.log(`${event.detail.dialer.id} disconnected`));

const http = createServer(async (request, response) => {
  const { pathname } = new URL(request.url ?? "/", "http://x");
  if (request.method !== "GET") return void response.writeHead(405).end();
  if (pathname === "/") {
    response.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(await readFile(page));
  } else if (pathname === "/wslis.iife.js") {
    response.writeHead(200, { "content-type": "text/javascript" }).end(await readFile(iife));
  } else {
    response.writeHead(404).end();
  }
});
http.on("upgrade", (request, socket, head) => wslis.handleUpgrade(request, socket, head));
http.listen(port, "127.0.0.1", () => console.log(`dashboard: http://127.0.0.1:${http.address().port}/?device=lobby`));

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, async () => {
    await wslis.close(); // GoAway: devices redial elsewhere, or later
    http.close();
  });
}

/**
 * The demo answers only to host names it knows (DNS rebinding): a page whose name is re-pointed at the
 * demo's address is same-origin with it in the browser, but its requests carry its own `Host`.
 */

import assert from "node:assert/strict";
import { request } from "node:http";
import { connect } from "node:net";
import { after, before, describe, test } from "node:test";
import { hostAllowed, startDemo, type Demo } from "../demo/server.js";
import { within } from "./helpers/assert.js";

test("hostAllowed: IP addresses, localhost and the names given pass; other names, bad and missing headers do not", () => {
  const names = new Set(["kiosk.example.com"]);
  for (const host of ["localhost:8080", "LOCALHOST", "localhost.", "app.localhost:3000", "127.0.0.1:8080", "10.1.2.3", "[::1]:8080", "[2001:db8::1]", "kiosk.example.com", "Kiosk.Example.com:443"]) {
    assert.equal(hostAllowed(host, names), true, host);
  }
  for (const host of [undefined, "", "evil.example:8080", "localhost.evil.example", "kiosk.example.com.evil.example", "127.0.0.1.nip.io:8080", "[not-an-ip]", "a b", "evil.example@localhost"]) {
    assert.equal(hostAllowed(host, names), false, String(host));
  }
});

/** A request to the demo with the given Host header: its status and body. */
function get(port: number, path: string, host: string, method = "GET", body?: string): Promise<{ status: number; body: string }> {
  return within(
    new Promise((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path, method, headers: { host, ...(body ? { "content-type": "text/plain" } : {}) } }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => resolve({ status: res.statusCode!, body: text }));
      });
      req.on("error", reject);
      req.end(body);
    }),
    5000,
    `${method} ${path} with Host ${host}`,
  );
}

/** The status line a WebSocket upgrade to /wslis gets with the given Host header. */
function upgrade(port: number, host: string): Promise<string> {
  return within(
    new Promise((resolve, reject) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.write(
          `GET /wslis?deviceId=probe HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        );
      });
      socket.setEncoding("latin1");
      socket.once("data", (data: string) => {
        resolve(data.slice(0, data.indexOf("\r\n")));
        socket.destroy();
      });
      socket.on("error", reject);
    }),
    5000,
    `upgrade with Host ${host}`,
  );
}

describe("the demo server and the Host header", () => {
  let demo: Demo;
  before(async () => {
    demo = await startDemo({ port: 0, log: () => {}, allowedHosts: ["kiosk.example.com"] });
  });
  after(() => demo?.close());

  test("a rebound name is refused on every route: pages, API reads and writes, the WebSocket endpoint", async () => {
    const evil = `evil.example:${demo.port}`;
    for (const path of ["/", "/admin", "/api/devices"]) {
      const answer = await get(demo.port, path, evil);
      assert.equal(answer.status, 403, path);
      assert.equal(JSON.parse(answer.body).error, "host_not_allowed");
    }
    assert.equal((await get(demo.port, "/api/devices/lobby/display", evil, "PUT", '{"kind":"welcome"}')).status, 403);
    assert.match(await upgrade(demo.port, evil), /^HTTP\/1\.1 403 /);
  });

  test("localhost, the IP address and the allowed names are served", async () => {
    for (const host of [`localhost:${demo.port}`, `127.0.0.1:${demo.port}`, "kiosk.example.com"]) {
      assert.equal((await get(demo.port, "/api/devices", host)).status, 200, host);
      assert.equal((await get(demo.port, "/admin", host)).status, 200, host);
    }
    assert.match(await upgrade(demo.port, `localhost:${demo.port}`), /^HTTP\/1\.1 101 /);
  });
});

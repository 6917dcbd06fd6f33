/**
 * Helpers for tests over real sockets on 127.0.0.1: raw HTTP upgrade requests, and quiet servers.
 */

import { connect } from "node:net";
import { listenAndServe, type Handler, type Server, type ServerOptions } from "../../server-node/index.js";

export const quiet = { warn() {}, error() {} };

/** A wslis server on 127.0.0.1, port 0, that logs nothing. */
export async function startServer(handler: Handler, options: ServerOptions = {}): Promise<{ server: Server; url: string; port: number }> {
  const server = await listenAndServe("127.0.0.1:0", handler, { logger: quiet, drainTimeout: 200, ...options });
  const { port } = server.address();
  return { server, url: `ws://127.0.0.1:${port}/`, port };
}

/**
 * Sends a WebSocket upgrade request by hand and returns the raw response head (status line and
 * headers), so a test can see that no 101 was sent.
 */
export function rawUpgrade(port: number, headers: Record<string, string> = {}, path = "/"): Promise<{ status: number; head: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("no answer to the upgrade request within 2 s"));
    }, 2000);
    let received = "";
    socket.on("data", (chunk) => {
      received += chunk.toString("latin1");
      const end = received.indexOf("\r\n\r\n");
      if (end < 0) return;
      clearTimeout(timer);
      socket.destroy();
      const head = received.slice(0, end);
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), head });
    });
    socket.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    const all = {
      Host: `127.0.0.1:${port}`,
      Upgrade: "websocket",
      Connection: "Upgrade",
      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version": "13",
      ...headers,
    };
    socket.write(`GET ${path} HTTP/1.1\r\n${Object.entries(all).map(([k, v]) => `${k}: ${v}\r\n`).join("")}\r\n`);
  });
}

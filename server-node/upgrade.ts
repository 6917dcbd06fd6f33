/**
 * Refusing an HTTP upgrade (a device's WebSocket, a node-to-node dial) before it happens: a plain HTTP
 * answer on the raw socket, then close.
 */

import type { Duplex } from "node:stream";
import { reasonPhrase } from "../src/http/head.js";

/** Answers the upgrade request on `socket` with `status` and `body` (text by default), and closes it. */
export function refuseUpgrade(socket: Duplex, status: number, body: string, type = "text/plain; charset=utf-8"): void {
  if (socket.destroyed) return;
  socket.end(
    `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\nConnection: close\r\nContent-Type: ${type}\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

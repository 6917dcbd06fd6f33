/**
 * Node B of bench/cluster.ts, in its own process, on the library as it ships (./lib.js): a wslis server
 * in a cluster on the given Redis, attached to a plain HTTP server on 127.0.0.1 that answers anything
 * else with an empty 404 at once (the bench's node-to-node round trip). Prints `ready <port>`; exits
 * when its parent closes stdin.
 *
 *   node --import tsx bench/cluster-node.ts <redisUrl> <nodeId> <secret>
 */

import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Server } from "./lib.js";

const [redis, nodeId, secret] = process.argv.slice(2);
if (!redis || !nodeId || !secret) throw new Error("usage: cluster-node.ts <redisUrl> <nodeId> <secret>");

const http = createServer();
await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
const port = (http.address() as AddressInfo).port;
const server = new Server(() => {}, {
  logger: { warn() {}, error: console.error },
  drainTimeout: 200,
  cluster: { redis, nodeId, secret, ttl: 15_000, advertise: `http://127.0.0.1:${port}` },
});
http.on("request", (req, res) => {
  if (!server.handleRequest(req, res)) res.writeHead(404).end();
});
http.on("upgrade", (req, socket, head) => server.handleUpgrade(req, socket, head));
process.stdout.write(`ready ${port}\n`);
process.stdin.resume();
process.stdin.on("end", () => {
  http.closeAllConnections();
  void server.close().finally(() => process.exit(0));
});

/**
 * The library as it ships, for the benches: the compiled JavaScript in dist/node (what the package's
 * exports give a Node program), not the TypeScript sources through tsx.
 *
 * tsx compiles with esbuild's `keepNames`: every named function and arrow in the sources is wrapped in a
 * `__name(fn, "name")` call that defines a property on it, which costs CPU where the closure is made and
 * puts the function's properties in dictionary mode (about 250 bytes more per closure). Measured on a
 * device holding 5,000 streams: 13.8 KB per stream through tsx, 11.9 KB from dist/node. The benches'
 * own code still runs through tsx; it makes nothing per call that matters.
 *
 * `npm run bench` builds first; a dist older than the sources is refused rather than measured.
 */

import { readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const built = join(root, "dist/node/server-node/index.js");

/** Newest modification time of a .ts file under `dir`, in ms. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

let builtAt: number;
try {
  builtAt = statSync(built).mtimeMs;
} catch {
  throw new Error("dist/node is missing: run `npm run build` first (npm run bench does)");
}
if (Math.max(newestSource(join(root, "src")), newestSource(join(root, "server-node"))) > builtAt) {
  throw new Error("dist/node is older than the sources: run `npm run build` first (npm run bench does)");
}

export { dialAndListen, serveHttp } from "../dist/node/server-node/device.js";
export type { Conn, HttpConn } from "../dist/node/server-node/device.js";
export { listenAndServe, Server } from "../dist/node/server-node/index.js";
export type { Dialer } from "../dist/node/server-node/index.js";

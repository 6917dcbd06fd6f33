/**
 * End-to-end harness: real Chromium (Playwright) against the real Node server, loading the BUILT bundle.
 *
 * One HTTP server on 127.0.0.1, port 0, serves the built files (`/dist/...`), test pages
 * (`/pages/...`) and the wslis upgrade on any other path, so pages and WebSocket share one origin.
 */

import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer, type Server as HttpServer } from "node:http";
import { extname, join, normalize, resolve } from "node:path";
import { chromium, type Browser } from "playwright";
import { Server, type Handler, type ServerOptions } from "../server-node/index.js";

const root = resolve(import.meta.dirname, "..");

/** Chromium flags for a sandboxed, offline CI machine. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-quic",
  "--disable-sync",
];

/** The Chromium binary: $WSLIS_CHROMIUM, else /usr/bin/chromium. Throws a how-to when there is none. */
export function chromiumPath(): string {
  const path = process.env.WSLIS_CHROMIUM || "/usr/bin/chromium";
  if (!existsSync(path)) {
    throw new Error(
      `No Chromium at ${path}. The end-to-end suite needs a real browser and does not skip: ` +
        `install Debian's package (sudo apt-get install chromium, or run \`npm run setup\`), ` +
        `or set WSLIS_CHROMIUM=/path/to/chrome.`,
    );
  }
  return path;
}

export function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: chromiumPath(), args: [...CHROMIUM_ARGS, ...extraArgs], timeout: 30_000 });
}

/** Fails loudly when the bundle was not built: the suite tests what ships. */
export function assertBuilt(): void {
  for (const file of ["dist/wslis.js", "dist/wslis.iife.js"]) {
    if (!existsSync(join(root, file))) throw new Error(`${file} is missing: run \`npm run build\` first (npm test does).`);
  }
}

export interface E2EServer {
  /** http://127.0.0.1:PORT */
  origin: string;
  /** ws://127.0.0.1:PORT/wslis */
  wsUrl: string;
  wslis: Server;
  http: HttpServer;
  close(): Promise<void>;
}

const types: Record<string, string> = {
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".html": "text/html; charset=utf-8",
  ".map": "application/json",
  ".css": "text/css",
};

/** Starts the HTTP + wslis server for a test, on `port` (default 0: any free port). */
export async function startE2EServer(handler: Handler, options: ServerOptions = {}, port = 0): Promise<E2EServer> {
  assertBuilt();
  const wslis = new Server(handler, { logger: quietLogger, ...options });
  const http = createServer(async (request, response) => {
    if (wslis.handleRequest(request, response)) return; // node-to-node requests of a cluster
    const path = new URL(request.url ?? "/", "http://x").pathname;
    const base = path.startsWith("/dist/") ? "dist" : path.startsWith("/pages/") ? "test-e2e/pages" : undefined;
    if (base === undefined) {
      response.writeHead(404).end();
      return;
    }
    const file = normalize(join(root, base, path.replace(/^\/(dist|pages)\//, "")));
    if (!file.startsWith(join(root, base))) {
      response.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      response.writeHead(200, { "Content-Type": types[extname(file)] ?? "application/octet-stream" }).end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  http.on("upgrade", (request, socket, head) => wslis.handleUpgrade(request, socket, head));
  await new Promise<void>((done, fail) => {
    http.once("error", fail);
    http.listen(port, "127.0.0.1", done);
  });
  const address = http.address();
  if (!address || typeof address === "string") throw new Error("no address");
  const origin = `http://127.0.0.1:${address.port}`;
  return {
    origin,
    wsUrl: `ws://127.0.0.1:${address.port}/wslis`,
    wslis,
    http,
    async close() {
      await wslis.close();
      http.closeAllConnections();
      await new Promise<void>((done) => http.close(() => done()));
    },
  };
}

/** Logs only errors: tests provoke warnings on purpose. */
export const quietLogger = {
  warn() {},
  error(message: string, ...details: unknown[]) {
    if (process.env.WSLIS_DEBUG) console.error(message, ...details);
  },
};

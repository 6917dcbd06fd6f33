/**
 * The demo server: one HTTP server on one origin serves the kiosk page (/), the admin console (/admin),
 * the JSON API (/api/..., see api.ts) and the wslis endpoint the kiosks dial (/wslis).
 *
 *   npm start                      # http://localhost:8080
 *   PORT=9000 npm start            # or: node --import tsx demo/server.ts --port 9000 --host 0.0.0.0
 *   REDIS_URL=redis://localhost:6379 npm start                    # node 1 of a cluster
 *   REDIS_URL=redis://localhost:6379 npm start -- --port 8081     # node 2: same fleet
 *
 * Programmatic use (the end-to-end test): `const demo = await startDemo({ port: 0 }); ...; await demo.close()`.
 */

import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { isIP, type AddressInfo } from "node:net";
import { extname, join, normalize, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { Server } from "../server-node/index.js";
import { DemoApi, sendJson } from "./api.js";
import { ADMIN_PAGE, DEMO_DIST, KIOSK_PAGE, ensureDemoBuilt } from "./build.js";

export interface DemoOptions {
  /** TCP port; 0 picks a free one. Default 8080. */
  port?: number;
  /** Interface to listen on. Default "localhost". */
  host?: string;
  /** How long a kiosk may take to answer an API request, in ms. Default 10 000. */
  deviceTimeout?: number;
  /** Where progress lines go. Default console.log; pass `() => {}` for silence. */
  log?: (line: string) => void;
  /**
   * Join a cluster of demo nodes on this Redis (URL); each node's console lists and drives every kiosk.
   * Default: none, this server alone. `npm start` takes it from REDIS_URL.
   */
  redis?: string;
  /** The cluster secret shared by the nodes. Default: WSLIS_CLUSTER_SECRET, else a fixed one fit only for a demo on one machine. */
  clusterSecret?: string;
  /**
   * Host names (no port) the demo answers to, besides `localhost`, IP addresses and the `host` it listens
   * on: the names browsers reach it by (`kiosk.example.com`). A request whose `Host` header names anything
   * else is refused with 403 (see {@link hostAllowed}). `npm start` takes them from `--allowed-hosts a,b`
   * or ALLOWED_HOSTS.
   */
  allowedHosts?: string[];
}

export interface Demo {
  /** http://host:port (no trailing slash). */
  url: string;
  port: number;
  /** The kiosk page for a device id. */
  kioskUrl(deviceId?: string): string;
  /** The admin console. */
  adminUrl: string;
  /** The wslis server the kiosks are connected to. */
  wslis: Server;
  /** Stops everything: kiosks get GoAway and are closed, event streams end, the port is released. */
  close(): Promise<void>;
}

/**
 * The pages' Content-Security-Policy: only the built scripts run (no inline script, no plugin), and only
 * this origin may frame them (a kiosk may show /admin; other sites may not frame the console to trick
 * clicks). An HTML display's srcdoc frame inherits it, on top of its own sandbox.
 */
const PAGE_CSP = "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'";

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

/** Builds the pages if needed, then starts the demo server. */
export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const log = options.log ?? ((line: string) => console.log(line));
  await ensureDemoBuilt(log);

  // With a cluster, the other nodes need this node's URL: listen first, then make the server.
  let api: DemoApi | undefined;
  const hosts = new Set(["localhost", ...(options.allowedHosts ?? []), options.host ?? "localhost"].map((name) => name.toLowerCase()));
  const http = createServer((request, response) => {
    if (!hostAllowed(request.headers.host, hosts)) {
      refuseHost(request, response);
      return;
    }
    if (wslis.handleRequest(request, response)) return; // node-to-node requests of the cluster
    serve(request, response, api!).catch((error: unknown) => {
      log(`demo: ${request.method} ${request.url} failed: ${error instanceof Error ? error.message : String(error)}`);
      if (!response.headersSent) sendJson(response, 500, { error: "internal", message: "the demo server failed" });
      else response.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(options.port ?? 8080, options.host ?? "localhost", () => {
      http.off("error", reject);
      resolve();
    });
  });
  const { port } = http.address() as AddressInfo;
  const host = options.host ?? "localhost";
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  const reachable = host === "0.0.0.0" || host === "::" ? `http://localhost:${port}` : url;

  const wslis: Server = new Server(() => {}, {
    ...(options.redis
      ? {
          cluster: {
            redis: options.redis,
            nodeId: `demo-${port}`,
            advertise: reachable,
            secret: options.clusterSecret ?? process.env.WSLIS_CLUSTER_SECRET ?? "wslis-demo-secret-for-one-machine",
            ttl: 5000,
          },
        }
      : {}),
    path: "/wslis",
    // The demo's own shutdown should be quick: in-flight screenshots get this long, in ms.
    drainTimeout: 1000,
    logger: { warn: () => {}, error: (message, ...details) => log(`wslis: ${message} ${details.map(String).join(" ")}`) },
  });
  api = new DemoApi(wslis, { deviceTimeout: options.deviceTimeout, log });
  http.on("upgrade", (request, socket, head) => {
    if (!hostAllowed(request.headers.host, hosts)) {
      socket.end("HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    wslis.handleUpgrade(request, socket, head);
  });

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    kioskUrl: (deviceId) => (deviceId === undefined ? `${url}/` : `${url}/?deviceId=${encodeURIComponent(deviceId)}`),
    adminUrl: `${url}/admin`,
    wslis,
    close() {
      closing ??= (async () => {
        api!.close();
        await wslis.close();
        http.closeAllConnections();
        await new Promise<void>((resolve) => http.close(() => resolve()));
      })();
      return closing;
    },
  };
}

/**
 * True when a request's `Host` names this server: an IP address, `localhost` or a name under it, or one of
 * `names`. The guard against DNS rebinding: a page of `evil.example` whose name the attacker re-points at
 * 127.0.0.1 is same-origin with the demo in the browser's eyes (its writes pass the API's origin check,
 * its reads see the fleet and the kiosks' screenshots), but every request it sends says
 * `Host: evil.example`. An IP address cannot be re-pointed, so it is always accepted.
 */
export function hostAllowed(header: string | undefined, names: ReadonlySet<string>): boolean {
  // host [":" port], the host a bracketed IPv6 address or a name of letters, digits, dots and dashes.
  const match = header === undefined ? null : /^(?:\[([0-9a-f:.]+)\]|([a-z0-9.-]+))(?::\d{1,5})?$/i.exec(header);
  if (match === null) return false;
  if (match[1] !== undefined) return isIP(match[1]) === 6;
  if (isIP(match[2]!) !== 0) return true;
  const name = match[2]!.toLowerCase().replace(/\.$/, "");
  return name === "localhost" || name.endsWith(".localhost") || names.has(name);
}

function refuseHost(request: IncomingMessage, response: ServerResponse): void {
  sendJson(response, 403, {
    error: "host_not_allowed",
    message: `this demo does not answer to the host ${JSON.stringify(request.headers.host ?? "")}; start it with --allowed-hosts NAME (or ALLOWED_HOSTS) to add a name browsers use to reach it`,
  });
}

/** Routes one plain HTTP request: the API, else a page or a built asset. */
async function serve(request: IncomingMessage, response: ServerResponse, api: DemoApi): Promise<void> {
  if (await api.handle(request, response)) return;
  if (request.method !== "GET" && request.method !== "HEAD") {
    response.writeHead(405, { Allow: "GET, HEAD", "Content-Type": "text/plain" }).end("method not allowed\n");
    return;
  }
  const path = new URL(request.url ?? "/", "http://demo").pathname;
  let file: string;
  try {
    file = path === "/" ? KIOSK_PAGE : path === "/admin" || path === "/admin/" ? ADMIN_PAGE : decodeURIComponent(path).slice(1);
  } catch {
    response.writeHead(400, { "Content-Type": "text/plain" }).end("bad path encoding\n");
    return;
  }
  const absolute = normalize(join(DEMO_DIST, file));
  if (!absolute.startsWith(DEMO_DIST + sep)) {
    response.writeHead(403, { "Content-Type": "text/plain" }).end("forbidden\n");
    return;
  }
  const info = await stat(absolute).catch(() => undefined);
  if (!info?.isFile()) {
    response.writeHead(404, { "Content-Type": "text/plain" }).end(`not found: ${path}\n`);
    return;
  }
  response.writeHead(200, {
    "Content-Type": CONTENT_TYPES[extname(absolute)] ?? "application/octet-stream",
    "Content-Length": info.size,
    "X-Content-Type-Options": "nosniff",
    ...(extname(absolute) === ".html" ? { "Content-Security-Policy": PAGE_CSP } : {}),
    // Vite puts a content hash in asset names; pages must be fetched fresh to pick up new hashes.
    "Cache-Control": path.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "no-cache",
  });
  if (request.method === "HEAD") response.end();
  else createReadStream(absolute).pipe(response);
}

/** `--port 9000`, `--port=9000`, `--host 0.0.0.0`, `--allowed-hosts a.example,b.example`; then PORT, HOST and ALLOWED_HOSTS from the environment. */
function parseArgs(argv: string[]): { port: number; host: string; allowedHosts: string[] } {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const match = /^--(port|host|allowed-hosts)(?:=(.*))?$/.exec(argv[i]!);
    if (!match) throw new Error(`unknown argument ${argv[i]}; use --port N, --host NAME and --allowed-hosts NAME,NAME`);
    const value = match[2] ?? argv[++i];
    if (value === undefined) throw new Error(`--${match[1]} needs a value`);
    flags.set(match[1]!, value);
  }
  const portText = flags.get("port") ?? process.env.PORT ?? "8080";
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`the port must be 0…65535, not ${portText}`);
  const allowedHosts = (flags.get("allowed-hosts") ?? process.env.ALLOWED_HOSTS ?? "").split(",").map((name) => name.trim()).filter(Boolean);
  return { port, host: flags.get("host") ?? process.env.HOST ?? "localhost", allowedHosts };
}

async function main(): Promise<void> {
  let settings: ReturnType<typeof parseArgs>;
  try {
    settings = parseArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`demo: ${(error as Error).message}`);
    process.exit(2);
  }
  let demo: Demo;
  try {
    demo = await startDemo({ ...settings, ...(process.env.REDIS_URL ? { redis: process.env.REDIS_URL } : {}) });
  } catch (error) {
    const code = (error as { code?: string }).code;
    const hint =
      code === "EADDRINUSE"
        ? `port ${settings.port} is in use; pick another: PORT=${settings.port + 1} npm start`
        : (error as Error).message;
    console.error(`demo: could not start: ${hint}`);
    process.exit(1);
  }
  console.log(
    [
      "",
      "  wslis demo: kiosk screens driven by a server",
      "",
      `  Kiosk page:     ${demo.kioskUrl("lobby")}   (or ${demo.kioskUrl()} for a generated id)`,
      `  Admin console:  ${demo.adminUrl}`,
      `  HTTP API:       ${demo.url}/api/devices`,
      ...(process.env.REDIS_URL
        ? [`  Cluster node:   ${demo.wslis.nodeId} on ${process.env.REDIS_URL} (start another: REDIS_URL=… npm start -- --port ${demo.port + 1})`]
        : []),
      "",
      "  Open a kiosk page or two, then the admin console. Ctrl-C stops.",
      "",
    ].join("\n"),
  );
  const stop = (signal: string) => {
    console.log(`\ndemo: ${signal}, closing kiosk connections…`);
    // A second Ctrl-C does not wait for the drain.
    process.once(signal, () => process.exit(130));
    demo.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGINT", () => stop("SIGINT"));
  process.once("SIGTERM", () => stop("SIGTERM"));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();

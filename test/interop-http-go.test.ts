/**
 * Reverse HTTP against Go (test/go/rhttp/main.go: net/http over Debian's hashicorp/yamux over gorilla),
 * both ways: Go's http.Client (DialContext = yamux Open) → our Node device's serveHttp; and our
 * dialer.fetch → a Go device running http.Serve(yamux session).
 *
 * Go is built into a temporary directory for the run. Without Go this suite fails with a how-to; it never skips.
 */

import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { dialAndListen } from "../server-node/device.js";
import type { Dialer } from "../server-node/index.js";
import { serveHttp } from "../src/http/server.js";
import { startServer } from "./helpers/net.js";
import { sha256Hex, within } from "./helpers/assert.js";

const root = resolve(import.meta.dirname, "..");
const GOPATH = "/usr/share/gocode";
const HOW_TO =
  "The reverse-HTTP Go interop suite needs Go and Debian's hashicorp/yamux and gorilla/websocket; it does not skip. " +
  "Install them: sudo apt-get install golang-go golang-github-hashicorp-yamux-dev golang-github-gorilla-websocket-dev " +
  "(or run `npm run setup`).";

let buildDir: string;
let binary: string;

before(async () => {
  for (const pkg of ["github.com/hashicorp/yamux", "github.com/gorilla/websocket"]) {
    if (!existsSync(join(GOPATH, "src", pkg))) throw new Error(`${pkg} is missing from ${GOPATH}. ${HOW_TO}`);
  }
  buildDir = await mkdtemp(join(tmpdir(), "wslis-rhttp-"));
  binary = join(buildDir, "rhttp");
  const env: NodeJS.ProcessEnv = { ...process.env, GO111MODULE: "off", GOPATH, GOFLAGS: "" };
  if (!env.GOCACHE && !env.HOME) env.GOCACHE = join(tmpdir(), "wslis-go-cache");
  await new Promise<void>((done, fail) => {
    execFile("go", ["build", "-o", binary, "test/go/rhttp/main.go"], { cwd: root, env, timeout: 180_000 }, (error, _stdout, stderr) => {
      if (!error) return done();
      const missing = (error as NodeJS.ErrnoException).code === "ENOENT";
      fail(new Error(`${missing ? "`go` was not found" : `go build failed: ${stderr || error.message}`}. ${HOW_TO}`, { cause: error }));
    });
  });
});

after(async () => {
  if (buildDir) await rm(buildDir, { recursive: true, force: true });
});

/** The Go program, with its stdout read as JSON lines. Always killed by `stop()`. */
class GoProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly #events: Record<string, unknown>[] = [];
  readonly #waiters: (() => void)[] = [];
  stderr = "";

  constructor(args: string[]) {
    this.child = spawn(binary, args);
    this.child.stderr.on("data", (chunk: Buffer) => (this.stderr += chunk.toString()));
    createInterface({ input: this.child.stdout }).on("line", (line) => {
      this.#events.push(JSON.parse(line) as Record<string, unknown>);
      for (const wake of this.#waiters.splice(0)) wake();
    });
  }

  /** The first event named `name` (or an "error" event, which fails the wait). */
  async event(name: string, ms = 20_000): Promise<Record<string, unknown>> {
    return within(
      (async () => {
        for (;;) {
          const found = this.#events.find((e) => e.event === name || e.event === "error");
          if (found?.event === "error") throw new Error(`Go side: ${String(found.error)}\n${this.stderr}`);
          if (found) return found;
          await new Promise<void>((wake) => this.#waiters.push(wake));
        }
      })(),
      ms,
      `Go event ${name}`,
    );
  }

  stop(): void {
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
  }
}

describe("Go http.Client → Node device serveHttp", () => {
  test("GET, POST 1 MiB echo, keep-alive reuse, 500 on a throwing handler", async () => {
    const go = new GoProcess(["-mode", "client"]);
    let listener: Awaited<ReturnType<typeof dialAndListen>> | undefined;
    try {
      const { port } = await go.event("listening");
      listener = await dialAndListen(`ws://127.0.0.1:${port}/`, { reconnect: false });
      const errors: unknown[] = [];
      void serveHttp(
        listener,
        async (request) => {
          const url = new URL(request.url);
          if (url.pathname === "/echo") return new Response(request.body);
          if (url.pathname === "/throw") throw new Error("internal detail");
          return new Response(`hello ${request.method} ${url.host}${url.pathname}${url.search}`);
        },
        { onError: (e) => errors.push(e) },
      );
      const result = await go.event("result");
      assert.equal(result.getStatus, 200);
      assert.equal(result.getBody, "hello GET device.local/hello?x=1");
      assert.equal(result.getContentLength, "hello GET device.local/hello?x=1".length);
      assert.equal(result.postEchoed, result.postSent, "1 MiB echoed intact");
      assert.deepEqual(result.postTransferEncoding, ["chunked"]);
      assert.equal(result.fresh, 0, "the 10 sequential requests found the idle connection of the earlier ones");
      assert.equal(result.reused, 10);
      assert.equal(result.throwStatus, 500);
      assert.equal(result.throwBody, "500 Internal Server Error\n");
      assert.equal(errors.length, 1);
    } finally {
      go.stop();
      await listener?.close();
    }
  });
});

describe("Node dialer.fetch → Go device running http.Serve", () => {
  let go: GoProcess;
  let dialer: Dialer;
  let stopServer: () => Promise<void>;
  before(async () => {
    let resolveDialer!: (d: Dialer) => void;
    const connected = new Promise<Dialer>((r) => (resolveDialer = r));
    const { server, url } = await startServer((d) => resolveDialer(d));
    stopServer = () => server.close();
    go = new GoProcess(["-mode", "device", "-url", url]);
    dialer = await within(connected, 10_000, "Go device connects");
  });
  after(async () => {
    go?.stop();
    await stopServer?.();
  });

  test("GET", async () => {
    const res = await dialer.fetch("http://kiosk:8080/hello");
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "hello from go, host=kiosk:8080 path=/hello");
  });

  test("POST 1 MiB, echoed", async () => {
    const data = randomBytes(1 << 20);
    const res = await dialer.fetch("http://kiosk/echo", { method: "POST", body: data });
    assert.equal(sha256Hex(new Uint8Array(await res.arrayBuffer())), sha256Hex(data));
  });

  test("64 fetches at once, each answered with its own body (requests leave in messages of several frames)", async () => {
    const bodies = Array.from({ length: 64 }, (_, i) => new Uint8Array(randomBytes(1000 + i * 37)));
    const echoed = await Promise.all(
      bodies.map(async (body) => new Uint8Array(await (await dialer.fetch("http://kiosk/echo", { method: "POST", body })).arrayBuffer())),
    );
    echoed.forEach((got, i) => assert.equal(sha256Hex(got), sha256Hex(bodies[i]!), `fetch ${i}`));
  });

  test("a flushed response arrives incrementally", async () => {
    const res = await dialer.fetch("http://kiosk/stream");
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.equal(new TextDecoder().decode(first.value), "tick1;");
    await reader.cancel();
  });

  test("sequential fetches reuse one connection on the Go side", async () => {
    const before = Number(await (await dialer.fetch("http://kiosk/conns")).text());
    for (let i = 0; i < 10; i++) await (await dialer.fetch("http://kiosk/hello")).text();
    const afterCount = Number(await (await dialer.fetch("http://kiosk/conns")).text());
    assert.ok(afterCount - before <= 1, `${afterCount - before} new connections for 11 sequential fetches`);
  });
});

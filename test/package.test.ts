/**
 * The package as a user gets it. A fresh clone of the repository (its committed files, plus uncommitted
 * changes to tracked files) is packed with `npm pack`, which must build the library itself; the tarball is
 * installed into an empty folder from the registry's point of view (its dependencies come from the npm
 * registry or npm's cache); then, against that installed copy only:
 * the README's Node example runs verbatim, CommonJS `require` works, strict TypeScript consumers
 * type-check, publint and arethetypeswrong find nothing, and real Chromium runs the ESM and IIFE builds.
 *
 * One tarball and one install serve every test here (packing builds the library: that is the slow part).
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, extname, join, relative, resolve, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, test } from "node:test";
import { launchChromium } from "../test-e2e/harness.js";

const root = resolve(import.meta.dirname, "..");
const tsc = join(root, "node_modules", ".bin", "tsc");
const bin = (name: string) => join(root, "node_modules", ".bin", name);

/** Runs a command; rejects with its output when it fails or outlives `timeout` ms. */
function run(file: string, args: string[], cwd: string, timeout = 60_000): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    execFile(file, args, { cwd, timeout, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(" ")} failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolvePromise({ stdout, stderr });
    });
  });
}

let work: string; // everything this file writes lives here
let tarball: string;
let unpacked: string; // the tarball's "package/" folder
let app: string; // the consumer: an empty project with the tarball installed

before(async () => {
  work = mkdtempSync(join(tmpdir(), "wslis-package-"));
  // The commit to clone: the working tree's tracked files when they differ from HEAD (`git stash create`
  // records them without touching anything), else HEAD.
  const stash = (await run("git", ["stash", "create"], root)).stdout.trim();
  const commit = stash || (await run("git", ["rev-parse", "HEAD"], root)).stdout.trim();
  const clone = join(work, "clone");
  await run("git", ["clone", "--quiet", "--shared", "--no-checkout", root, clone], work);
  await run("git", ["checkout", "--quiet", "--detach", commit], clone);
  assert.ok(!existsSync(join(clone, "dist")), "a fresh clone has no build");
  // The clone's build tools: the repository's own, so the test does not install them again.
  symlinkSync(join(root, "node_modules"), join(clone, "node_modules"), "dir");
  await run("npm", ["pack", "--pack-destination", work], clone, 180_000);
  const name = readdirSync(work).find((file) => file.endsWith(".tgz"));
  assert.ok(name, "npm pack made a tarball");
  tarball = join(work, name);
  mkdirSync(join(work, "unpacked"));
  await run("tar", ["-xzf", tarball, "-C", join(work, "unpacked")], work);
  unpacked = join(work, "unpacked", "package");

  app = join(work, "app");
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", tarball], app, 120_000);
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Every file under `dir`, as paths relative to it with forward slashes. */
function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (at: string) => {
    for (const entry of readdirSync(at)) {
      const path = join(at, entry);
      if (statSync(path).isDirectory()) walk(path);
      else out.push(relative(dir, path).split(sep).join("/"));
    }
  };
  walk(dir);
  return out;
}

/** Every file path named anywhere in an `exports` map. */
function exportTargets(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (value && typeof value === "object") return Object.values(value).flatMap(exportTargets);
  return [];
}

test("packing a fresh clone builds what the exports map points to, and ships the library only", () => {
  const shipped = new Set(files(unpacked));
  const pkg = JSON.parse(readFileSync(join(unpacked, "package.json"), "utf8"));
  const targets = [...exportTargets(pkg.exports), pkg.main, pkg.module, pkg.types].filter(Boolean);
  for (const [, paths] of Object.entries(pkg.typesVersions?.["*"] ?? {})) targets.push(...(paths as string[]));
  for (const target of targets) {
    assert.ok(shipped.has(target.replace(/^\.\//, "")), `${target} (named in package.json) is in the tarball`);
  }
  for (const required of ["LICENSE", "README.md", "CHANGELOG.md", "dist/wslis.js", "dist/wslis.iife.js"]) {
    assert.ok(shipped.has(required), `${required} is in the tarball`);
  }
  for (const path of shipped) {
    assert.doesNotMatch(path, /^(dist\/demo|demo|test|test-e2e|bench|scripts|docs)\//, `${path} is not library code`);
  }
  assert.ok(!shipped.has("index.html"), "the demo page is not shipped");
  assert.match(readFileSync(join(unpacked, "LICENSE"), "utf8"), /^MIT License[\s\S]*wslis contributors/);
  assert.equal(pkg.license, "MIT");
});

test("every source map in the tarball resolves to sources that are shipped", () => {
  const shipped = files(unpacked);
  const maps = shipped.filter((path) => path.endsWith(".map"));
  assert.ok(maps.length > 10, `the package has source maps (${maps.length})`);
  for (const map of maps) {
    const { sources, sourceRoot = "" } = JSON.parse(readFileSync(join(unpacked, map), "utf8"));
    assert.ok(Array.isArray(sources) && sources.length > 0, `${map} names its sources`);
    for (const source of sources as string[]) {
      const path = resolve(dirname(join(unpacked, map)), sourceRoot, source);
      assert.ok(path.startsWith(unpacked + sep) && existsSync(path), `${map}: its source ${source} is shipped`);
    }
  }
  // And every file that points to a map points to one that is there.
  for (const path of shipped.filter((file) => [".js", ".ts"].includes(extname(file)))) {
    const match = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(unpacked, path), "utf8"));
    if (match) assert.ok(existsSync(resolve(dirname(join(unpacked, path)), match[1]!)), `${path}: ${match[1]} is shipped`);
  }
});

test("the README's Node example runs verbatim against the installed package", async () => {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const code = /<!-- example: node -->\s*```js\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(code, "README has its Node example");
  writeFileSync(join(app, "example.mjs"), code);
  const { stdout } = await run(process.execPath, ["example.mjs"], app, 15_000);
  assert.equal(stdout.trim(), "123 answered: hola");
});

test("CommonJS require() loads both Node entries (Node >= 20.19) and they work", async () => {
  writeFileSync(
    join(app, "example.cjs"),
    `const { listenAndServe } = require("wslis/server");
const { dialAndListen, WslisError } = require("wslis");
if (typeof WslisError !== "function") throw new Error("no WslisError");
(async () => {
  const server = await listenAndServe("127.0.0.1:0", async (dialer) => {
    const conn = await dialer.dial();
    const writer = conn.writable.getWriter();
    await writer.write(new TextEncoder().encode("hola"));
    await writer.close();
    console.log(dialer.id + " answered: " + (await new Response(conn.readable).text()));
    await server.close();
  });
  const lis = await dialAndListen("ws://127.0.0.1:" + server.address().port, { params: { deviceId: "cjs" }, reconnect: false });
  for await (const conn of lis) conn.readable.pipeTo(conn.writable);
})();
`,
  );
  const { stdout } = await run(process.execPath, ["example.cjs"], app, 15_000);
  assert.equal(stdout.trim(), "cjs answered: hola");
});

/** Strict compiler options every consumer below shares: the library's declarations are checked too. */
const strict = {
  target: "ES2022",
  strict: true,
  skipLibCheck: false,
  noEmit: true,
  exactOptionalPropertyTypes: true,
  noUncheckedIndexedAccess: true,
  typeRoots: [join(root, "node_modules", "@types")],
};

/** A Node program using both entries; no DOM lib: what a server project has. */
const nodeProgram = `import { listenAndServe, Server, type ServerOptions, type Dialer } from "wslis/server";
import { dialAndListen, listen, serveHttp, WslisError, type Conn, type DialOptions, type Listener, type SessionOptions } from "wslis";

const options: ServerOptions = { authorize: () => true, drainTimeout: 1_000 };
const server: Server = await listenAndServe("127.0.0.1:0", async (dialer: Dialer) => {
  const response: Response = await dialer.fetch("http://device/status");
  const conn: Conn = await dialer.dial();
  console.log(dialer.id, dialer.url.searchParams.get("deviceId"), response.status, conn.streamID);
}, options);
// Typed events: detail is known without casts.
server.addEventListener("connect", (event) => console.log(event.detail.dialer.id));
server.addEventListener("disconnect", (event) => console.log(event.detail.dialer.id, event.detail.reason.message));
const session: SessionOptions = { keepAliveInterval: 5_000 }; // the yamux side is wslis's to set
const dial: DialOptions = { params: { deviceId: "1" }, headers: { authorization: "Bearer x" }, reconnect: { maxRetries: 3 }, session };
const lis: Listener = await dialAndListen(\`ws://127.0.0.1:\${server.address().port}\`, dial);
lis.addEventListener("connect", (event) => console.log(event.detail.attempt));
lis.addEventListener("disconnect", (event) => console.log(event.detail.error.message, event.detail.retryIn));
void serveHttp(lis, async (request: Request) => new Response(new URL(request.url).pathname));
const later: Listener = listen("ws://127.0.0.1:1", { reconnect: false });
await later.close();
const reason: Error = await lis.closed;
if (reason instanceof WslisError) console.log(reason.code);
await server.close();
`;

/** A page's module using the ESM build and the script-tag build's global: DOM lib, no Node types. */
const browserProgram = `import type {} from "wslis/iife";
import { dialAndListen, serveHttp, type Listener } from "wslis";

const lis: Listener = await dialAndListen(location.origin.replace(/^http/, "ws"), { params: { deviceId: "lobby" } });
await serveHttp(lis, async () => new Response(document.title));
const fromScriptTag: Listener = await wslis.dialAndListen("wss://example.com", { protocols: ["token"] });
fromScriptTag.addEventListener("disconnect", (event) => console.log(event.detail.retryIn));
await fromScriptTag.close();
`;

const consumers: Record<string, { compilerOptions: Record<string, unknown>; files: Record<string, string> }> = {
  "nodenext, Node types only": {
    compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", lib: ["ES2023"], types: ["node"] },
    files: { "node.ts": nodeProgram },
  },
  "bundler, Node types only": {
    compilerOptions: { module: "ESNext", moduleResolution: "Bundler", lib: ["ES2023"], types: ["node"] },
    files: { "node.ts": nodeProgram },
  },
  "bundler, DOM only (a page)": {
    compilerOptions: { module: "ESNext", moduleResolution: "Bundler", lib: ["ES2023", "DOM", "DOM.Iterable"], types: [] },
    files: { "page.ts": browserProgram },
  },
  "nodenext, DOM only (a page)": {
    compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", lib: ["ES2023", "DOM", "DOM.Iterable"], types: [] },
    files: { "page.ts": browserProgram },
  },
};

for (const [name, consumer] of Object.entries(consumers)) {
  test(`a strict TypeScript consumer type-checks against the installed declarations: ${name}`, async () => {
    const dir = join(app, name.replace(/\W+/g, "-"));
    mkdirSync(dir);
    for (const [file, text] of Object.entries(consumer.files)) writeFileSync(join(dir, file), text);
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({ compilerOptions: { ...strict, ...consumer.compilerOptions }, include: ["*.ts"] }),
    );
    // A project whose package.json says "module", as one using top-level await has.
    writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module", private: true }));
    await run(tsc, ["-p", dir], dir, 60_000);
  });
}

test("publint finds nothing to report in the tarball", async () => {
  const { stdout } = await run(bin("publint"), ["run", tarball, "--strict"], work);
  assert.doesNotMatch(stdout, /Suggestions:|Warnings:|Errors:/, stdout);
});

test("arethetypeswrong finds no problem in the tarball", async () => {
  // cjs-resolves-to-esm is the one rule left out, on purpose: the package is ESM only, and Node >= 20.19
  // (the engines floor) loads it with require(); the CommonJS test above proves it. arethetypeswrong's
  // TypeScript predates require(esm) and reports every CommonJS import as "dynamic import only".
  const args = [tarball, "--no-definitely-typed", "--no-emoji", "--no-color", "--ignore-rules", "cjs-resolves-to-esm"];
  const { stdout } = await run(bin("attw"), args, work);
  assert.match(stdout, /No problems found/, stdout);
});

test("real Chromium runs the packed ESM and IIFE builds against the packed server", async () => {
  const installed = join(app, "node_modules", "wslis");
  const pkg = JSON.parse(readFileSync(join(installed, "package.json"), "utf8"));
  const esmPath: string = pkg.exports["."].default; // what a browser or bundler gets for "wslis"
  const iifePath: string = pkg.exports["./iife"].default;
  const serverEntry = createRequire(join(app, "index.js")).resolve("wslis/server");
  assert.ok(serverEntry.startsWith(installed), "the server comes from the installed package");
  const { Server } = (await import(pathToFileURL(serverEntry).href)) as typeof import("../server-node/index.js");

  const answers = new Map<string, string>();
  let allAnswered!: () => void;
  const answered = new Promise<void>((resolvePromise) => (allAnswered = resolvePromise));
  const wslis = new Server(
    async (dialer) => {
      const response = await dialer.fetch("http://device/hello");
      answers.set(dialer.id, await response.text());
      if (answers.size === 2) allAnswered();
    },
    { logger: { warn() {}, error: console.error } },
  );
  const page = `<!doctype html><meta charset="utf-8"><title>wslis package</title>
<script src="/pkg/${iifePath.replace(/^\.\//, "")}"></script>
<script type="importmap">{ "imports": { "wslis": "/pkg/${esmPath.replace(/^\.\//, "")}" } }</script>
<script type="module">
  import * as esm from "wslis";
  const url = location.origin.replace(/^http/, "ws") + "/wslis";
  const devices = [[esm, "esm"], [window.wslis, "iife"]].map(async ([lib, id]) => {
    const lis = await lib.dialAndListen(url, { params: { deviceId: id }, reconnect: false });
    lib.serveHttp(lis, () => new Response("hola from " + id));
  });
  window.ready = Promise.all(devices).then(() => "ready", (error) => String(error));
</script>`;
  const http: HttpServer = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://x").pathname;
    if (path === "/") return void response.writeHead(200, { "content-type": "text/html" }).end(page);
    const file = resolve(installed, "." + path.replace(/^\/pkg\//, "/"));
    if (!path.startsWith("/pkg/") || !file.startsWith(installed + sep) || !existsSync(file)) {
      return void response.writeHead(404).end();
    }
    response.writeHead(200, { "content-type": "text/javascript" }).end(readFileSync(file));
  });
  http.on("upgrade", (request, socket, head) => wslis.handleUpgrade(request, socket, head));
  await new Promise<void>((resolvePromise) => http.listen(0, "127.0.0.1", resolvePromise));
  const browser = await launchChromium();
  try {
    const tab = await browser.newPage();
    const errors: string[] = [];
    tab.on("pageerror", (error) => errors.push(String(error)));
    await tab.goto(`http://127.0.0.1:${(http.address() as AddressInfo).port}/`);
    assert.equal(await tab.evaluate(() => (window as unknown as { ready: Promise<string> }).ready), "ready");
    await Promise.race([
      answered,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`answers so far: ${[...answers]}`)), 10_000).unref()),
    ]);
    assert.deepEqual(Object.fromEntries(answers), { esm: "hola from esm", iife: "hola from iife" });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await wslis.close();
    http.closeAllConnections();
    await new Promise((resolvePromise) => http.close(resolvePromise));
  }
});

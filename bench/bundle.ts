/**
 * What an app pays in bytes for the device SDK: tree-shaken entry files built with the project's own
 * Vite (rolldown), minified for es2022 like dist/, gzipped at level 9. Each entry is an app that imports
 * only what it names, from the browser entry (src/index.ts), and keeps it alive:
 *  - `dialAndListen` alone;
 *  - `dialAndListen` + `serveHttp`;
 *  - for comparison, yamux-js built for the browser: it is a Node library (node:stream, Buffer), so it
 *    needs the `buffer` and `readable-stream` polyfills (and what they pull in: events, process,
 *    string_decoder, abort-controller) to run in a page at all. That is why wslis has its own yamux on web streams.
 *
 * test/bundle-size.test.ts holds the budgets; `npm run bench` prints the sizes next to the targets.
 */

import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { build, type Rollup } from "vite";

const root = resolve(import.meta.dirname, "..");
const require = createRequire(import.meta.url);
const browserEntry = JSON.stringify(join(root, "src/index.ts"));

export interface BundleEntry {
  name: string;
  /** The app's source: what it imports and keeps. */
  source: string;
  /** Module aliases for the browser build (Node built-ins to their polyfills). */
  alias?: Array<{ find: RegExp; replacement: string }>;
  /** The size an issue or a user holds it to, min+gzip bytes, if any. */
  target?: number;
}

export const ENTRIES: BundleEntry[] = [
  {
    name: "wslis: dialAndListen",
    source: `import { dialAndListen } from ${browserEntry};\nglobalThis.app = { dialAndListen };\n`,
    target: 6 * 1024,
  },
  {
    name: "wslis: dialAndListen + serveHttp",
    source: `import { dialAndListen, serveHttp } from ${browserEntry};\nglobalThis.app = { dialAndListen, serveHttp };\n`,
    target: 10 * 1024,
  },
  {
    name: "yamux-js 0.2 + buffer + readable-stream",
    source:
      `import { Buffer } from "buffer";\nglobalThis.Buffer ??= Buffer;\n` +
      `import { Client, Server } from "yamux-js";\nglobalThis.app = { Client, Server };\n`,
    // Exact names only: readable-stream itself imports "buffer/", "events/" and "string_decoder/".
    alias: [
      { find: /^stream$/, replacement: require.resolve("readable-stream") },
      { find: /^buffer$/, replacement: require.resolve("buffer/") },
    ],
  },
];

export interface BundleSize {
  name: string;
  /** Minified bytes, all chunks. */
  minified: number;
  /** The same gzipped at level 9. */
  gzipped: number;
  target?: number;
}

/** Builds one entry as an app would (tree-shaken, minified, one ES module) and measures it. */
export async function measureBundle(entry: BundleEntry): Promise<BundleSize> {
  // Inside the repository, so the app's bare imports resolve from its node_modules.
  const cache = join(root, "node_modules/.cache");
  await mkdir(cache, { recursive: true });
  const dir = await mkdtemp(join(cache, "wslis-bundle-"));
  try {
    const file = join(dir, "app.js");
    await writeFile(file, entry.source);
    const output = (await build({
      configFile: false,
      root: dir,
      logLevel: "silent",
      resolve: { alias: entry.alias ?? [] },
      define: { "process.env.NODE_DEBUG": "false" },
      build: {
        write: false,
        target: "es2022",
        minify: true,
        sourcemap: false,
        lib: { entry: file, formats: ["es"], fileName: "app" },
      },
    })) as Rollup.RollupOutput | Rollup.RollupOutput[];
    const chunks = (Array.isArray(output) ? output : [output]).flatMap((o) => o.output);
    let minified = 0;
    let gzipped = 0;
    for (const chunk of chunks) {
      if (chunk.type !== "chunk") continue;
      const code = Buffer.from(chunk.code);
      minified += code.length;
      gzipped += gzipSync(code, { level: 9 }).length;
    }
    return { name: entry.name, minified, gzipped, target: entry.target };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Every entry of {@link ENTRIES}, in order. */
export async function benchBundle(log: (line: string) => void = () => {}): Promise<BundleSize[]> {
  const sizes: BundleSize[] = [];
  for (const entry of ENTRIES) {
    sizes.push(await measureBundle(entry));
    log(`bundle: ${entry.name}: ${sizes.at(-1)!.gzipped} B min+gzip`);
  }
  return sizes;
}

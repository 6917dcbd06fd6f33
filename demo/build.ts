/**
 * Makes sure the kiosk page and the admin console are built (dist/demo) and newer than their sources,
 * so `npm start` works on a fresh clone and after edits. Runs Vite's build API for mode "demo".
 */

import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** Root of the repository. */
export const ROOT = join(import.meta.dirname, "..");
/** Where `vite build --mode demo` writes. */
export const DEMO_DIST = join(ROOT, "dist", "demo");
/** The built pages, relative to {@link DEMO_DIST}. */
export const KIOSK_PAGE = "index.html";
export const ADMIN_PAGE = join("demo", "admin", "index.html");

/** Files and folders whose changes call for a rebuild. */
const SOURCES = ["index.html", "vite.config.ts", "demo/kiosk", "demo/admin", "demo/shared.ts", "src"];

/** Builds dist/demo when a page is missing or older than any source; returns whether it built. */
export async function ensureDemoBuilt(log: (line: string) => void): Promise<boolean> {
  const builtAt = Math.min(...[KIOSK_PAGE, ADMIN_PAGE].map((page) => mtime(join(DEMO_DIST, page))));
  const changedAt = Math.max(...SOURCES.map((source) => newest(join(ROOT, source))));
  if (builtAt >= changedAt) return false;
  log(builtAt === 0 ? "Building the demo pages (first run)…" : "Sources changed: rebuilding the demo pages…");
  const { build } = await import("vite");
  await build({ root: ROOT, configFile: join(ROOT, "vite.config.ts"), mode: "demo", logLevel: "warn" });
  return true;
}

/** Modification time in ms, or 0 when the file does not exist. */
function mtime(path: string): number {
  return existsSync(path) ? statSync(path).mtimeMs : 0;
}

/** Newest modification time of a file, or of any file under a folder. */
function newest(path: string): number {
  if (!existsSync(path)) return 0;
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let latest = stat.mtimeMs;
  for (const entry of readdirSync(path)) latest = Math.max(latest, newest(join(path, entry)));
  return latest;
}

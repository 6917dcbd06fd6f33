import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

/** Absolute path of a page, whatever the working directory. */
const page = (path: string) => fileURLToPath(new URL(path, import.meta.url));

/**
 * `vite build` builds the device SDK for browsers: dist/wslis.js (ESM) and dist/wslis.iife.js (script tag,
 * global `wslis`). `vite build --mode demo` builds the kiosk demo page (index.html + demo/) into
 * dist/demo; the demo server serves it.
 */
export default defineConfig(({ mode }) =>
  mode === "demo"
    ? {
        build: {
          outDir: "dist/demo",
          emptyOutDir: true,
          sourcemap: true,
          // Two pages: the kiosk (/) and the admin console (/admin, served from demo/admin/index.html).
          rolldownOptions: { input: { kiosk: page("index.html"), admin: page("demo/admin/index.html") } },
        },
      }
    : {
        build: {
          outDir: "dist",
          emptyOutDir: false,
          sourcemap: true,
          target: "es2022",
          minify: true,
          lib: {
            entry: "src/index.ts",
            name: "wslis",
            formats: ["es", "iife"],
            fileName: (format) => (format === "es" ? "wslis.js" : `wslis.${format}.js`),
          },
        },
      },
);

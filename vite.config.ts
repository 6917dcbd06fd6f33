import { defineConfig } from "vite";

/**
 * `vite build` builds the device SDK for browsers: dist/wslis.js (ESM) and dist/wslis.iife.js (script tag,
 * global `wslis`). `vite build --mode demo` builds the kiosk demo page (index.html + demo/) into
 * dist/demo; the demo server serves it.
 */
export default defineConfig(({ mode }) =>
  mode === "demo"
    ? {
        build: { outDir: "dist/demo", emptyOutDir: true, sourcemap: true },
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

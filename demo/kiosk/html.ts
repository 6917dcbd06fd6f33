/**
 * HTML displays: pasted markup shown without ever running it.
 *
 * Two independent layers, so a gap in one is caught by the other:
 * 1. DOMPurify (a maintained sanitizer, not a pattern list) removes scripts, event handlers, dangerous URL
 *    schemes however they are encoded (`java&#9;script:`, leading control characters), `<iframe>`,
 *    `<object>`, `<embed>`, `<meta>`, `<base>` and forms.
 * 2. The result is shown in an `<iframe sandbox srcdoc>` with no sandbox flags at all: an opaque origin (no
 *    access to the kiosk page, its storage or its connection), no scripts, no plugins, no forms, no popups
 *    and no navigation of the kiosk itself; nested frames inherit all of it. The document also carries a
 *    Content-Security-Policy that allows no script, frame or object.
 *
 * Screenshots cannot read that frame (its origin is opaque), so `GET /screenshot` renders the same sanitized
 * document a second time, for the capture only, in a frame sandboxed with `allow-same-origin` and still
 * without `allow-scripts`: readable by the kiosk page, and as inert as the first (see screenshot.ts).
 */

import DOMPurify from "dompurify";

/** The CSP of an HTML display's document: styles, images, fonts and media from anywhere, nothing that runs. */
const DISPLAY_CSP = [
  "default-src 'none'",
  "script-src 'none'",
  "object-src 'none'",
  "frame-src 'none'",
  "child-src 'none'",
  "worker-src 'none'",
  "form-action 'none'",
  "base-uri 'none'",
  "style-src 'unsafe-inline' http: https: data:",
  "img-src http: https: data: blob:",
  "font-src http: https: data:",
  "media-src http: https: data: blob:",
].join("; ");

/** Looks like the kiosk's own text until the markup styles itself; the page fills the screen. */
const BASE_STYLE =
  "html,body{margin:0;height:100%}" +
  "html{background:#0e141c;color:#e8eef6;color-scheme:dark;" +
  'font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","DejaVu Sans",sans-serif}';

/** Sandbox flags of the displayed frame: none. */
export const DISPLAY_SANDBOX = "";
/** Sandbox flags of the screenshot's copy: readable by the kiosk page, still no scripts. */
export const CAPTURE_SANDBOX = "allow-same-origin";

/** Removes everything in `html` that could run, navigate, submit or embed another document. */
export function sanitizeHtml(html: string): string {
  return DOMPurify.sanitize(html, {
    // Keep a leading <style>: without this the parser moves it to <head> and DOMPurify drops it.
    FORCE_BODY: true,
    FORBID_TAGS: ["form", "iframe", "frame", "frameset", "object", "embed", "meta", "base", "link", "portal"],
    FORBID_ATTR: ["srcdoc", "formaction", "action", "ping"],
  });
}

/** The whole document an HTML display's frame shows (`srcdoc`): CSP, base style, sanitized markup. */
export function displayDocument(html: string): string {
  const csp = DISPLAY_CSP.replace(/"/g, "&quot;");
  return (
    `<!doctype html><html><head><meta charset="utf-8">` +
    `<meta http-equiv="Content-Security-Policy" content="${csp}">` +
    `<style>${BASE_STYLE}</style></head><body>${sanitizeHtml(html)}</body></html>`
  );
}

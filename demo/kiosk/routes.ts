/**
 * The kiosk's reverse-HTTP routes, as one web-standard handler `(Request) => Response` for `serveHttp`:
 *
 *   GET  /display     → the current display (JSON)
 *   PUT  /display     ← {"url": …} | {"html": …} | {"dashboard": "welcome"|"clock"|"metrics"|"chart"}
 *   GET  /screenshot  → image/png of the stage (?scale=0.1…3, default 1: one pixel per CSS pixel)
 *   GET  /status      → KioskStatus (JSON)
 *
 * Errors are JSON `{ "error": code, "message": text }` with 400, 404, 405 or 500.
 */

import { DisplayError, parseDisplay, type Display, type KioskStatus } from "../shared.js";
import { MAX_SCALE } from "./screenshot.js";

/** What the routes act on; main.ts wires it to the page. */
export interface Kiosk {
  readonly display: Display;
  show(display: Display): void;
  screenshot(scale: number): Promise<Blob>;
  status(): Promise<KioskStatus>;
}

type Route = Partial<Record<string, (request: Request, url: URL) => Promise<Response> | Response>>;

/** Builds the request handler over `kiosk`. */
export function kioskHandler(kiosk: Kiosk): (request: Request) => Promise<Response> {
  const routes: Record<string, Route> = {
    "/display": {
      GET: () => json(kiosk.display),
      PUT: async (request) => {
        let body: unknown;
        try {
          body = await request.json();
        } catch {
          return problem(400, "bad_json", "the body is not valid JSON");
        }
        const display = parseDisplay(body);
        kiosk.show(display);
        return json(display);
      },
    },
    "/screenshot": {
      GET: async (_request, url) => {
        const scale = Number(url.searchParams.get("scale") ?? "1");
        if (!(scale >= 0.1 && scale <= MAX_SCALE)) return problem(400, "bad_scale", `scale must be between 0.1 and ${MAX_SCALE}`);
        const png = await kiosk.screenshot(scale);
        return new Response(png, { headers: { "Content-Type": "image/png", "Cache-Control": "no-store" } });
      },
    },
    "/status": { GET: async () => json(await kiosk.status()) },
  };

  return async (request) => {
    const url = new URL(request.url);
    const route = routes[url.pathname];
    if (!route) return problem(404, "not_found", `no route ${url.pathname}; try /display, /screenshot or /status`);
    const handle = route[request.method];
    if (!handle) {
      const allow = Object.keys(route).join(", ");
      return problem(405, "method_not_allowed", `${url.pathname} accepts ${allow}`, { Allow: allow });
    }
    try {
      return await handle(request, url);
    } catch (error) {
      if (error instanceof DisplayError) return problem(400, "bad_display", error.message);
      console.error("wslis kiosk: route failed", error);
      return problem(500, "kiosk_error", error instanceof Error ? error.message : String(error));
    }
  };
}

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), { status, headers: { "Content-Type": "application/json" } });
}

function problem(status: number, error: string, message: string, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ error, message }), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

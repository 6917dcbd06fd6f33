/**
 * The kiosk's stage: the one element that shows the current display (a page in a full-size iframe, a
 * piece of HTML, or a built-in dashboard). `GET /screenshot` captures it.
 */

import { IDLE_DISPLAY, type Display } from "../shared.js";
import { renderDashboard, type DashboardContext } from "./dashboards.js";
import { h } from "../dom.js";
import { DISPLAY_SANDBOX, displayDocument } from "./html.js";

export class Stage {
  readonly element: HTMLElement;
  readonly #context: DashboardContext;
  #display: Display = IDLE_DISPLAY;
  #stop: (() => void) | undefined;

  constructor(element: HTMLElement, context: DashboardContext) {
    this.element = element;
    this.#context = context;
  }

  /** What is shown now. */
  get display(): Display {
    return this.#display;
  }

  /**
   * Replaces what is shown. `html` is sanitized and shown in a sandboxed frame that can run nothing (see
   * html.ts); its styles apply. A `url` is shown in a frame that may run its own scripts but not navigate
   * the kiosk; a path is resolved against the kiosk's own origin, so same-origin pages can be captured by
   * screenshots, cross-origin ones cannot.
   */
  show(display: Display): void {
    this.#stop?.();
    this.#stop = undefined;
    this.#display = display;
    if ("url" in display) {
      const src = new URL(display.url, location.href).href;
      this.element.dataset.kind = "url";
      this.element.replaceChildren(h("iframe", { class: "frame", src, title: src, allow: "autoplay; fullscreen", sandbox: URL_SANDBOX }));
    } else if ("html" in display) {
      this.element.dataset.kind = "html";
      this.element.replaceChildren(
        h("iframe", { class: "frame html-frame", sandbox: DISPLAY_SANDBOX, srcdoc: displayDocument(display.html), title: "HTML display" }),
      );
    } else {
      this.element.dataset.kind = "dashboard";
      this.element.replaceChildren();
      this.#stop = renderDashboard(display.dashboard, this.element, this.#context);
    }
  }
}

/**
 * A web page may run its scripts, keep its own origin (cookies, storage), submit forms and open popups,
 * but never navigate the kiosk page itself away (no allow-top-navigation).
 */
const URL_SANDBOX = "allow-scripts allow-same-origin allow-forms allow-popups allow-popups-to-escape-sandbox allow-modals allow-presentation";

/**
 * The kiosk's stage: the one element that shows the current display (a page in a full-size iframe, a
 * piece of HTML, or a built-in dashboard). `GET /screenshot` captures it.
 */

import { IDLE_DISPLAY, type Display } from "../shared.js";
import { renderDashboard, type DashboardContext } from "./dashboards.js";
import { h } from "../dom.js";

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
   * Replaces what is shown. `html` is inserted as markup: its styles apply; scripts, inline event
   * handlers and javascript: links are removed (a kiosk should not run pasted code). A `url` path is resolved against the
   * kiosk's own origin, so same-origin pages can be captured by screenshots; cross-origin ones cannot.
   */
  show(display: Display): void {
    this.#stop?.();
    this.#stop = undefined;
    this.#display = display;
    if ("url" in display) {
      const src = new URL(display.url, location.href).href;
      this.element.dataset.kind = "url";
      this.element.replaceChildren(h("iframe", { class: "frame", src, title: src, allow: "autoplay; fullscreen" }));
    } else if ("html" in display) {
      this.element.dataset.kind = "html";
      this.element.replaceChildren(h("div", { class: "html-display" }, ...inertMarkup(display.html)));
    } else {
      this.element.dataset.kind = "dashboard";
      this.element.replaceChildren();
      this.#stop = renderDashboard(display.dashboard, this.element, this.#context);
    }
  }
}

/**
 * Parses `html` without running anything (DOMParser documents are inert) and strips what could run once
 * adopted: script elements, on* attributes, javascript: URLs. Styles and `<style>` elements stay.
 */
function inertMarkup(html: string): Node[] {
  const parsed = new DOMParser().parseFromString(html, "text/html");
  for (const script of parsed.querySelectorAll("script")) script.remove();
  for (const element of parsed.querySelectorAll("*")) {
    for (const { name, value } of [...element.attributes]) {
      if (name.startsWith("on") || /^\s*javascript:/i.test(value)) element.removeAttribute(name);
    }
  }
  // <style> and <link> in the markup land in the parsed head; keep them with the content.
  return [...parsed.head.childNodes, ...parsed.body.childNodes].map((node) => document.adoptNode(node));
}

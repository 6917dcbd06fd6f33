/** A small element builder for the kiosk and the console (DOM and SVG): `h("div", { class: "x" }, "text", child)`. */

type Child = Node | string | number | null | undefined | false;

const SVG_NS = "http://www.w3.org/2000/svg";
const SVG_TAGS = new Set(["svg", "path", "line", "text", "circle", "rect", "g", "defs", "linearGradient", "stop"]);

/** Creates an HTML (or, for SVG tag names, SVG) element with attributes and children. */
export function h(tag: string, attributes: Record<string, string | number | undefined> = {}, ...children: Child[]): Element {
  const element = SVG_TAGS.has(tag) ? document.createElementNS(SVG_NS, tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined) element.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return element;
}

/**
 * A deterministic pseudo-random source in [0, 1) (a 32-bit linear congruential generator), so the demo
 * data look alike on every kiosk and in the README screenshots. Not for anything that needs randomness.
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
}

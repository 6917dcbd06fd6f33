/**
 * `GET /screenshot`: the stage rendered to a PNG in the page (modern-screenshot: DOM → SVG
 * foreignObject → canvas). What it cannot capture: the content of cross-origin iframes (the browser does
 * not let a page read them; they come out as a labelled placeholder), cross-origin images served without
 * CORS headers, and video/canvas content that is not painted at capture time.
 */

import { domToBlob } from "modern-screenshot";

/** Largest accepted scale: a 1920×1080 kiosk at 3× is already a 50-megapixel canvas. */
export const MAX_SCALE = 3;

/** Renders `stage` at viewport size × `scale` and resolves with a PNG. */
export function captureStage(stage: HTMLElement, scale: number): Promise<Blob> {
  return domToBlob(stage, {
    type: "image/png",
    width: window.innerWidth,
    height: window.innerHeight,
    scale,
    backgroundColor: getComputedStyle(stage).backgroundColor,
    // Remote fonts and images get this long, in ms, then render as placeholders.
    timeout: 5000,
    onCloneNode: (clone) => {
      if (clone instanceof Element) for (const frame of clone.querySelectorAll("iframe")) frame.replaceWith(placeholder(frame));
    },
  });
}

/**
 * What a cross-origin iframe looks like in a screenshot. Same-origin iframes never reach here: the
 * library clones their document in place of the iframe.
 */
function placeholder(frame: HTMLIFrameElement): HTMLElement {
  const box = document.createElement("div");
  box.setAttribute("style", frame.getAttribute("style") ?? "");
  Object.assign(box.style, {
    display: "flex",
    flexDirection: "column",
    alignItems: "center",
    justifyContent: "center",
    gap: "12px",
    width: "100%",
    height: "100%",
    background: "#1b2330",
    color: "#c9d4e3",
    font: "500 20px system-ui, sans-serif",
    textAlign: "center",
  });
  const title = document.createElement("div");
  title.textContent = "A page from another site is shown here";
  const detail = document.createElement("div");
  detail.textContent = `${frame.title} — browsers do not let a page capture cross-origin frames`;
  Object.assign(detail.style, { font: "400 15px system-ui, sans-serif", opacity: "0.7", maxWidth: "80%", overflowWrap: "anywhere" });
  box.append(title, detail);
  return box;
}

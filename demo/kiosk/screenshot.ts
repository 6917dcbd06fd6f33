/**
 * `GET /screenshot`: the stage rendered to a PNG in the page (modern-screenshot: DOM → SVG
 * foreignObject → canvas). An HTML display is captured from a readable, script-less copy of its sandboxed
 * frame. What it cannot capture: the content of cross-origin iframes (the browser does
 * not let a page read them; they come out as a labelled placeholder), cross-origin images served without
 * CORS headers, and video/canvas content that is not painted at capture time.
 */

import { domToBlob } from "modern-screenshot";
import { CAPTURE_SANDBOX } from "./html.js";

/** Largest accepted scale: a 1920×1080 kiosk at 3× is already a 50-megapixel canvas. */
export const MAX_SCALE = 3;

/** How long the screenshot's copy of an HTML display may take to load (images included), in ms. */
const COPY_LOAD_TIMEOUT = 5000;

/** Renders `stage` at viewport size × `scale` and resolves with a PNG. */
export async function captureStage(stage: HTMLElement, scale: number): Promise<Blob> {
  const display = stage.querySelector<HTMLIFrameElement>(":scope > iframe.html-frame");
  // An HTML display's frame has an opaque origin: nothing can read it. Capture a readable, equally
  // script-less copy of the same document instead (see html.ts).
  const copy = display ? await readableCopy(display) : undefined;
  try {
    return await domToBlob(copy ?? stage, {
      type: "image/png",
      width: window.innerWidth,
      height: window.innerHeight,
      scale,
      backgroundColor: getComputedStyle(stage).backgroundColor,
      // The copy waits behind the stage; in the picture it is the whole picture.
      style: copy ? { zIndex: "auto", position: "static" } : null,
      // Remote fonts and images get this long, in ms, then render as placeholders.
      timeout: 5000,
      onCloneNode: (clone) => {
        if (clone instanceof Element) for (const frame of clone.querySelectorAll("iframe")) frame.replaceWith(placeholder(frame));
      },
    });
  } finally {
    copy?.remove();
  }
}

/**
 * A full-screen box behind the stage holding `frame`'s document again, sandboxed with allow-same-origin
 * but without allow-scripts (so the page can read it and nothing in it can run), once it has loaded.
 */
async function readableCopy(frame: HTMLIFrameElement): Promise<HTMLElement> {
  const box = document.createElement("div");
  box.setAttribute("aria-hidden", "true");
  box.dataset.capture = "";
  Object.assign(box.style, { position: "fixed", inset: "0", zIndex: "-1", pointerEvents: "none" });
  const copy = document.createElement("iframe");
  copy.className = frame.className;
  copy.setAttribute("sandbox", CAPTURE_SANDBOX);
  copy.setAttribute("srcdoc", frame.getAttribute("srcdoc") ?? "");
  Object.assign(copy.style, { display: "block", width: "100%", height: "100%", border: "0" });
  box.append(copy);
  const loaded = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, COPY_LOAD_TIMEOUT);
    copy.addEventListener("load", () => (clearTimeout(timer), resolve()), { once: true });
  });
  document.body.append(box);
  await loaded;
  return box;
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

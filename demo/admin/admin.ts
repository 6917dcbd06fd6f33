/**
 * The admin console: a live list of connected kiosks (Server-Sent Events from /api/events) and, for the
 * selected one, what it shows, a screenshot, its round-trip time and a disconnect button. Everything it
 * does goes through the same JSON API anyone can curl.
 */

import { h } from "../dom.js";
import { DASHBOARDS, describeDisplay, DisplayError, parseDisplay, type Dashboard, type DeviceInfo, type Display } from "../shared.js";

const DASHBOARD_LABELS: Record<Dashboard, { title: string; hint: string; icon: string }> = {
  welcome: { title: "Welcome", hint: "The idle screen with the device id", icon: "◎" },
  clock: { title: "Clock", hint: "Large time and date", icon: "◷" },
  metrics: { title: "Metrics", hint: "Six live tiles with sparklines", icon: "▦" },
  chart: { title: "Chart", hint: "Traffic over the last minute", icon: "⌇" },
};

/** After a display change, wait this long (ms) before the automatic screenshot, so fonts and frames settle. */
const SETTLE_BEFORE_SCREENSHOT = 700;

/** How long an action's outcome stays on screen, in ms. */
const MESSAGE_TIME = 5000;

/**
 * Silence on the event stream after which the server counts as unreachable, in ms: it sends a heartbeat
 * every 15 s, so two missed ones.
 */
const SILENCE_LIMIT = 35_000;
/** Wait before opening a new event stream after the browser gave one up, in ms. */
const RECONNECT_DELAY = 2000;

type Tab = "dashboard" | "url" | "html";

const listElement = document.getElementById("devices")!;
const detailElement = document.getElementById("detail")!;
const countElement = document.getElementById("count")!;
const liveElement = document.getElementById("live")!;

let devices: DeviceInfo[] = [];
/**
 * True while the console has no live event stream: the list is the last one the server sent and may be
 * wrong, so kiosks are shown as unknown and nothing can be sent to them.
 */
let stale = true;
let selected: string | undefined = new URLSearchParams(location.hash.slice(1)).get("device") ?? undefined;
let detail: DetailView | undefined;

connectEvents();
setInterval(() => {
  renderList();
  detail?.update(current());
}, 10_000);

function connectEvents(): void {
  const events = new EventSource("/api/events");
  let silence: ReturnType<typeof setTimeout> | undefined;
  const lost = (text: string) => {
    clearTimeout(silence);
    setLive("connecting", text);
    if (!stale) {
      stale = true;
      render();
    }
  };
  // The server also counts as lost when it goes quiet (a hung process, a dead proxy keeps the socket open).
  const heard = () => {
    clearTimeout(silence);
    silence = setTimeout(() => {
      events.close();
      lost("The server stopped answering; reconnecting…");
      connectEvents();
    }, SILENCE_LIMIT);
  };
  events.addEventListener("open", heard);
  events.addEventListener("heartbeat", heard);
  events.addEventListener("error", () => {
    lost("Server unreachable; reconnecting…");
    // The browser retries on its own unless the answer was not an event stream (a proxy's 502, say).
    if (events.readyState === EventSource.CLOSED) setTimeout(connectEvents, RECONNECT_DELAY);
  });
  events.addEventListener("devices", (event) => {
    heard();
    devices = (JSON.parse((event as MessageEvent<string>).data) as { devices: DeviceInfo[] }).devices;
    stale = false;
    setLive("live", "Live");
    if (selected === undefined && devices.length) select(devices[0]!.id);
    render();
  });
}

function setLive(state: string, text: string): void {
  liveElement.dataset.state = state;
  liveElement.querySelector(".text")!.textContent = text;
}

function current(): DeviceInfo | undefined {
  return devices.find((d) => d.id === selected);
}

function select(id: string): void {
  if (selected === id && detail) return;
  selected = id;
  history.replaceState(null, "", `#device=${encodeURIComponent(id)}`);
  detail = undefined;
  render();
}

function render(): void {
  countElement.textContent = stale
    ? devices.length
      ? `${devices.length} kiosk${devices.length === 1 ? "" : "s"}, state unknown`
      : "Kiosks unknown"
    : `${devices.length} kiosk${devices.length === 1 ? "" : "s"} online`;
  countElement.dataset.state = stale ? "unknown" : "live";
  renderList();
  if (!devices.length && !detail) {
    detailElement.replaceChildren(emptyState());
    return;
  }
  if (selected !== undefined && !detail) {
    detail = new DetailView(selected);
    detailElement.replaceChildren(detail.element);
  }
  detail?.update(current());
}

function renderList(): void {
  if (!devices.length) {
    listElement.replaceChildren(h("li", { class: "devices-empty" }, "None yet. Open a kiosk page to see it here."));
    return;
  }
  listElement.replaceChildren(
    ...devices.map((device) => {
      const item = h(
        "li",
        {
          class: "device",
          "data-device-id": device.id,
          "data-state": stale ? "unknown" : "online",
          "aria-selected": String(device.id === selected),
          tabindex: 0,
        },
        h("div", { class: "device-top" }, h("span", { class: "dot" }), h("span", { class: "device-id" }, device.id)),
        h("div", { class: "device-display" }, device.display ? describeDisplay(device.display) : "…"),
        h("div", { class: "device-meta" }, [device.node ? `node ${device.node}` : null, device.remoteAddress, rttText(device.rtt), `up ${since(device.connectedAt)}`].filter(Boolean).join(" · ")),
      ) as HTMLElement;
      item.addEventListener("click", () => select(device.id));
      item.addEventListener("keydown", (event) => event.key === "Enter" && select(device.id));
      return item;
    }),
  );
}

function emptyState(): Element {
  const kiosk = `${location.origin}/?deviceId=lobby`;
  return h(
    "section",
    { class: "empty" },
    h("div", { class: "empty-icon" }, "▭"),
    h("h1", {}, "No kiosks connected yet"),
    h("p", {}, "A kiosk is any browser tab that opens the kiosk page. It dials this server and waits for instructions."),
    h("a", { class: "button primary", href: kiosk, target: "_blank", rel: "noopener" }, "Open a kiosk: lobby"),
    h("p", { class: "muted" }, "or open ", h("code", {}, kiosk), " on another screen, with any ", h("code", {}, "deviceId"), " you like."),
  );
}

/** The selected kiosk: built once per selection so typing is never interrupted; `update` refreshes facts. */
class DetailView {
  readonly element: HTMLElement;
  readonly #id: string;
  readonly #facts = h("dl", { class: "facts" });
  readonly #state = h("span", { class: "state-pill" });
  readonly #current = h("div", { class: "current-display" });
  readonly #message = h("div", { class: "message", role: "status" }) as HTMLElement;
  readonly #shot = h("div", { class: "shot-frame" });
  readonly #shotMeta = h("div", { class: "shot-meta" });
  readonly #buttons: HTMLButtonElement[] = [];
  readonly #panes = new Map<Tab, HTMLElement>();
  readonly #tabs = new Map<Tab, HTMLElement>();
  #shotUrl: string | undefined;
  /** The display the last automatic screenshot was scheduled for. */
  #shotOf: string | undefined = "";
  #shotTimer: ReturnType<typeof setTimeout> | undefined;
  #hideMessage: ReturnType<typeof setTimeout> | undefined;
  #info: DeviceInfo | undefined;
  /** Whether the console knows the kiosk is connected now (listed, and the event stream is live). */
  #online = false;

  constructor(id: string) {
    this.#id = id;
    this.element = h(
      "div",
      { class: "detail-inner" },
      h(
        "header",
        { class: "detail-head" },
        h("div", {}, h("div", { class: "eyebrow" }, "Kiosk"), h("h1", { class: "detail-id" }, id, " ", this.#state)),
        h("div", { class: "actions" }, this.#button("Ping", "ping", () => this.#ping()), this.#button("Disconnect", "disconnect", () => this.#disconnect(), "danger")),
      ),
      this.#facts,
      this.#message,
      h(
        "div",
        { class: "columns" },
        h("section", { class: "card" }, h("h2", {}, "Display"), this.#current, this.#displayControls()),
        h(
          "section",
          { class: "card" },
          h("div", { class: "card-head" }, h("h2", {}, "Screenshot"), this.#button("Take screenshot", "screenshot", () => this.#screenshot(), "primary")),
          this.#shot,
          this.#shotMeta,
          h("p", { class: "note" }, "Rendered by the kiosk itself. Pages from other sites (cross-origin frames) appear as a placeholder: browsers do not let a page capture them."),
        ),
      ),
      h("section", { class: "card api" }, h("h2", {}, "Same thing with curl"), h("pre", {}, curlExamples(id))),
    ) as HTMLElement;
    this.#shot.replaceChildren(h("div", { class: "shot-empty" }, "No screenshot yet"));
  }

  update(info: DeviceInfo | undefined): void {
    const online = info !== undefined && !stale;
    // Show what the kiosk displays when it is first seen, and again whenever that changes (from this
    // console, another one, or the API).
    const shown = info?.display ? JSON.stringify(info.display) : undefined;
    if (online && shown !== this.#shotOf) {
      this.#shotOf = shown;
      clearTimeout(this.#shotTimer);
      this.#shotTimer = setTimeout(() => void this.#screenshot(), SETTLE_BEFORE_SCREENSHOT);
    }
    this.#info = info;
    this.#online = online;
    const state = stale ? "unknown" : online ? "online" : "offline";
    this.#state.textContent = state;
    this.#state.setAttribute("data-state", state);
    for (const button of this.#buttons) button.disabled = !online;
    if (stale) {
      this.#current.replaceChildren(
        h("span", { class: "muted" }, "The console cannot reach the server: what this kiosk shows now is unknown. It reconnects on its own."),
      );
      return;
    }
    if (!info) {
      this.#current.replaceChildren(h("span", { class: "muted" }, "This kiosk is not connected. It shows up again as soon as it redials."));
      return;
    }
    const facts: [string, string][] = [
      ["Connected", `${since(info.connectedAt)} ago`],
      ...(info.node ? ([["Node", info.node]] as [string, string][]) : []),
      ["Address", info.remoteAddress ?? (info.node ? "on its node" : "unknown")],
      ["Viewport", info.viewport ? `${info.viewport.width} × ${info.viewport.height} @${info.viewport.devicePixelRatio}x` : "…"],
      ["Round trip", rttText(info.rtt) ?? "…"],
      ["Browser", browserName(info.userAgent)],
    ];
    this.#facts.replaceChildren(...facts.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
    this.#current.replaceChildren(
      h("span", { class: "muted" }, "Showing now: "),
      h("strong", { "data-testid": "current-display" }, info.display ? describeDisplay(info.display) : "…"),
    );
  }

  #displayControls(): Element {
    const tabs = h("div", { class: "tabs", role: "tablist" });
    const panes = h("div", { class: "panes" });
    const add = (tab: Tab, label: string, pane: HTMLElement) => {
      const button = h("button", { class: "tab", role: "tab", "data-tab": tab, type: "button" }, label) as HTMLElement;
      button.addEventListener("click", () => this.#showTab(tab));
      tabs.append(button);
      panes.append(pane);
      this.#tabs.set(tab, button);
      this.#panes.set(tab, pane);
    };

    const dashboards = h("div", { class: "pane dashboards" }) as HTMLElement;
    for (const name of DASHBOARDS) {
      const label = DASHBOARD_LABELS[name];
      const option = h(
        "button",
        { class: "dashboard-option", type: "button", "data-dashboard": name },
        h("span", { class: "dashboard-icon" }, label.icon),
        h("span", { class: "dashboard-title" }, label.title),
        h("span", { class: "dashboard-hint" }, label.hint),
      ) as HTMLButtonElement;
      option.addEventListener("click", () => this.#setDisplay({ dashboard: name }));
      this.#buttons.push(option);
      dashboards.append(option);
    }
    add("dashboard", "Dashboard", dashboards);

    // Not type="url": that refuses paths such as /admin, which the API accepts. The API's own check decides.
    const urlInput = h("input", {
      id: "display-url",
      type: "text",
      inputmode: "url",
      autocomplete: "url",
      required: "",
      placeholder: "https://example.com/status or /admin",
      spellcheck: "false",
    }) as HTMLInputElement;
    urlInput.addEventListener("input", () => urlInput.setCustomValidity(urlProblem(urlInput.value.trim())));
    const urlForm = h(
      "form",
      { class: "pane" },
      h("label", { for: "display-url" }, "Web page to show full screen"),
      h("div", { class: "row" }, urlInput, this.#button("Show page", "apply-url", () => {}, "primary", "submit")),
      h("p", { class: "note" }, "Sites that forbid framing (X-Frame-Options) stay blank; same-origin paths can be screenshotted."),
    ) as HTMLFormElement;
    urlForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const problem = urlProblem(urlInput.value.trim());
      urlInput.setCustomValidity(problem);
      if (problem) urlInput.reportValidity();
      else void this.#setDisplay({ url: urlInput.value.trim() });
    });
    add("url", "Web page", urlForm);

    const htmlInput = h("textarea", { id: "display-html", rows: 7, spellcheck: "false" }) as HTMLTextAreaElement;
    htmlInput.value = SAMPLE_HTML;
    const htmlForm = h(
      "form",
      { class: "pane" },
      h("label", { for: "display-html" }, "HTML to show (styles apply; it is sanitized and shown in a sandbox where nothing runs)"),
      htmlInput,
      h("div", { class: "row end" }, this.#button("Show HTML", "apply-html", () => {}, "primary", "submit")),
    ) as HTMLFormElement;
    htmlForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.#setDisplay({ html: htmlInput.value });
    });
    add("html", "HTML", htmlForm);

    this.#showTab("dashboard");
    return h("div", { class: "display-controls" }, tabs, panes);
  }

  #showTab(tab: Tab): void {
    for (const [name, button] of this.#tabs) button.setAttribute("aria-selected", String(name === tab));
    for (const [name, pane] of this.#panes) pane.hidden = name !== tab;
  }

  #button(label: string, id: string, action: () => unknown, kind = "", type = "button"): HTMLButtonElement {
    const button = h("button", { class: `button ${kind}`.trim(), type, "data-action": id }, label) as HTMLButtonElement;
    if (type === "button") button.addEventListener("click", () => void action());
    this.#buttons.push(button);
    return button;
  }

  async #setDisplay(display: Display): Promise<void> {
    // The screenshot follows from update(): the server announces the new display to every console.
    await this.#run(`Showing ${describeDisplay(display)}…`, async () => {
      await api("PUT", `/api/devices/${encodeURIComponent(this.#id)}/display`, display);
      this.#say(`Now showing ${describeDisplay(display)}.`, "ok");
    });
  }

  async #screenshot(): Promise<void> {
    const started = performance.now();
    this.#shot.classList.add("loading");
    try {
      const response = await fetch(`/api/devices/${encodeURIComponent(this.#id)}/screenshot`);
      if (!response.ok) throw new Error(await errorMessage(response));
      const blob = await response.blob();
      const took = Math.round(performance.now() - started);
      if (this.#shotUrl) URL.revokeObjectURL(this.#shotUrl);
      this.#shotUrl = URL.createObjectURL(blob);
      const image = h("img", { id: "screenshot-img", src: this.#shotUrl, alt: `Screenshot of ${this.#id}` }) as HTMLImageElement;
      await image.decode().catch(() => {});
      this.#shot.replaceChildren(image);
      this.#shotMeta.textContent = `${image.naturalWidth} × ${image.naturalHeight} PNG · ${formatBytes(blob.size)} · ${took} ms · ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      this.#say(`Screenshot failed: ${(error as Error).message}`, "error");
    } finally {
      this.#shot.classList.remove("loading");
    }
  }

  async #ping(): Promise<void> {
    await this.#run("Pinging…", async () => {
      const { rtt } = (await api("POST", `/api/devices/${encodeURIComponent(this.#id)}/ping`)) as { rtt: number };
      this.#say(`Round trip: ${rtt} ms (a yamux ping over the kiosk's WebSocket).`, "ok");
    });
  }

  async #disconnect(): Promise<void> {
    await this.#run("Disconnecting…", async () => {
      await api("POST", `/api/devices/${encodeURIComponent(this.#id)}/disconnect`);
      this.#say("Disconnected. A kiosk redials on its own, so it comes back in a moment.", "ok");
    });
  }

  /** Runs an action with the buttons disabled and its failure shown. */
  async #run(pending: string, action: () => Promise<void>): Promise<void> {
    this.#say(pending, "pending");
    for (const button of this.#buttons) button.disabled = true;
    try {
      await action();
    } catch (error) {
      this.#say((error as Error).message, "error");
    } finally {
      for (const button of this.#buttons) button.disabled = !this.#online;
    }
  }

  #say(text: string, kind: "ok" | "error" | "pending"): void {
    clearTimeout(this.#hideMessage);
    this.#message.textContent = text;
    this.#message.dataset.kind = kind;
    if (kind !== "pending") this.#hideMessage = setTimeout(() => (this.#message.dataset.kind = "hidden"), MESSAGE_TIME);
  }
}

const SAMPLE_HTML = `<div style="height:100%;display:grid;place-items:center;background:linear-gradient(135deg,#0f766e,#1e3a8a);color:#fff;font:600 7vmin system-ui">
  Welcome to the office 👋
</div>`;

/** Calls the JSON API; throws the server's error message on failure. */
async function api(method: string, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(await errorMessage(response));
  return response.json();
}

async function errorMessage(response: Response): Promise<string> {
  try {
    const { message } = (await response.json()) as { message?: string };
    return `${response.status}: ${message ?? response.statusText}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

/** Why the URL box's text would be refused by the API, or "" when it would be accepted. */
function urlProblem(url: string): string {
  try {
    parseDisplay({ url });
    return "";
  } catch (error) {
    if (error instanceof DisplayError) return error.message;
    throw error;
  }
}

function curlExamples(id: string): string {
  const base = `${location.origin}/api/devices/${encodeURIComponent(id)}`;
  const file = shellQuote(`${id.replace(/[^\w.@:-]+/g, "_")}.png`);
  return [
    `curl -X PUT ${base}/display -d '{"dashboard":"clock"}'`,
    `curl -X PUT ${base}/display -d '{"url":"https://example.com"}'`,
    `curl ${base}/screenshot -o ${file}`,
    `curl ${base}/status`,
  ].join("\n");
}

/** `text` as one POSIX shell word. */
function shellQuote(text: string): string {
  return /^[\w.@:/-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}

function rttText(rtt: number | null): string | undefined {
  return rtt === null ? undefined : `${rtt} ms`;
}

/** "12 s", "3 min", "2 h 5 min". */
function since(iso: string): string {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function browserName(userAgent: string | null): string {
  if (!userAgent) return "unknown";
  const match = /(Firefox|Edg|OPR|Chrome|HeadlessChrome|Safari)\/([\d.]+)/.exec(userAgent);
  const os = /Windows|Mac OS X|Android|Linux|iPhone|iPad|CrOS/.exec(userAgent)?.[0]?.replace("Mac OS X", "macOS");
  return match ? `${match[1] === "Edg" ? "Edge" : match[1]} ${match[2]!.split(".")[0]}${os ? ` on ${os}` : ""}` : userAgent.slice(0, 40);
}

function formatBytes(bytes: number): string {
  return bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(0)} KB` : `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

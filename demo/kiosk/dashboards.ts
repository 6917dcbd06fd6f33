/**
 * The built-in dashboards. Plain DOM and inline SVG only, so `GET /screenshot` captures them exactly.
 * The metrics and chart show simulated data (labelled as such): the demo is about driving the screen.
 */

import type { Dashboard } from "../shared.js";
import { h, seededRandom } from "../dom.js";

/** What a dashboard may show about the kiosk itself. */
export interface DashboardContext {
  deviceId: string;
  /** Where the admin console is. */
  adminUrl: string;
}

/** Renders into `host` and returns a function that stops its timers. */
type Render = (host: HTMLElement, context: DashboardContext) => () => void;

/** Renders `dashboard` into `host`; call the result to stop it. */
export function renderDashboard(dashboard: Dashboard, host: HTMLElement, context: DashboardContext): () => void {
  return renderers[dashboard](host, context);
}

const renderers: Record<Dashboard, Render> = { welcome, clock, metrics, chart };

/** Runs `tick` now and every `ms` milliseconds; returns the stopper. */
function every(ms: number, tick: () => void): () => void {
  tick();
  const timer = setInterval(tick, ms);
  return () => clearInterval(timer);
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hour12: false });
const dateFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric" });

function welcome(host: HTMLElement, { deviceId, adminUrl }: DashboardContext): () => void {
  const time = h("span");
  host.append(
    h(
      "section",
      { class: "dash welcome" },
      h("div", { class: "welcome-kicker" }, "wslis kiosk"),
      h("h1", { class: "welcome-id" }, deviceId),
      h("p", { class: "welcome-lead" }, "This screen is waiting for instructions."),
      h("p", { class: "welcome-hint" }, "Choose what it shows from the admin console: ", h("strong", {}, adminUrl)),
      h("div", { class: "welcome-time" }, time),
    ),
  );
  return every(1000, () => (time.textContent = timeFormat.format(new Date())));
}

function clock(host: HTMLElement): () => void {
  const hm = h("span", { class: "clock-hm" });
  const seconds = h("span", { class: "clock-s" });
  const date = h("div", { class: "clock-date" });
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  host.append(
    h(
      "section",
      { class: "dash clock" },
      h("div", { class: "clock-time" }, hm, seconds),
      date,
      h("div", { class: "clock-zone" }, zone.replace(/_/g, " ")),
    ),
  );
  return every(1000, () => {
    const now = new Date();
    hm.textContent = timeFormat.format(now);
    seconds.textContent = String(now.getSeconds()).padStart(2, "0");
    date.textContent = dateFormat.format(now);
  });
}

interface Tile {
  label: string;
  unit: string;
  base: number;
  /** Largest step of the random walk, as a fraction of `base`. */
  jitter: number;
  decimals: number;
  /** Whether a rise is good news (green) or bad news (red). */
  upIsGood: boolean;
}

const TILES: Tile[] = [
  { label: "Visitors today", unit: "", base: 1284, jitter: 0.01, decimals: 0, upIsGood: true },
  { label: "Orders per hour", unit: "", base: 86, jitter: 0.05, decimals: 0, upIsGood: true },
  { label: "Median response", unit: "ms", base: 42, jitter: 0.06, decimals: 0, upIsGood: false },
  { label: "Open tickets", unit: "", base: 17, jitter: 0.08, decimals: 0, upIsGood: false },
  { label: "Availability", unit: "%", base: 99.96, jitter: 0.0002, decimals: 2, upIsGood: true },
  { label: "Satisfaction", unit: "/ 5", base: 4.6, jitter: 0.01, decimals: 1, upIsGood: true },
];

const HISTORY = 30;

function metrics(host: HTMLElement): () => void {
  const random = seededRandom(7);
  const tiles = TILES.map((tile) => {
    const history: number[] = [];
    let value = tile.base;
    for (let i = 0; i < HISTORY; i++) history.push((value = walk(value, tile, random)));
    const valueEl = h("span", { class: "tile-value" });
    const deltaEl = h("span", { class: "tile-delta" });
    const spark = h("svg", { class: "tile-spark", viewBox: "0 0 100 30", preserveAspectRatio: "none" });
    const element = h(
      "article",
      { class: "tile" },
      h("div", { class: "tile-label" }, tile.label),
      h("div", { class: "tile-main" }, valueEl, h("span", { class: "tile-unit" }, tile.unit)),
      deltaEl,
      spark,
    );
    return { tile, history, valueEl, deltaEl, spark, element };
  });
  host.append(
    h(
      "section",
      { class: "dash metrics" },
      h("header", { class: "dash-head" }, h("h2", {}, "Operations"), h("span", { class: "dash-note" }, "simulated data")),
      h("div", { class: "tiles" }, ...tiles.map((t) => t.element)),
    ),
  );
  return every(2000, () => {
    for (const t of tiles) {
      const last = t.history[t.history.length - 1]!;
      t.history.push(walk(last, t.tile, random));
      t.history.shift();
      const now = t.history[t.history.length - 1]!;
      const first = t.history[0]!;
      const change = ((now - first) / first) * 100;
      const good = change === 0 ? "flat" : change > 0 === t.tile.upIsGood ? "good" : "bad";
      t.valueEl.textContent = now.toLocaleString("en", { minimumFractionDigits: t.tile.decimals, maximumFractionDigits: t.tile.decimals });
      t.deltaEl.textContent = `${change >= 0 ? "▲" : "▼"} ${Math.abs(change).toFixed(1)}% in the last minute`;
      t.deltaEl.setAttribute("data-trend", good);
      const line = sparkPath(t.history, 100, 30);
      t.spark.replaceChildren(
        h("path", { class: "spark-area", d: `${line}L100,30L0,30Z`, "data-trend": good }),
        h("path", { class: "spark-line", d: line, "data-trend": good }),
      );
    }
  });
}

function walk(value: number, tile: Tile, random: () => number): number {
  const step = (random() - 0.5) * 2 * tile.jitter * tile.base;
  // Pull back towards the base so the numbers stay plausible for hours.
  return value + step + (tile.base - value) * 0.05;
}

/** An SVG path through `values`, scaled into a width × height box (y grows downwards). */
function sparkPath(values: number[], width: number, height: number, pad = 2): string {
  const min = Math.min(...values);
  const max = Math.max(...values);
  const span = max - min || 1;
  return values
    .map((v, i) => {
      const x = (i / (values.length - 1)) * width;
      const y = pad + (1 - (v - min) / span) * (height - 2 * pad);
      return `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join("");
}

/** Samples on the chart, one per second: -60 s … now. */
const CHART_POINTS = 61;

function chart(host: HTMLElement): () => void {
  const random = seededRandom(42);
  const series = [
    { name: "Requests / s", class: "series-a", values: [] as number[], base: 420, jitter: 60 },
    { name: "Errors / s × 10", class: "series-b", values: [] as number[], base: 90, jitter: 30 },
  ];
  for (const s of series) {
    let v = s.base;
    for (let i = 0; i < CHART_POINTS; i++) s.values.push((v = Math.max(0, v + (random() - 0.5) * s.jitter + (s.base - v) * 0.1)));
  }
  const svg = h("svg", { class: "chart-svg" });
  const legend = h("div", { class: "chart-legend" });
  host.append(
    h(
      "section",
      { class: "dash chart" },
      h("header", { class: "dash-head" }, h("h2", {}, "Traffic, last 60 seconds"), legend, h("span", { class: "dash-note" }, "simulated data")),
      h("div", { class: "chart-box" }, svg),
    ),
  );
  return every(1000, () => {
    for (const s of series) {
      const last = s.values[s.values.length - 1]!;
      s.values.push(Math.max(0, last + (random() - 0.5) * s.jitter + (s.base - last) * 0.1));
      s.values.shift();
    }
    legend.replaceChildren(
      ...series.map((s) =>
        h("span", { class: `legend ${s.class}` }, h("i"), `${s.name} `, h("b", {}, Math.round(s.values[s.values.length - 1]!))),
      ),
    );
    drawChart(svg, series);
  });
}

/** Draws axes, grid and the series at the SVG's current pixel size (text stays crisp at any resolution). */
function drawChart(svg: Element, series: { class: string; values: number[] }[]): void {
  const box = svg.getBoundingClientRect();
  const width = Math.max(200, box.width);
  const height = Math.max(120, box.height);
  // Axis text grows with the screen: 13 px on a laptop, about 20 px at 1080p.
  const font = Math.round(Math.min(22, Math.max(12, height / 38)));
  const left = font * 4;
  const bottom = font * 2;
  const top = font / 2;
  const plotW = width - left - 8;
  const plotH = height - bottom - top;
  const max = niceCeiling(Math.max(...series.flatMap((s) => s.values)));
  const x = (i: number) => left + (i / (CHART_POINTS - 1)) * plotW;
  const y = (v: number) => top + (1 - v / max) * plotH;
  const parts: Element[] = [];
  for (let k = 0; k <= 5; k++) {
    const v = (max / 5) * k;
    parts.push(h("line", { class: "grid", x1: left, x2: left + plotW, y1: y(v), y2: y(v) }));
    parts.push(h("text", { class: "axis", x: left - font * 0.7, y: y(v) + font * 0.35, "text-anchor": "end", "font-size": font }, Math.round(v)));
  }
  const ticks: [index: number, label: string, anchor: string][] = [
    [0, "-60s", "start"],
    [15, "-45s", "middle"],
    [30, "-30s", "middle"],
    [45, "-15s", "middle"],
    [CHART_POINTS - 1, "now", "end"],
  ];
  for (const [index, label, anchor] of ticks) {
    parts.push(h("text", { class: "axis", x: x(index), y: height - font * 0.3, "text-anchor": anchor, "font-size": font }, label));
  }
  for (const s of series) {
    const line = s.values.map((v, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join("");
    parts.push(h("path", { class: `area ${s.class}`, d: `${line}L${x(CHART_POINTS - 1)},${y(0)}L${x(0)},${y(0)}Z` }));
    parts.push(h("path", { class: `line ${s.class}`, d: line }));
  }
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren(...parts);
}

/** The next round number at or above `value` (1, 2, 5 × 10^n), for the y axis. */
function niceCeiling(value: number): number {
  const magnitude = 10 ** Math.floor(Math.log10(Math.max(value, 1)));
  for (const step of [1, 2, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

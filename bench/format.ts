/** Helpers every bench section shares: markdown tables, rounding, medians, ratios against targets. */

export type Row = Record<string, string | number>;

/** Renders rows as a markdown table; columns are the first row's keys. */
export function markdownTable(rows: Row[]): string {
  if (rows.length === 0) return "(no rows)\n";
  const columns = Object.keys(rows[0]!);
  const cell = (value: string | number | undefined) => String(value ?? "").replaceAll("|", "\\|");
  const lines = [
    `| ${columns.join(" | ")} |`,
    `| ${columns.map((_, i) => (typeof rows[0]![columns[i]!] === "number" ? "---:" : "---")).join(" | ")} |`,
    ...rows.map((row) => `| ${columns.map((column) => cell(row[column])).join(" | ")} |`),
  ];
  return `${lines.join("\n")}\n`;
}

/** Two significant digits for small numbers, none for large ones. */
export function round(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  return value >= 10 ? value.toFixed(0) : value.toPrecision(2);
}

/** A ratio with two decimals (three below 0.1). */
export function ratio(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  return value.toFixed(value < 0.1 ? 3 : 2);
}

/** The middle value (the upper one of the two middle values for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** A target such as "≤ 1.0×": `measured` meets it or not. */
export interface Target {
  measure: string;
  /** The measured ratio (ours / theirs). */
  measured: number;
  /** The bound, and which side of it is good. */
  bound: number;
  better: "lower" | "higher";
}

/** One row per target: the measured ratio, the bound, met / not met. */
export function targetRows(targets: Target[]): Row[] {
  return targets.map(({ measure, measured, bound, better }) => ({
    measure,
    measured: `${ratio(measured)}×`,
    target: `${better === "lower" ? "≤" : "≥"} ${bound}×`,
    result: (better === "lower" ? measured <= bound : measured >= bound) ? "met" : "not met",
  }));
}

/** The progress log every section writes to: stderr. */
export const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

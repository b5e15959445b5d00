// The results of npm run bench: a Markdown table of every measurement, a table of the targets
// (ratios taken in this run), and an SVG chart of those ratios.

export interface Measure {
  scenario: string;
  tool: string;
  objects: number;
  bytes: number;
  seconds: number;
  /** Undefined where the contender is not a process of its own (the daemon's latency). */
  cpuSeconds?: number | undefined;
  peakRssMb: number;
}

/** One target of the issue, checked on this run's numbers. */
export interface Check {
  label: string;
  /** The measured value: a ratio (higher is better) unless `unit` says otherwise. */
  value: number;
  target: number;
  /** "×" for ratios that must reach the target; the other units for values that must stay at or under it. */
  unit: "×" | "s" | "ms" | "MB" | "%" | "req/s";
  /** What the ratio is made of, for the reader. */
  detail: string;
}

export const met = (c: Check) => (c.unit === "×" ? c.value >= c.target : c.value <= c.target);

function num(v: number, digits: number): string {
  return v.toFixed(digits);
}

function formatValue(c: Check): string {
  return c.unit === "×"
    ? `${num(c.value, 2)}×`
    : `${num(c.value, c.unit === "s" ? 3 : c.unit === "%" ? 2 : 0)} ${c.unit}`;
}

function formatTarget(c: Check): string {
  return c.unit === "×" ? `≥ ${c.target}×` : `≤ ${c.target} ${c.unit}`;
}

export function markdown(
  header: string[],
  results: Measure[],
  checks: Check[],
  notes: string[] = [],
): string {
  const rows = results.map((m) => {
    const cpu = m.cpuSeconds === undefined ? "—" : num((m.cpuSeconds * 1000) / m.objects, 2);
    return `| ${m.scenario} | ${m.tool} | ${num(m.objects / m.seconds, 0)} | ${num(m.bytes / 1e6 / m.seconds, 1)} | ${num(m.seconds, 2)} | ${cpu} | ${num(m.peakRssMb, 0)} |`;
  });
  const targets = checks.map(
    (c) =>
      `| ${c.label} | ${formatValue(c)} | ${formatTarget(c)} | ${met(c) ? "yes" : "**no**"} | ${c.detail} |`,
  );
  return [
    ...header,
    "",
    "| scenario | tool | objects/s | MB/s | wall s | CPU s per 1,000 objects | peak RSS MB |",
    "|---|---|---|---|---|---|---|",
    ...rows,
    "",
    "| target | measured | wanted | met | from |",
    "|---|---|---|---|---|",
    ...targets,
    "",
    ...(notes.length > 0 ? [...notes, ""] : []),
  ].join("\n");
}

const escape = (s: string) =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");

/**
 * A horizontal bar per ratio target on a log scale from 1/4× to 256×: the bar is the measured
 * ratio, the tick the target, 1× a dashed line. Met targets are green, missed ones orange.
 */
export function svgChart(title: string, checks: Check[]): string {
  const ratios = checks.filter((c) => c.unit === "×");
  const left = 330;
  const width = 460;
  const rowHeight = 26;
  const top = 48;
  const lo = Math.log2(0.25);
  const hi = Math.log2(256);
  const x = (v: number) =>
    Math.round(
      (left + ((Math.min(Math.max(Math.log2(v), lo), hi) - lo) / (hi - lo)) * width) * 10,
    ) / 10;
  const height = top + ratios.length * rowHeight + 36;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${left + width + 90}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">${escape(title)}</text>`,
  ];
  for (const tick of [0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256]) {
    const tx = x(tick);
    parts.push(
      `<line x1="${tx}" y1="${top - 8}" x2="${tx}" y2="${height - 30}" stroke="${tick === 1 ? "#555" : "#ddd"}"${tick === 1 ? ' stroke-dasharray="4 3"' : ""}/>`,
      `<text x="${tx}" y="${height - 14}" text-anchor="middle" fill="#555">${tick}×</text>`,
    );
  }
  ratios.forEach((c, i) => {
    const y = top + i * rowHeight;
    const colour = met(c) ? "#2e8b57" : "#e07b00";
    parts.push(
      `<text x="${left - 8}" y="${y + 15}" text-anchor="end">${escape(c.label)}</text>`,
      `<rect x="${x(0.25)}" y="${y + 4}" width="${Math.max(1, x(c.value) - x(0.25))}" height="${rowHeight - 10}" fill="${colour}"/>`,
      `<line x1="${x(c.target)}" y1="${y + 1}" x2="${x(c.target)}" y2="${y + rowHeight - 3}" stroke="black" stroke-width="2"/>`,
      `<text x="${x(c.value) + 6}" y="${y + 15}">${num(c.value, 2)}×</text>`,
    );
  });
  parts.push("</svg>", "");
  return parts.join("\n");
}

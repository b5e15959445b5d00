/** What a daemon's /metrics exposes: each series name with the label names seen on it. */
export interface Exposition {
  /** Sample names (histograms give `_bucket`, `_sum` and `_count`) with their label names. */
  series: Map<string, Set<string>>;
}

/** Parses the Prometheus text format, as a scraper would read it. */
export function parseExposition(text: string): Exposition {
  const series = new Map<string, Set<string>>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s/.exec(line);
    if (!m?.[1]) continue;
    const labels = series.get(m[1]) ?? new Set<string>();
    for (const pair of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(pair[1]!);
    series.set(m[1], labels);
  }
  return { series };
}

/** Labels Prometheus adds to every series it scrapes, and the bucket label of histograms. */
const SCRAPE_LABELS = new Set(["instance", "job", "le"]);

/**
 * Problems of one PromQL expression against an exposition: lakefs-mirror series it names that
 * the daemon does not expose, and labels it groups, matches or prints that none of its series
 * carry. Function names and keywords are told apart from series by the `lakefs_mirror_` prefix.
 */
export function checkQuery(expr: string, exposition: Exposition, legend = ""): string[] {
  const problems: string[] = [];
  const names = [...new Set(expr.match(/\blakefs_mirror_[a-z_]+\b/g) ?? [])];
  if (names.length === 0) problems.push(`${expr}: names no lakefs_mirror_ series`);
  const available = new Set<string>(SCRAPE_LABELS);
  for (const name of names) {
    const labels = exposition.series.get(name);
    if (!labels) problems.push(`${expr}: ${name} is not exposed`);
    else for (const l of labels) available.add(l);
  }
  const used = new Set<string>();
  for (const m of expr.matchAll(/\b(?:by|without|on|ignoring)\s*\(([^)]*)\)/g))
    for (const l of m[1]!.split(",")) if (l.trim()) used.add(l.trim());
  for (const m of expr.matchAll(/\{([^}]*)\}/g))
    for (const pair of m[1]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g))
      used.add(pair[1]!);
  for (const m of legend.matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g)) used.add(m[1]!);
  for (const l of used)
    if (!available.has(l)) problems.push(`${expr}: label ${l} is on none of its series`);
  return problems;
}

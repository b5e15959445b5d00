import type { ObjectStats } from "../lakefs/types.ts";
import type { KeyRange } from "./ranges.ts";

/** One level of a commit under a prefix (lakeFS's listing with a delimiter), first page only. */
export type LevelLister = (prefix: string) => Promise<{ results: ObjectStats[]; hasMore: boolean }>;

/** Levels looked into below the root before the split settles. */
const MAX_DEPTH = 3;

/**
 * The ranges a split export starts with: the key space cut at entries of the commit's top
 * levels (objects and common prefixes, found by listings with "/" as delimiter, at most
 * MAX_DEPTH levels deep, one request per prefix looked into), so that one process never lists
 * every object first. Every key lies in exactly one range: a prefix's keys sort together, right
 * at the prefix. At most `wanted` ranges; a range that turns out big is cut further by its
 * worker, by count (see WorkWorker).
 */
export async function initialRanges(list: LevelLister, wanted: number): Promise<KeyRange[]> {
  // The entries found so far, in order; prefixes may be looked into.
  let entries: { path: string; prefix: boolean }[] = [{ path: "", prefix: true }];
  for (let depth = 0; depth <= MAX_DEPTH && entries.length < wanted; depth++) {
    const next: { path: string; prefix: boolean }[] = [];
    let opened = 0;
    for (const e of entries) {
      // A prefix's listing replaces it: its entries lie where it sorted.
      if (!e.prefix || next.length + (entries.length - opened) >= wanted * 4) {
        next.push(e);
        continue;
      }
      opened++;
      const { results } = await list(e.path);
      if (results.length === 0) continue;
      for (const r of results) next.push({ path: r.path, prefix: r.path_type === "common_prefix" });
    }
    if (opened === 0) break;
    entries = next;
  }
  // Cut before every chosen entry but the first: [start, next start), the last to the end.
  const starts = entries.map((e) => e.path);
  const step = Math.max(1, Math.ceil(starts.length / wanted));
  const cuts = starts.filter((_, i) => i > 0 && i % step === 0);
  const ranges: KeyRange[] = [];
  let from = "";
  for (const cut of cuts) {
    if (cut === from) continue;
    ranges.push({ from, to: cut });
    from = cut;
  }
  ranges.push({ from, to: null });
  return ranges;
}

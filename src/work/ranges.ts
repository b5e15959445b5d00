import { createHash } from "node:crypto";
import { compareUtf8 } from "../export/order.ts";

/**
 * A range of keys: every path `p` with `from <= p` and, unless `to` is null, `p < to`, in
 * UTF-8 byte order (the order lakeFS lists and diffs in). The empty `from` starts at the first
 * key; a null `to` runs to the last. Ranges with the same bounds are the same work.
 */
export interface KeyRange {
  from: string;
  to: string | null;
}

export const WHOLE: KeyRange = { from: "", to: null };

export function inRange(range: KeyRange, path: string): boolean {
  return (
    compareUtf8(path, range.from) >= 0 && (range.to === null || compareUtf8(path, range.to) < 0)
  );
}

/** Whether `path` lies past the range's end (a listing in order can stop there). */
export function pastRange(range: KeyRange, path: string): boolean {
  return range.to !== null && compareUtf8(path, range.to) >= 0;
}

/**
 * Splits `range` at `at` (a path inside it, not its start): the part before and the part from
 * `at` on. Together they hold exactly the range's paths.
 */
export function splitAt(range: KeyRange, at: string): [KeyRange, KeyRange] {
  if (!inRange(range, at) || at === range.from)
    throw new RangeError(`cannot split [${range.from}, ${range.to ?? "end"}) at "${at}"`);
  return [
    { from: range.from, to: at },
    { from: at, to: range.to },
  ];
}

/** The longest prefix every path of the range shares (for listings by prefix). */
export function sharedPrefix(range: KeyRange): string {
  if (range.to === null) return "";
  const a = Array.from(range.from);
  const b = Array.from(range.to);
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  // A path that leaves the shared part sorts before `from` or after `to`.
  return a.slice(0, n).join("");
}

/** A work item's name: the same for the same run and range, whoever computes it. */
export function itemId(run: string, range: KeyRange): string {
  return createHash("sha256")
    .update(`${run}\u0000${range.from}\u0000${range.to ?? "\u0001end"}`)
    .digest("hex")
    .slice(0, 24);
}

/** `[from, to)` for messages. */
export function describeRange(range: KeyRange): string {
  return `[${JSON.stringify(range.from)}, ${range.to === null ? "end" : JSON.stringify(range.to)})`;
}

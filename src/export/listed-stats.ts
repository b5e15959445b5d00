import type { ObjectStats } from "../lakefs/types.ts";
import { compareUtf8 } from "./order.ts";
import type { ExportTask } from "./task.ts";

/** One page of the commit's objects whose paths sort after `after`. */
export type ListAfter = (
  after: string,
  amount: number,
) => Promise<{ results: ObjectStats[]; hasMore: boolean }>;

export interface ListedStatsOptions {
  list: ListAfter;
  /** Tasks read ahead of the export (what memory holds beyond one listing page). */
  window?: number;
  /**
   * Fewer copies without stats than this in a window, or a listing too sparse to give this
   * many per page: each is left to its own stat, which costs less than a page.
   */
  minPerPage?: number;
}

const PAGE = 1000;

/** The greatest code point; its UTF-8 encoding (F4 8F BF BF) sorts after every other one. */
const MAX_CODE_POINT = "\u{10FFFF}";

/**
 * A jump target for lakeFS's exclusive `after` that lands right before `path`: `path` with its
 * last code point decremented and U+10FFFF appended. lakeFS compares `after` with paths by their
 * UTF-8 bytes, so the only paths between the target and `path` are those that extend the target
 * (they would have to contain U+10FFFF); a walk reads past them. The target stays well formed:
 * the decrement steps over the surrogate range (U+E000 becomes U+D7FF, UTF-8 encodes no
 * surrogates), and a last U+0000 is dropped instead, which leaves the exact predecessor.
 */
export function justBefore(path: string): string {
  if (path === "") return "";
  const n = path.length;
  const low = path.charCodeAt(n - 1);
  const high = n >= 2 ? path.charCodeAt(n - 2) : 0;
  const pair = low >= 0xdc00 && low <= 0xdfff && high >= 0xd800 && high <= 0xdbff;
  const head = path.slice(0, pair ? n - 2 : n - 1);
  const last = path.codePointAt(head.length)!;
  // U+0000 has no predecessor; a lone surrogate is no code point of a well-formed path.
  if (last === 0 || (last >= 0xd800 && last <= 0xdfff)) return head;
  return head + String.fromCodePoint(last === 0xe000 ? 0xd7ff : last - 1) + MAX_CODE_POINT;
}

/**
 * Gives a diff's copy tasks their object stats (physical address, size, Content-Type, metadata)
 * from the commit's listing, instead of one stat request per object. A diff names paths but no
 * physical addresses; with thousands of changes, the listing supplies a page of up to 1,000
 * objects per request. Both are in UTF-8 byte order, so the two are walked side by side, and
 * the walk jumps (lakeFS's `after`) over stretches the diff does not touch.
 *
 * Sparse diffs would pay a page for a handful of objects: the walk measures how many listed
 * objects each page turned into stats, and when that falls under `minPerPage` it leaves the
 * tasks to their own stats, trying a page again a few windows later. Tasks keep their order;
 * a path the listing lacks keeps no stats and is stat-ed as before (and fails as before).
 *
 * The walk always moves forward: every request starts at or after the end of the page before
 * (a task jumps at most once, and a page that ends before its path is read on from its last
 * path), so no object is fetched twice and a task costs at most its jump plus the pages that
 * lie between the jump and its path. A page that is empty while lakeFS says more follow gives
 * nothing to read on from: that task is left to its own stat.
 */
export async function* withListedStats(
  tasks: AsyncIterable<ExportTask>,
  options: ListedStatsOptions,
): AsyncGenerator<ExportTask> {
  const window = options.window ?? 256;
  const minPerPage = options.minPerPage ?? 16;
  type Page = { results: ObjectStats[]; hasMore: boolean };
  /** The objects of the current page. */
  let page: ObjectStats[] = [];
  let pos = 0;
  /** Every listed path up to this one has been fetched (the last page's last path). */
  let end: string | undefined;
  let hasMore = true;
  /** The page that continues the current one, asked for while the current one is used. */
  let ahead: { after: string; page: Promise<Page> } | undefined;
  /** Listed objects fetched, and those that gave stats, since the last measure began. */
  let fetched = 0;
  let matched = 0;
  let skipWindows = 0;
  /** Stats found per listed object fetched: what a page is worth. 1 until measured. */
  const density = () => (fetched === 0 ? 1 : matched / fetched);

  const attach = async (task: Extract<ExportTask, { op: "copy" }>, remaining: number) => {
    let jumped = false;
    for (;;) {
      if (end !== undefined && compareUtf8(task.path, end) <= 0) break;
      // Past the end of the listing: nothing further to find.
      if (end !== undefined && !hasMore) return;
      let after: string;
      let next: Page;
      if (ahead && ahead.after === end) {
        after = ahead.after;
        next = await ahead.page;
      } else if (jumped && end !== undefined) {
        // The jump's page ended before the path: read on from where it ended.
        after = end;
        next = await options.list(after, PAGE);
      } else {
        // A jump to just before the path (never back over what was fetched), as many objects
        // as the diff's density calls for.
        const target = justBefore(task.path);
        after = end !== undefined && compareUtf8(end, target) > 0 ? end : target;
        const wanted = Math.ceil(remaining / Math.max(density(), 1 / PAGE));
        next = await options.list(after, Math.min(PAGE, Math.max(minPerPage * 4, wanted)));
        jumped = true;
      }
      ahead = undefined;
      fetched += next.results.length;
      pos = 0;
      page = next.results.filter((s) => s.path_type === "object");
      end = next.results.at(-1)?.path ?? after;
      hasMore = next.hasMore;
      // Empty: the listing ends at `after`, or (more promised, nothing given) there is no path
      // to read on from; either way this task finds nothing here.
      if (next.results.length === 0) return;
      // Dense diffs read on: the continuation loads while this page's tasks are copied.
      if (hasMore && density() * PAGE >= minPerPage) {
        const from = end;
        ahead = { after: from, page: options.list(from, PAGE) };
        ahead.page.catch(() => undefined);
      }
    }
    while (pos < page.length && compareUtf8(page[pos]!.path, task.path) < 0) pos++;
    const found = page[pos];
    if (found && found.path === task.path) {
      task.stats = found;
      matched++;
      pos++;
    }
  };

  const it = tasks[Symbol.asyncIterator]();
  let done = false;
  while (!done) {
    const buffer: ExportTask[] = [];
    while (buffer.length < window) {
      const r = await it.next();
      if (r.done) {
        done = true;
        break;
      }
      buffer.push(r.value);
    }
    const needs = (t: ExportTask): t is Extract<ExportTask, { op: "copy" }> =>
      t.op === "copy" && t.stats === undefined;
    let remaining = buffer.filter(needs).length;
    const listing = skipWindows === 0 && remaining >= minPerPage;
    if (skipWindows > 0) skipWindows--;
    // Each task goes on as soon as it has its stats, so copies run while later pages load.
    for (const task of buffer) {
      if (listing && needs(task)) await attach(task, remaining--);
      yield task;
    }
    // Too sparse to pay: stats one by one for a while, then measure again.
    if (listing && density() * PAGE < minPerPage) {
      skipWindows = 4;
      fetched = 0;
      matched = 0;
      ahead = undefined;
    }
  }
}

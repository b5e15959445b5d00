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

/**
 * The path just before `path` for lakeFS's exclusive `after`: `path` minus its last code point
 * sorts before it, and whatever sorts between the two is only read past.
 */
function before(path: string): string {
  const last = path.charCodeAt(path.length - 1);
  return path.slice(0, last >= 0xdc00 && last <= 0xdfff ? -2 : -1);
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
 */
export async function* withListedStats(
  tasks: AsyncIterable<ExportTask>,
  options: ListedStatsOptions,
): AsyncGenerator<ExportTask> {
  const window = options.window ?? 256;
  const minPerPage = options.minPerPage ?? 16;
  type Page = { results: ObjectStats[]; hasMore: boolean };
  let page: ObjectStats[] = [];
  let pos = 0;
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
    for (;;) {
      const last = page.at(-1)?.path;
      if (last !== undefined && compareUtf8(task.path, last) <= 0) break;
      // Past the end of the listing: nothing further to find.
      if (last !== undefined && !hasMore) return;
      let next: Page;
      if (ahead && ahead.after === last) {
        next = await ahead.page;
      } else {
        // A jump to just before the path, as many objects as the diff's density calls for.
        const wanted = Math.ceil(remaining / Math.max(density(), 1 / PAGE));
        next = await options.list(
          before(task.path),
          Math.min(PAGE, Math.max(minPerPage * 4, wanted)),
        );
      }
      ahead = undefined;
      page = next.results.filter((s) => s.path_type === "object");
      hasMore = next.hasMore && next.results.length > 0;
      fetched += next.results.length;
      pos = 0;
      if (page.length === 0) return;
      // Dense diffs read on: the continuation loads while this page's tasks are copied.
      if (hasMore && density() * PAGE >= minPerPage) {
        const after = page.at(-1)!.path;
        ahead = { after, page: options.list(after, PAGE) };
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

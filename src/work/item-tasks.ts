import type { Destination } from "../destination/destination.ts";
import { coverTasks } from "../export/cover-tasks.ts";
import { withListedStats } from "../export/listed-stats.ts";
import { Reconciliation } from "../export/reconcile.ts";
import type { ExportTask } from "../export/task.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import type { LaneName } from "../ledger/lane-records.ts";
import { justBefore } from "../export/listed-stats.ts";
import { inRange, pastRange, sharedPrefix } from "./ranges.ts";
import type { KeyRange } from "./ranges.ts";
import type { WorkItem } from "./items.ts";

export interface ItemSource {
  lakefs: LakefsClient;
  repository: string;
  dest: Destination;
}

/** The pages of a sorted listing, cut to the paths inside `range`; stops past its end. */
export async function* clip<T>(
  pages: AsyncIterable<T[]>,
  range: KeyRange,
  keyOf: (item: T) => string,
): AsyncGenerator<T[]> {
  for await (const page of pages) {
    const kept: T[] = [];
    let past = false;
    for (const item of page) {
      const key = keyOf(item);
      if (pastRange(range, key)) {
        past = true;
        break;
      }
      if (inRange(range, key)) kept.push(item);
    }
    if (kept.length > 0) yield kept;
    if (past) return;
  }
}

/** The commit's objects inside `range`, a page at a time. */
export function commitListing(
  src: ItemSource,
  commit: string,
  range: KeyRange,
  signal?: AbortSignal,
) {
  const pages = src.lakefs.listObjects(
    src.repository,
    commit,
    sharedPrefix(range),
    signal,
    justBefore(range.from),
  );
  return clip(pages, range, (s) => s.path);
}

/** The reconciliation of an empty-at-start prefix over `range` (see Reconciliation). */
export function reconciliation(
  src: ItemSource,
  commit: string,
  range: KeyRange,
  lane: LaneName,
  signal?: AbortSignal,
): Reconciliation {
  const { dest } = src;
  return new Reconciliation({
    source: () => commitListing(src, commit, range, signal),
    dest: () => clip(dest.list(sharedPrefix(range), signal), range, (o) => o.path),
    contentIdIsChecksum: dest.capabilities.contentIdIsChecksum,
    readText: (path) => dest.getText(path, signal),
    // Split only where every key under the prefix is the lane's own (empty when it began).
    owned: true,
    unguarded: true,
    lane,
    where: dest.uri,
  });
}

/** Every task of an item's kind over `range`, in path order. */
export function rangeTasks(
  src: ItemSource,
  item: Pick<WorkItem, "kind" | "commit" | "from" | "retry" | "repository" | "branch">,
  range: KeyRange,
  signal?: AbortSignal,
): AsyncIterable<ExportTask> {
  if (item.kind === "reconcile")
    return reconciliation(src, item.commit, range, item, signal).tasks();
  const { lakefs, repository } = src;
  return withListedStats(
    coverTasks(lakefs, repository, item.from, item.commit, item.retry, signal, range),
    {
      list: (after, amount) =>
        lakefs.listObjectsAfter(repository, item.commit, after, amount, signal),
    },
  );
}

/**
 * Where an item's own part ends: the path of the (itemObjects + 1)th entry of its range (of the
 * commit's listing for a reconcile, of the diffs for a cover), or undefined when the range
 * holds no more than that. The rest of the range, from that path on, is handed on as a new item.
 */
export async function itemBoundary(
  src: ItemSource,
  item: WorkItem,
  signal?: AbortSignal,
): Promise<string | undefined> {
  let n = 0;
  const entries =
    item.kind === "reconcile"
      ? commitListing(src, item.commit, item.range, signal)
      : clip(
          (async function* () {
            for await (const t of coverTasks(
              src.lakefs,
              src.repository,
              item.from,
              item.commit,
              item.retry,
              signal,
              item.range,
            ))
              yield [t];
          })(),
          item.range,
          (t) => t.path,
        );
  for await (const page of entries) {
    for (const entry of page) {
      if (++n > item.itemObjects) return entry.path;
    }
  }
  return undefined;
}

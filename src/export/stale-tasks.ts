import type { ObjectStats } from "../lakefs/types.ts";
import type { FailedPath } from "../ledger/ledger.ts";
import { flatten, mergeSorted } from "./order.ts";
import type { ExportTask } from "./task.ts";

/** What a lane's ledger says may differ from a commit (see staleCover in the ledger). */
export interface StaleCover {
  from: readonly string[];
  failed: readonly FailedPath[];
}

type Item = { kind: "listed"; stats: ObjectStats } | { kind: "cover"; task: ExportTask };

/**
 * A whole export that leaves nothing stale: every object of the commit's listing is copied, and
 * every key the cover (the diffs from the ledger's base and attempts, and its failed paths) names
 * that the listing lacks is deleted. Both streams come in lakeFS's path order, so they merge
 * without holding either in memory; a path in both is copied once.
 */
export async function* staleTasks(
  listing: AsyncIterable<ObjectStats[]>,
  cover: AsyncIterable<ExportTask>,
): AsyncGenerator<ExportTask> {
  async function* listed(): AsyncGenerator<Item> {
    for await (const stats of flatten(listing))
      if (stats.path_type === "object") yield { kind: "listed", stats };
  }
  async function* covered(): AsyncGenerator<Item> {
    for await (const task of cover) yield { kind: "cover", task };
  }
  const keyOf = (i: Item) => (i.kind === "listed" ? i.stats.path : i.task.path);
  for await (const { key, items } of mergeSorted([listed(), covered()], keyOf)) {
    const [l, c] = items;
    if (l?.kind === "listed") yield { op: "copy", path: key, stats: l.stats, change: "listed" };
    else if (c?.kind === "cover")
      // Gone from the commit: a removed entry or a failed path it lacks. A diff's added or
      // changed entry the listing lacks cannot be; the commit is asked when its task runs.
      yield c.task.op === "copy" ? { op: "sync", path: key } : { op: "delete", path: key };
  }
}

import type { LakefsClient } from "../lakefs/client.ts";
import type { DiffEntry } from "../lakefs/types.ts";
import type { FailedPath } from "../ledger/ledger.ts";
import type { ExportTask } from "./task.ts";
import { compareUtf8, flatten, mergeSorted } from "./order.ts";
import { WHOLE, inRange, pastRange } from "../work/ranges.ts";
import { justBefore } from "./listed-stats.ts";
import type { KeyRange } from "../work/ranges.ts";

type Item = { kind: "diff"; entry: DiffEntry } | { kind: "retry"; path: string };

async function* diffItems(
  lakefs: LakefsClient,
  repository: string,
  from: string,
  to: string,
  range: KeyRange,
  signal?: AbortSignal,
): AsyncGenerator<Item> {
  const after = justBefore(range.from);
  for await (const entry of flatten(lakefs.diff(repository, from, to, signal, after))) {
    if (pastRange(range, entry.path)) return;
    if (entry.path_type !== "object" || !inRange(range, entry.path)) continue;
    if (entry.type === "conflict" || entry.type === "prefix_changed") {
      // Cannot occur in a two-dot diff without a delimiter; refuse rather than guess.
      throw new TypeError(`unexpected diff entry type "${entry.type}" for ${entry.path}`);
    }
    yield { kind: "diff", entry };
  }
}

function* retryItems(paths: readonly FailedPath[]): Generator<Item> {
  const sorted = [...new Set(paths.map((p) => p.path))].sort(compareUtf8);
  for (const path of sorted) yield { kind: "retry", path };
}

/**
 * The tasks that bring every key that may differ from `to` to its state there: the union of
 * the two-dot diffs `from_i..to` (lakeFS's two-dot diff compares the two commits directly; the
 * API's default three-dot diff would compare with their merge base) and the `retry` paths.
 * Every diff to `to` agrees on a path's state at `to` (present: added or changed; absent:
 * removed), so the first entry found for a path decides; a retried path that no diff names is
 * looked up at `to` when its task runs. The streams are merged in path order, so memory does
 * not grow with the size of the diffs. Every diff's first page is read before the first task is
 * yielded: a `from` commit lakeFS lacks fails here, before anything is written. With `range`,
 * only the paths inside it (a work item of a split export).
 */
export async function* coverTasks(
  lakefs: LakefsClient,
  repository: string,
  fromCommitIds: readonly string[],
  to: string,
  retry: readonly FailedPath[],
  signal?: AbortSignal,
  range: KeyRange = WHOLE,
): AsyncGenerator<ExportTask> {
  const streams: (AsyncIterable<Item> | Iterable<Item>)[] = [...new Set(fromCommitIds)]
    .filter((from) => from !== to)
    .map((from) => diffItems(lakefs, repository, from, to, range, signal));
  const retried = retry.filter((p) => inRange(range, p.path));
  if (retried.length > 0) streams.push(retryItems(retried));
  const keyOf = (i: Item) => (i.kind === "diff" ? i.entry.path : i.path);
  for await (const { key, items } of mergeSorted(streams, keyOf)) {
    const diff = items.find((i) => i?.kind === "diff");
    if (diff?.kind !== "diff") {
      yield { op: "sync", path: key };
    } else if (diff.entry.type === "removed") {
      yield { op: "delete", path: key };
    } else {
      yield { op: "copy", path: key, change: diff.entry.type === "added" ? "added" : "changed" };
    }
  }
}

import { LakefsNotFoundError } from "../errors.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import type { DiffEntry } from "../lakefs/types.ts";
import type { FailedPath } from "../ledger/ledger.ts";
import type { Destination } from "../destination/destination.ts";
import { compareUtf8, flatten, mergeSorted } from "./order.ts";
import { listAttempts } from "./attempt-marks.ts";
import { listStatusFiles } from "./status-file.ts";

/**
 * A key lakefs-mirror's records say it may have written. `sizes`: the sizes the object had at
 * the commits that name it (a key of another size is not what an export wrote there: someone
 * wrote it since, and it is kept); absent when a record names the path without its object (a
 * failed path: any size).
 */
export interface OurKey {
  path: string;
  sizes?: readonly number[];
}

/** What a lane's ledger says it may have written: commits and failed paths. */
export interface OurRecords {
  from: readonly string[];
  failed: readonly FailedPath[];
}

type Item = { entry: DiffEntry } | { failed: string };

/**
 * The keys that `commitId` lacks and that lakefs-mirror may have written at `dest`, in path
 * order: the removed entries of the two-dot diffs to `commitId` from the commits `records` and
 * the status files and one-off exports' attempt records at the destination name, and the failed
 * paths. A commit lakeFS no longer has
 * (garbage-collected, or its data gone: 404 or 410) names nothing, so its keys are kept.
 */
export async function* ourKeys(
  lakefs: LakefsClient,
  repository: string,
  dest: Destination,
  commitId: string,
  records: OurRecords,
  signal?: AbortSignal,
): AsyncGenerator<OurKey> {
  const recorded = [
    ...(await listStatusFiles(dest, signal)).map((f) => f.commitId),
    ...(await listAttempts(dest, signal)),
  ];
  const streams: (AsyncIterable<Item> | Iterable<Item>)[] = [];
  for (const from of new Set([...records.from, ...recorded])) {
    if (from === commitId) continue;
    const stream = await readable(removedEntries(lakefs, repository, from, commitId, signal));
    if (stream) streams.push(stream);
  }
  const failed = [...new Set(records.failed.map((f) => f.path))].sort(compareUtf8);
  streams.push(failedItems(failed));
  const keyOf = (i: Item) => ("entry" in i ? i.entry.path : i.failed);
  for await (const { key, items } of mergeSorted(streams, keyOf)) {
    const sizes: number[] = [];
    let any = false;
    for (const i of items) {
      if (!i) continue;
      if ("entry" in i && i.entry.size_bytes !== undefined) sizes.push(i.entry.size_bytes);
      else any = true;
    }
    yield any ? { path: key } : { path: key, sizes };
  }
}

async function* removedEntries(
  lakefs: LakefsClient,
  repository: string,
  from: string,
  to: string,
  signal?: AbortSignal,
): AsyncGenerator<Item> {
  for await (const entry of flatten(lakefs.diff(repository, from, to, signal)))
    if (entry.path_type === "object" && entry.type === "removed") yield { entry };
}

function* failedItems(paths: string[]): Generator<Item> {
  for (const path of paths) yield { failed: path };
}

/**
 * The stream with its first item read, or undefined when lakeFS no longer has the commit: a
 * gone commit is found here, before the merge, rather than in its middle.
 */
async function readable<T>(stream: AsyncGenerator<T>): Promise<AsyncIterable<T> | undefined> {
  let first: IteratorResult<T>;
  try {
    first = await stream.next();
  } catch (err) {
    if (err instanceof LakefsNotFoundError) return undefined;
    throw err;
  }
  return (async function* () {
    if (first.done) return;
    yield first.value;
    yield* stream;
  })();
}

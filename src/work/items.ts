import type { DeleteRefusal, Destination } from "../destination/destination.ts";
import { DestinationError } from "../errors.ts";
import type { FailedPath } from "../ledger/ledger.ts";
import type { ExportProgress, ExportTask } from "../export/task.ts";
import { RESERVED_PREFIX } from "../export/reserved.ts";
import type { RoundPresetName, RoundRule } from "../export/rounds.ts";
import { isRoundPresetName } from "../export/rounds.ts";
import type { KeyRange } from "./ranges.ts";

/**
 * What a work item asks a worker to do: bring one key range of a lane's destination to a
 * commit, as part of one split export (a run) of the lane's owner.
 * - `reconcile`: the commit's listing merged with the destination's over the range (the first
 *   export of a lane whose prefix was empty); deletes are left to the owner;
 * - `cover`: the two-dot diffs from `from` to the commit over the range, and the failed paths
 *   in it read again.
 */
export interface WorkItem {
  format: 1;
  run: string;
  id: string;
  range: KeyRange;
  /** 0 for the first delivery; raised each time the owner issues the item again. */
  attempt: number;
  /** The owner's lease epoch: the worker writes only while the lease is still at it. */
  epoch: number;
  owner: string;
  /**
   * Which issuing of the run this is: one owner process's, drawn when it starts (or resumes)
   * the run. A restart under the same name keeps the epoch, so the epoch alone cannot tell its
   * items' records from those of the process before it.
   */
  issuer: string;
  repository: string;
  branch: string;
  destination: string;
  commit: string;
  kind: "reconcile" | "cover";
  from: string[];
  retry: FailedPath[];
  /** About this many objects per item: a worker hands the rest of a bigger range on. */
  itemObjects: number;
  /** How long the worker may trust one reading of the lease (see LeaseView). */
  viewMs: number;
  /**
   * The owner's rounds rule and deletes-last setting: which paths a worker leaves to later
   * rounds is the owner's call, whatever the worker's own configuration says.
   */
  rounds: RoundPresetName | RoundRule[];
  /** null: the rounds preset's own default. */
  deletesLast: boolean | null;
}

/** What a worker did with an item, written beside the lane's ledger when it finished. */
export interface ItemRecord {
  format: 1;
  run: string;
  id: string;
  /** The part of the item's range the worker did itself. */
  range: KeyRange;
  /** The rest of the item's range, issued as new items; empty when the worker did it all. */
  children: KeyRange[];
  /** Whether the worker issued `children` itself (else the owner does, on reading this). */
  handedOn: boolean;
  epoch: number;
  /** The item's `issuer`. */
  issuer: string;
  worker: string;
  attempt: number;
  progress: ExportProgress;
  failures: string[];
  /** Paths left undone, with why; null when they could not be listed. */
  undone: FailedPath[] | null;
  /** Tasks left to the owner (later rounds, deferred deletes); null: too many, list them again. */
  deferred: ExportTask[] | null;
  /** Why the worker could not do the item (the owner issues it again, or does it itself). */
  error: string | null;
  finishedAt: string;
}

/** Where every run's records live: beside the ledger, under the reserved prefix. */
const RUNS_PREFIX = `${RESERVED_PREFIX}work/`;

/** Where a run's records live. */
export function runPrefix(run: string): string {
  return `${RUNS_PREFIX}${run}/`;
}

/**
 * Removes the records of every split run of the lane: the one that just ended and any that
 * was given up (its owner died, or a newer HEAD started another). Only the lane's writer calls
 * it, once no worker writes for those runs any more; `fence` is checked before each delete.
 * Returns how many records it found; throws when the store refused to delete one.
 */
export async function removeRecords(
  dest: Destination,
  fence: () => void,
  signal?: AbortSignal,
): Promise<number> {
  const paths: string[] = [];
  for await (const page of dest.list(RUNS_PREFIX, signal)) for (const o of page) paths.push(o.path);
  const batch = dest.capabilities.maxDeleteBatch;
  // Every batch is tried: records the store keeps refusing must not hold the others back.
  const refused: DeleteRefusal[] = [];
  for (let i = 0; i < paths.length; i += batch) {
    fence();
    refused.push(...(await dest.deleteBatch(paths.slice(i, i + batch), signal)));
  }
  if (refused.length > 0)
    throw new DestinationError(
      `${dest.describe(refused[0]!.path)}: could not remove a work record: ${refused[0]!.error}` +
        (refused.length > 1 ? ` (and ${refused.length - 1} more)` : ""),
      true,
    );
  return paths.length;
}

export function recordPath(run: string, id: string): string {
  return `${runPrefix(run)}${id}.json`;
}

/** Tasks left to the owner that a record carries; more and the owner lists them again. */
export const DEFERRED_IN_RECORD = 1000;

export function parseItem(text: string): WorkItem {
  const v = JSON.parse(text) as Partial<WorkItem>;
  const strings = [
    "run",
    "id",
    "owner",
    "issuer",
    "repository",
    "branch",
    "destination",
    "commit",
  ] as const;
  if (
    v.format !== 1 ||
    strings.some((k) => typeof v[k] !== "string") ||
    (v.kind !== "reconcile" && v.kind !== "cover") ||
    typeof v.epoch !== "number" ||
    typeof v.attempt !== "number" ||
    typeof v.itemObjects !== "number" ||
    typeof v.viewMs !== "number" ||
    typeof v.range?.from !== "string" ||
    (v.range.to !== null && typeof v.range.to !== "string") ||
    !Array.isArray(v.from) ||
    !Array.isArray(v.retry) ||
    !(typeof v.rounds === "string" ? isRoundPresetName(v.rounds) : Array.isArray(v.rounds)) ||
    (v.deletesLast !== null && typeof v.deletesLast !== "boolean")
  )
    throw new TypeError("not a lakefs-mirror work item (format 1)");
  return v as WorkItem;
}

export function parseRecord(text: string, where: string): ItemRecord {
  const v = JSON.parse(text) as Partial<ItemRecord>;
  if (v.format !== 1 || typeof v.id !== "string" || !v.progress || !Array.isArray(v.children))
    throw new TypeError(`${where} is not a lakefs-mirror work record (format 1)`);
  return v as ItemRecord;
}

/** The records of a run found at the destination, by item id. */
export async function readRecords(
  dest: Destination,
  run: string,
  known: ReadonlyMap<string, ItemRecord>,
  signal?: AbortSignal,
): Promise<ItemRecord[]> {
  const found: ItemRecord[] = [];
  for await (const page of dest.list(runPrefix(run), signal)) {
    for (const o of page) {
      const id = o.path.slice(runPrefix(run).length).replace(/\.json$/, "");
      if (known.has(id)) continue;
      const text = await dest.getText(o.path, signal);
      if (text !== undefined) found.push(parseRecord(text, dest.describe(o.path)));
    }
  }
  return found;
}

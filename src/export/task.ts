import type { ObjectStats } from "../lakefs/types.ts";

/**
 * One thing to do at the destination.
 * - copy: write the object as it is in the commit (a listing supplies its stats already);
 * - delete: remove the key;
 * - sync: the key's state is unknown (it failed before): copy it if the commit has it, else delete;
 * - check: the key exists on both sides with equal size and content; copy it only if its
 *   Content-Type or metadata differ (a HEAD tells);
 * - keep: a key the commit lacks that is not ours to delete (counted, left alone);
 * - refuse: the export must not finish as SUCCESS, for the reason given.
 */
export type ExportTask =
  | {
      op: "copy";
      path: string;
      stats?: ObjectStats;
      change: "added" | "changed" | "listed" | "missing" | "differs";
    }
  | { op: "delete"; path: string }
  | { op: "sync"; path: string }
  | { op: "check"; path: string; stats: ObjectStats }
  | { op: "keep"; path: string }
  | { op: "refuse"; path: string; reason: string };

export interface ExportProgress {
  copied: number;
  deleted: number;
  bytes: number;
  bytesStreamed: number;
  failed: number;
  serverSideCopies: number;
  streamedCopies: number;
  /** Reconciling exports: keys found equal and left alone. */
  unchanged: number;
  /** Reconciling exports: keys the commit lacks, left because the prefix is not lakefs-mirror's. */
  kept: number;
}

/** An export that has done nothing yet. */
export function noProgress(): ExportProgress {
  return {
    copied: 0,
    deleted: 0,
    bytes: 0,
    bytesStreamed: 0,
    failed: 0,
    serverSideCopies: 0,
    streamedCopies: 0,
    unchanged: 0,
    kept: 0,
  };
}

/** Adds what `more` did to `into` (the parts of a split export, summed). */
export function addProgress(into: ExportProgress, more: Readonly<ExportProgress>): void {
  for (const k of Object.keys(into) as (keyof ExportProgress)[]) into[k] += more[k];
}

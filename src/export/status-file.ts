import type { Destination } from "../destination/destination.ts";

/** Status files at the destination root, named and filled as the lakeFS Spark exporter does. */

export const SUCCESS_TEXT = "Export completed successfully!";
/** A FAILURE file names at most this many failed operations. */
export const MAX_FAILURE_LINES = 10_000;

export type ExportStatus = "SUCCESS" | "FAILURE";

export function statusFileName(commitId: string, status: ExportStatus, at: Date): string {
  return `EXPORT_${commitId}_${at.toISOString()}_${status}`;
}

const STATUS_RE =
  /^EXPORT_([0-9a-f]{64}|[0-9a-zA-Z]+)_(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)_(SUCCESS|FAILURE)$/;

export interface ParsedStatusFile {
  commitId: string;
  at: Date;
  status: ExportStatus;
}

export function parseStatusFileName(name: string): ParsedStatusFile | undefined {
  const m = STATUS_RE.exec(name);
  if (!m?.[1] || !m[2] || !m[3]) return undefined;
  return { commitId: m[1], at: new Date(m[2]), status: m[3] as ExportStatus };
}

/** One line per failed operation: the verb, the path as a JSON string (so any character survives), why. */
export function failureLine(op: "copy" | "delete", path: string, reason: string): string {
  return `${op} ${JSON.stringify(path)}: ${reason.replace(/\s+/g, " ").trim()}`;
}

export function failureText(lines: string[], total: number): string {
  if (total <= MAX_FAILURE_LINES && lines.length === total) return lines.join("\n") + "\n";
  const shown = lines.slice(0, MAX_FAILURE_LINES - 1);
  return [...shown, `... and ${total - shown.length} more failed operations`].join("\n") + "\n";
}

export interface ListedStatusFile extends ParsedStatusFile {
  path: string;
  /** When the store wrote it (its LastModified). */
  storedAt: Date;
}

/**
 * Newest first, by the store's own clock (LastModified), which every writer of the destination
 * shares; the time in the name comes from the clock of whichever daemon wrote it, and after a
 * hand-over to a daemon whose clock is behind, a newer file would carry an older name. The
 * name's time breaks ties (S3 lists LastModified to the second), then the name itself.
 */
export function newestFirst(a: ListedStatusFile, b: ListedStatusFile): number {
  return (
    b.storedAt.getTime() - a.storedAt.getTime() ||
    b.at.getTime() - a.at.getTime() ||
    (a.path < b.path ? 1 : a.path > b.path ? -1 : 0)
  );
}

/** The status files at a destination's root, newest first (see newestFirst). */
export async function listStatusFiles(
  dest: Destination,
  signal?: AbortSignal,
): Promise<ListedStatusFile[]> {
  const files: ListedStatusFile[] = [];
  for await (const page of dest.list("EXPORT_", signal)) {
    for (const o of page) {
      const parsed = parseStatusFileName(o.path);
      if (parsed) files.push({ ...parsed, path: o.path, storedAt: o.lastModified });
    }
  }
  return files.sort(newestFirst);
}

/**
 * The status files to delete so that the newest `keep` remain (newest by newestFirst), and
 * always the newest SUCCESS (a resume point) and the newest SUCCESS of `lastSuccess`, the
 * commit the lane's ledger says it last exported successfully: a resume point even if a
 * status file with a wrong time in its name got ahead of it.
 */
export function statusFilesToPrune(
  files: readonly ListedStatusFile[],
  keep: number,
  lastSuccess?: string | null,
): string[] {
  if (keep <= 0) return [];
  const sorted = [...files].sort(newestFirst);
  const kept = new Set(sorted.slice(0, keep));
  const success = sorted.filter((f) => f.status === "SUCCESS");
  const newest = success[0];
  if (newest) kept.add(newest);
  const ledgers = lastSuccess ? success.find((f) => f.commitId === lastSuccess) : undefined;
  if (ledgers) kept.add(ledgers);
  return sorted.filter((f) => !kept.has(f)).map((f) => f.path);
}

/** Deletes the status files statusFilesToPrune names; `keep` <= 0 keeps them all. */
export async function pruneStatusFiles(
  dest: Destination,
  keep: number,
  signal: AbortSignal,
  lastSuccess?: string | null,
): Promise<void> {
  if (keep <= 0) return;
  const old = statusFilesToPrune(await listStatusFiles(dest, signal), keep, lastSuccess);
  const batch = dest.capabilities.maxDeleteBatch;
  for (let i = 0; i < old.length; i += batch)
    await dest.deleteBatch(old.slice(i, i + batch), signal);
}

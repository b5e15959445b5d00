import type { S3Destination } from "../s3/destination.ts";

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

/** The status files at a destination's root, newest first. */
export async function listStatusFiles(
  dest: S3Destination,
  signal?: AbortSignal,
): Promise<(ParsedStatusFile & { path: string })[]> {
  const files: (ParsedStatusFile & { path: string })[] = [];
  for await (const page of dest.list("EXPORT_", signal)) {
    for (const o of page) {
      const parsed = parseStatusFileName(o.path);
      if (parsed) files.push({ ...parsed, path: o.path });
    }
  }
  return files.sort((a, b) => b.at.getTime() - a.at.getTime());
}

/** Keeps the newest `keep` status files, and always the newest SUCCESS (a resume point). */
export async function pruneStatusFiles(
  dest: S3Destination,
  keep: number,
  signal: AbortSignal,
): Promise<void> {
  if (keep <= 0) return;
  const files = await listStatusFiles(dest, signal);
  const newestSuccess = files.find((f) => f.status === "SUCCESS");
  const old = files
    .slice(keep)
    .filter((f) => f !== newestSuccess)
    .map((f) => f.path);
  for (let i = 0; i < old.length; i += 1000) await dest.deleteBatch(old.slice(i, i + 1000), signal);
}

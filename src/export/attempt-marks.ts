import type { Destination } from "../destination/destination.ts";
import { RESERVED_PREFIX } from "./reserved.ts";

/**
 * A one-off export into a prefix that no lane's ledger describes records its commit here before
 * its first write and removes the record once its status file is written. A run killed between
 * the two leaves the record behind: the keys it may have written stay nameable (a later
 * reconcile deletes those its commit had and the new commit lacks), instead of looking like
 * someone else's keys.
 */
const MARKS = `${RESERVED_PREFIX}attempts/`;

const markPath = (commitId: string) => `${MARKS}${commitId}.json`;

export async function markAttempt(
  dest: Destination,
  commitId: string,
  signal?: AbortSignal,
): Promise<void> {
  const text = JSON.stringify({ format: 1, commitId, startedAt: new Date().toISOString() });
  await dest.putText(markPath(commitId), text + "\n", signal, "application/json");
}

export async function clearAttempt(
  dest: Destination,
  commitId: string,
  signal?: AbortSignal,
): Promise<void> {
  const refused = await dest.deleteBatch([markPath(commitId)], signal);
  if (refused.length > 0)
    throw new Error(`cannot remove ${dest.describe(markPath(commitId))}: ${refused[0]!.error}`);
}

/** The commits of one-off exports that started at this destination and wrote no status file. */
export async function listAttempts(dest: Destination, signal?: AbortSignal): Promise<string[]> {
  const commits: string[] = [];
  for await (const page of dest.list(MARKS, signal)) {
    for (const o of page) {
      const m = /^_lakefs_mirror\/attempts\/([^/]+)\.json$/.exec(o.path);
      if (m?.[1]) commits.push(m[1]);
    }
  }
  return commits;
}

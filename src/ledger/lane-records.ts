import { DestinationOverlapError } from "../errors.ts";
import { LEASE_PATH, LEDGER_PATH, RESERVED_PREFIX } from "../export/reserved.ts";
import type { Destination } from "../destination/destination.ts";

/**
 * A lane's records at a destination are its ledger and its lease under `_lakefs_mirror/`. Found
 * anywhere but at this lane's own root, naming another lane, they mean two mirrors meet: a
 * listing of the outer destination sees (and, reconciling, could delete) the inner one's keys.
 */

export interface LaneName {
  repository: string;
  branch: string;
}

export function laneName(lane: LaneName): string {
  return `${lane.repository}/${lane.branch}`;
}

/** The lane a ledger or lease names; undefined for anything else. */
export function recordLane(text: string | undefined): LaneName | undefined {
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as Partial<LaneName> & { format?: unknown };
    if (v.format === 1 && typeof v.repository === "string" && typeof v.branch === "string")
      return { repository: v.repository, branch: v.branch };
  } catch {
    // Not JSON: not a record of a lane.
  }
  return undefined;
}

export function sameLane(a: LaneName, b: LaneName): boolean {
  return a.repository === b.repository && a.branch === b.branch;
}

const NESTED_RECORD = new RegExp(
  `^(.+/)${RESERVED_PREFIX.replace("/", "\\/")}(?:ledger|lease)\\.json$`,
);

/**
 * The lane whose live records `text` (read at `path`) is: a ledger, or a lease that has not
 * expired. An expired lease without a ledger is a lane that never wrote anything there (one
 * that refused to start, say).
 */
export function liveRecordLane(
  path: string,
  text: string | undefined,
  now = Date.now(),
): LaneName | undefined {
  if (text === undefined) return undefined;
  if (path.endsWith(LEASE_PATH)) {
    const expires = leaseExpiry(text);
    if (expires === undefined || expires <= now) return undefined;
  }
  return recordLane(text);
}

/** The sub-prefix (`a/b/`) whose lane records `path` is, relative to a destination root. */
export function nestedRecordRoot(path: string): string | undefined {
  return NESTED_RECORD.exec(path)?.[1];
}

/** `lane`: the lane refusing, or what else is writing (a one-off export, named as it is). */
export function overlapError(
  lane: LaneName | string,
  where: string,
  other: LaneName | undefined,
  otherWhere: string,
  how: string,
): DestinationOverlapError {
  const otherName = other ? laneName(other) : "(a lane whose records cannot be read)";
  const self = typeof lane === "string" ? lane : `lane ${laneName(lane)}`;
  return new DestinationOverlapError(
    `${self} at ${where} overlaps lane ${otherName} at ${otherWhere}: ${how}. ` +
      `Two mirrors must not share a destination or nest inside one another, so nothing was ` +
      `written. Give one of them its own destination; if ${otherName} no longer mirrors there, ` +
      `delete ${otherWhere}${RESERVED_PREFIX} and its records with it`,
    {
      lane: typeof lane === "string" ? lane : laneName(lane),
      other: otherName,
      otherDestination: otherWhere,
    },
  );
}

/**
 * Refuses (DestinationOverlapError) when a prefix enclosing `dest` holds a lane's records. One
 * listing of `_lakefs_mirror/` per enclosing prefix, and a read of what it finds.
 */
export async function assertNoEnclosingLane(
  lane: LaneName | string,
  dest: Destination,
  signal?: AbortSignal,
): Promise<void> {
  const segments = dest.prefix.split("/").filter(Boolean);
  for (let n = 0; n < segments.length; n++) {
    const outer = dest.at(
      segments
        .slice(0, n)
        .map((s) => `${s}/`)
        .join(""),
    );
    const found = new Set<string>();
    for await (const page of outer.list(RESERVED_PREFIX, signal))
      for (const o of page) if (o.path === LEDGER_PATH || o.path === LEASE_PATH) found.add(o.path);
    if (found.size === 0) continue;
    // A lease alone, expired, is a lane that never wrote a ledger there (one that refused to
    // start, say): nothing of it lies under the prefix.
    const path = found.has(LEDGER_PATH) ? LEDGER_PATH : LEASE_PATH;
    const other = liveRecordLane(path, await outer.getText(path, signal));
    if (!other) continue;
    throw overlapError(
      lane,
      dest.uri,
      other,
      outer.uri,
      `the enclosing prefix holds that lane's ${path.slice(RESERVED_PREFIX.length)}`,
    );
  }
}

/** When a lease record expires (ms since the epoch), or undefined for anything else. */
function leaseExpiry(text: string): number | undefined {
  try {
    const t = Date.parse((JSON.parse(text) as { expiresAt?: string }).expiresAt ?? "");
    return Number.isNaN(t) ? undefined : t;
  } catch {
    return undefined;
  }
}

/** Refuses (DestinationOverlapError) when the destination's lease is another lane's. */
export async function assertLeaseNotOthers(
  lane: LaneName,
  dest: Destination,
  signal?: AbortSignal,
): Promise<void> {
  const other = recordLane(await dest.getText(LEASE_PATH, signal));
  if (!other || sameLane(other, lane)) return;
  const where = dest.uri;
  throw overlapError(lane, where, other, where, `the destination's lease is that lane's`);
}

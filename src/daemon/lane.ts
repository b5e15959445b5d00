/**
 * A lane: one (repository, branch, destination), exported one run at a time. Its state comes in
 * three parts, and each part has one writer. Everyone else reads: the `Lane` type is read-only,
 * and an owner writes through its part's own type (`LaneSchedule`, `LaneRecord`, `LaneLag`).
 *
 * - The schedule is the Scheduler's (scheduler.ts): whether the lane is queued, exporting or
 *   backing off, which events its runs cover, its failures and last error, its progress. The
 *   runner tells it what a run achieved by its outcome, and progress through `progressed`.
 * - The record is LaneSync's (lane-sync.ts): what the destination holds, as the lane's ledger
 *   says. It is shown here after every save of the ledger, never set from anywhere else.
 * - The lag is lag.ts's: the branch HEAD last seen and how far the mirror is behind it. LaneSync
 *   and the reconciler report what they saw there; lag.ts works out what it means.
 */

export type LaneState = "idle" | "queued" | "exporting" | "backoff" | "ended";

export interface LaneKey {
  repository: string;
  branch: string;
  /** The resolved destination URI. */
  destination: string;
  /** The destination holds nothing but this lane's mirror. */
  dedicated?: boolean;
}

/** Written by the Scheduler alone. */
export interface LaneSchedule {
  state: LaneState;
  /** Bumped by every event; an export started at sequence s covers every event up to s. */
  requested: number;
  covered: number;
  /** Consecutive runs that could not complete an export. */
  failures: number;
  /** Why the last run did not leave the lane current; undefined once a run does. */
  lastError: string | undefined;
  /**
   * When the lane's current or last run last made progress: it started, or a task of its
   * export ended (the exporter's onProgress). Lease renewals and retries are not progress.
   */
  lastProgressAt: Date | undefined;
}

/** Written by LaneSync alone, from the lane's ledger. */
export interface LaneRecord {
  lastExportedCommit: string | undefined;
  /** The newest commit a SUCCESS status file was written for. */
  lastSuccessCommit: string | undefined;
  /** Paths that failed in the last export and are retried with back-off. */
  failingPaths: number;
  /** When the lane's last export ended with a status file. */
  lastExportAt: Date | undefined;
}

/** Written by lag.ts alone. */
export interface LaneLag {
  headCommit: string | undefined;
  commitsBehind: number;
  lagSeconds: number;
  /** When this daemon first saw the lane behind its HEAD, until it catches up. */
  behindSince: Date | undefined;
}

export interface Lane
  extends
    Readonly<Required<LaneKey>>,
    Readonly<LaneSchedule>,
    Readonly<LaneRecord>,
    Readonly<LaneLag> {
  readonly id: string;
}

/** A new lane, idle, with nothing known but (from the checkpoint) the commit it holds. */
export function newLane(key: LaneKey, lastExportedCommit?: string): Lane {
  return {
    repository: key.repository,
    branch: key.branch,
    destination: key.destination,
    dedicated: key.dedicated ?? false,
    id: laneId(key),
    state: "idle",
    requested: 0,
    covered: 0,
    failures: 0,
    lastError: undefined,
    lastProgressAt: undefined,
    lastExportedCommit,
    lastSuccessCommit: undefined,
    failingPaths: 0,
    lastExportAt: undefined,
    headCommit: undefined,
    commitsBehind: 0,
    lagSeconds: 0,
    behindSince: undefined,
  };
}

/** A lane's id: its key as JSON, which keeps any character of a name apart from the others. */
export function laneId(key: Pick<LaneKey, "repository" | "branch" | "destination">): string {
  return JSON.stringify([key.repository, key.branch, key.destination]);
}

/** The key a lane id was made from; undefined for an id that is not one. */
export function parseLaneId(
  id: string,
): Pick<LaneKey, "repository" | "branch" | "destination"> | undefined {
  try {
    const v: unknown = JSON.parse(id);
    if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === "string")) {
      const [repository, branch, destination] = v as [string, string, string];
      return { repository, branch, destination };
    }
  } catch {
    // Not JSON: not a lane id.
  }
  return undefined;
}

import { LedgerError } from "../errors.ts";
import { compareUtf8 } from "../export/order.ts";

/**
 * The lane ledger: what a destination holds, described by commits, so that every export knows
 * exactly which keys may differ from the branch HEAD.
 *
 * Invariant: every key under the destination is as in `base`, except
 *  - keys an unfinished attempt may have written: those are as in that attempt's commit;
 *  - the `failed` paths, whose state is unknown (a copy or delete that did not complete).
 * Copies and deletes of single keys are atomic in S3, and one lane runs one export at a time
 * and waits for every request it started, so each key is in the state of exactly one of these
 * commits. Hence the keys that may differ from HEAD are covered by the two-dot diffs from `base`
 * and from each attempt to HEAD, plus the failed paths read again at HEAD.
 */
export interface Ledger {
  format: 1;
  repository: string;
  branch: string;
  /** null: unknown (no export completed, or the record was lost); only a full listing helps. */
  base: string | null;
  /** Commits of exports that started writing and never completed (killed, aborted, stopped). */
  attempts: string[];
  /** Paths the last completed export left undone, in UTF-8 byte order, with why. */
  failed: FailedPath[];
  /** Back-off for retrying `failed`: how many exports in a row they failed, and when next. */
  retry: { count: number; notBefore: string } | null;
  /** The newest commit a SUCCESS status file was written for. */
  lastSuccess: string | null;
  /**
   * What the lane found under its prefix when it first came there: nothing ("empty": every key
   * since is this lane's own, so a listing may delete leftovers without the max-deletes guard),
   * lakefs-mirror's records alone ("owned"), or other keys ("foreign": listings delete there only
   * what lakefs-mirror's records name, unless the mirror is declared dedicated).
   */
  prefix: PrefixState;
  /**
   * Why `base` is not proven, or null (absent in older ledgers) when this lane's own ledger at
   * the destination says so. A base rebuilt from status files (a whole export writes a SUCCESS
   * without deleting anything), from a local copy the destination no longer has, or beside a
   * ledger of an older lease epoch says nothing of keys that may be stale: a guarded reconcile
   * checks it before any diff starts from it.
   */
  rebuilt?: string | null;
  /** The lease epoch of the writer (null or absent without leases). */
  epoch?: number | null;
  /**
   * The split export (work items, see src/work) the newest attempt runs, while it runs: a new
   * owner that finds it unfinished for the same commit and cover resumes it, skipping the items
   * whose records are there. Null or absent otherwise.
   */
  work?: SplitRun | null;
  /**
   * A split export has run since the lane last found no work records under its prefix: the
   * next export to complete removes them (whoever gave the run up, and however). Kept through
   * every attempt until a look finds none; absent or false otherwise.
   */
  workRecords?: boolean;
  /** Bumped by every write; a count of changes, not an order between copies (see LedgerStore). */
  seq: number;
  updatedAt: string;
}

export type PrefixState = "empty" | "owned" | "foreign";

/** A split export in progress: its run, its commit and what it covers (a digest). */
export interface SplitRun {
  run: string;
  commit: string;
  key: string;
}

export interface FailedPath {
  path: string;
  reason: string;
  /** What failed; a copy when absent. */
  op?: "copy" | "delete";
}

/** More unfinished attempts than this and a full listing is cheaper than that many diffs. */
export const MAX_ATTEMPTS = 16;
/** More failed paths than this are not tracked one by one: the attempt stays unfinished. */
export const MAX_FAILED = 1000;

export type Plan =
  /** The destination equals HEAD and a SUCCESS status file says so. */
  | { kind: "current" }
  /** The destination equals HEAD but for failed paths whose back-off runs until `until`. */
  | { kind: "wait"; until: Date }
  /** No trustworthy base: merge the commit's listing with the destination's. */
  | { kind: "reconcile"; reason: string }
  /**
   * Two-dot diffs from each of `from` to HEAD, plus `retry` read at HEAD. `carry` are failed
   * paths whose back-off has not expired: not tried, still failed.
   */
  | { kind: "diff"; from: string[]; retry: FailedPath[]; carry: FailedPath[] };

export function emptyLedger(repository: string, branch: string): Ledger {
  return {
    format: 1,
    repository,
    branch,
    base: null,
    attempts: [],
    failed: [],
    retry: null,
    lastSuccess: null,
    prefix: "owned",
    seq: 0,
    updatedAt: new Date(0).toISOString(),
  };
}

/**
 * What may differ from `target` at the destination: the keys of the two-dot diffs from each of
 * `from` to it, and the `failed` paths. Or why only a full listing can tell.
 */
export function staleCover(
  ledger: Ledger,
  target: string,
): { from: string[]; failed: FailedPath[] } | { reconcile: string } {
  if (ledger.base === null) return { reconcile: "no export of this lane is known" };
  if (ledger.rebuilt) {
    return {
      reconcile: `the base ${ledger.base} is not proven (${ledger.rebuilt}): a guarded reconcile checks it`,
    };
  }
  if (ledger.attempts.length > MAX_ATTEMPTS)
    return { reconcile: `${ledger.attempts.length} unfinished exports` };
  const from = [...new Set([ledger.base, ...ledger.attempts])].filter((c) => c !== target);
  return { from, failed: ledger.failed };
}

/** The cover rule: what the next export to `head` must look at. */
export function planCover(ledger: Ledger, head: string, now: Date): Plan {
  const cover = staleCover(ledger, head);
  if ("reconcile" in cover) return { kind: "reconcile", reason: cover.reconcile };
  const { from } = cover;
  const due = ledger.retry === null || now.getTime() >= Date.parse(ledger.retry.notBefore);
  const retry = due ? ledger.failed : [];
  const carry = due ? [] : ledger.failed;
  if (from.length === 0 && ledger.failed.length === 0 && ledger.lastSuccess === head) {
    return { kind: "current" };
  }
  if (from.length === 0 && !due && ledger.retry) {
    return { kind: "wait", until: new Date(ledger.retry.notBefore) };
  }
  return { kind: "diff", from, retry, carry };
}

/** Whether nothing is known of this lane yet: no record anywhere, no export ever started. */
export function isNew(ledger: Ledger): boolean {
  return ledger.seq === 0 && ledger.base === null && ledger.attempts.length === 0;
}

/**
 * What the ledger says lakefs-mirror may have written at the destination: its base and
 * unfinished attempts, and its failed paths (a reconcile on a foreign prefix deletes the keys
 * these name that the commit lacks, and only those).
 */
export function ourRecords(ledger: Ledger): { from: string[]; failed: FailedPath[] } {
  const from = [ledger.base, ...ledger.attempts].filter((c): c is string => c !== null);
  return { from, failed: ledger.failed };
}

/** Records what the lane's prefix held (see `prefix`). */
export function withPrefix(ledger: Ledger, prefix: PrefixState): Ledger {
  return ledger.prefix === prefix ? ledger : { ...ledger, prefix };
}

/**
 * The prefix state after a reconciling export. `listing` is what its merge saw when it walked
 * both listings to their end (undefined when it stopped before: a FAILURE that gave up, an
 * abort): `kept` counts the keys under the prefix that the commit lacks and that no record of
 * lakefs-mirror names. A foreign prefix becomes the lane's own only on such complete evidence
 * that nothing foreign is left; a listing that stopped part-way says nothing about the keys it
 * did not reach.
 */
export function prefixAfterReconcile(
  state: PrefixState,
  listing: { kept: number } | undefined,
): PrefixState {
  if (state !== "foreign") return state;
  return listing !== undefined && listing.kept === 0 ? "owned" : "foreign";
}

/**
 * Marks the base as unproven (see `rebuilt`). A prefix once found empty is not known to be
 * empty of others' keys any more either: the reconcile that checks the base is guarded.
 */
export function markRebuilt(ledger: Ledger, why: string): Ledger {
  if (ledger.base === null) return ledger;
  return { ...ledger, rebuilt: why, prefix: ledger.prefix === "empty" ? "owned" : ledger.prefix };
}

/** Recorded before an export to `target` writes anything. */
export function beginAttempt(ledger: Ledger, target: string, now: Date): Ledger {
  // A split run is the daemon's to name (see LaneSync); any other attempt ends the last one,
  // and its records are left for the next export that completes to remove.
  const ended = {
    work: null,
    ...(ledger.work || ledger.workRecords ? { workRecords: true } : {}),
  };
  if (ledger.attempts.includes(target)) return touch(ledger, ended, now);
  return touch(ledger, { attempts: [...ledger.attempts, target], ...ended }, now);
}

/** After the SUCCESS status file for `target` is written. */
export function completeSuccess(ledger: Ledger, target: string, now: Date): Ledger {
  return touch(
    ledger,
    { base: target, attempts: [], failed: [], retry: null, lastSuccess: target, rebuilt: null },
    now,
  );
}

/**
 * After the FAILURE status file for `target` is written. Everything the export covered is as in
 * `target` except `unfinished`, so `target` becomes the base and those paths its exceptions. When
 * the undone paths cannot be listed (too many, or a refusal such as the delete guard), the
 * attempt stays unfinished and the next export covers it whole.
 */
export function completeFailure(
  ledger: Ledger,
  target: string,
  unfinished: FailedPath[] | undefined,
  options: { now: Date; retried: boolean; backoffSeconds: (failures: number) => number },
): Ledger {
  const { now } = options;
  if (unfinished === undefined || unfinished.length > MAX_FAILED) return touch(ledger, {}, now);
  const failed = [...unfinished].sort((a, b) => compareUtf8(a.path, b.path));
  let retry = ledger.retry;
  if (failed.length === 0) {
    retry = null;
  } else if (options.retried || retry === null || ledger.failed.length === 0) {
    // The failed paths were tried again (or failed for the first time): back off further.
    const count = ledger.failed.length === 0 ? 1 : (retry?.count ?? 0) + 1;
    const notBefore = now.getTime() + options.backoffSeconds(count) * 1000;
    retry = { count, notBefore: new Date(notBefore).toISOString() };
  }
  return touch(ledger, { base: target, attempts: [], failed, retry, rebuilt: null }, now);
}

/** After the status file of an export to `target`: completeSuccess or completeFailure. */
export function completeExport(
  ledger: Ledger,
  target: string,
  result: { status: "SUCCESS" | "FAILURE"; unfinished: FailedPath[] | undefined },
  options: { now: Date; retried: boolean; backoffSeconds: (failures: number) => number },
): Ledger {
  const next =
    result.status === "SUCCESS"
      ? completeSuccess(ledger, target, options.now)
      : completeFailure(ledger, target, result.unfinished, options);
  // A split export that ended wrote its status file: nothing of it is left to resume.
  return next.work ? { ...next, work: null } : next;
}

/** Back-off after `failures` failed exports in a row: doubling from `base`, at most `max`. */
export function backoff(base: number, max: number): (failures: number) => number {
  return (failures) => Math.min(max, base * 2 ** (failures - 1));
}

function touch(ledger: Ledger, changes: Partial<Ledger>, now: Date): Ledger {
  return { ...ledger, ...changes, seq: ledger.seq + 1, updatedAt: now.toISOString() };
}

const COMMIT = /^[0-9a-zA-Z]{1,128}$/;

/** Checks a ledger read from a destination or the checkpoint store. */
export function parseLedger(text: string, where: string): Ledger {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new LedgerError(`${where} is not JSON`, { cause: err });
  }
  const bad = (what: string) => new LedgerError(`${where}: ${what}`);
  if (typeof v !== "object" || v === null) throw bad("not an object");
  const l = v as Record<string, unknown>;
  if (l.format !== 1) throw bad(`unknown format ${JSON.stringify(l.format)}`);
  const commitOrNull = (x: unknown) => x === null || (typeof x === "string" && COMMIT.test(x));
  if (typeof l.repository !== "string" || typeof l.branch !== "string")
    throw bad("repository and branch must be strings");
  if (!commitOrNull(l.base) || !commitOrNull(l.lastSuccess)) throw bad("bad commit ID");
  if (
    !Array.isArray(l.attempts) ||
    !l.attempts.every((c) => typeof c === "string" && COMMIT.test(c))
  )
    throw bad("attempts must be a list of commit IDs");
  if (
    !Array.isArray(l.failed) ||
    !l.failed.every(
      (f: unknown) =>
        typeof f === "object" &&
        f !== null &&
        typeof (f as FailedPath).path === "string" &&
        typeof (f as FailedPath).reason === "string",
    )
  )
    throw bad("failed must be a list of {path, reason}");
  const r = l.retry as Ledger["retry"] | undefined;
  if (
    r !== null &&
    (typeof r !== "object" ||
      typeof r.count !== "number" ||
      typeof r.notBefore !== "string" ||
      Number.isNaN(Date.parse(r.notBefore)))
  )
    throw bad("retry must be null or {count, notBefore}");
  if (typeof l.seq !== "number" || !Number.isInteger(l.seq) || l.seq < 0)
    throw bad("seq must be a whole number");
  if (l.prefix !== "empty" && l.prefix !== "owned" && l.prefix !== "foreign")
    throw bad("prefix must be empty, owned or foreign");
  if (l.rebuilt !== undefined && l.rebuilt !== null && typeof l.rebuilt !== "string")
    throw bad("rebuilt must be null or a reason");
  if (
    l.epoch !== undefined &&
    l.epoch !== null &&
    (typeof l.epoch !== "number" || !Number.isInteger(l.epoch))
  )
    throw bad("epoch must be null or a whole number");
  if (l.workRecords !== undefined && typeof l.workRecords !== "boolean")
    throw bad("workRecords must be true or false");
  return v as Ledger;
}

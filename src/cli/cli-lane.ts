import { hostname } from "node:os";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import type { Destination } from "../destination/destination.ts";
import { LakefsNotFoundError, LaneBusyError, LeaseHeldError, LedgerError } from "../errors.ts";
import type { ExportResult } from "../export/exporter.ts";
import { LEASE_PATH, LEDGER_PATH } from "../export/reserved.ts";
import type { StaleCover } from "../export/stale-tasks.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import { Lease, parseLease } from "../lease/lease.ts";
import {
  assertNoEnclosingLane,
  laneName,
  overlapError,
  recordLane,
} from "../ledger/lane-records.ts";
import {
  backoff,
  beginAttempt,
  completeExport,
  parseLedger,
  prefixAfterReconcile,
  staleCover,
  withPrefix,
} from "../ledger/ledger.ts";
import type { Ledger } from "../ledger/ledger.ts";
import { withRetry } from "../retry.ts";

/** How a one-off export ran, as far as the lane's ledger cares. */
export type CliRun =
  | { kind: "whole"; stale: StaleCover | undefined }
  | { kind: "diff"; from: string }
  | { kind: "sync" };

/**
 * The lane's ledger after a one-off export to `commit` that began as `attempt` (`before` plus the
 * commit recorded as an attempt). The export becomes the lane's base only when it covered every
 * key the ledger says may differ from the commit: a diff from exactly the ledger's covered state
 * (its base, no attempts, no failed paths, a proven base), a reconciling export (`--sync`,
 * which lists both sides), or a whole export that also deleted what the ledger says may be stale
 * (`stale`). Anything else stays an attempt, which the daemon's next export covers.
 */
export function ledgerAfterCliExport(
  before: Ledger,
  attempt: Ledger,
  commit: string,
  run: CliRun,
  result: Pick<ExportResult, "status" | "unfinished" | "listing">,
  options: { now: Date; backoffSeconds: (failures: number) => number },
): Ledger {
  const exact =
    before.base !== null &&
    !before.rebuilt &&
    before.attempts.length === 0 &&
    before.failed.length === 0;
  const covers =
    run.kind === "sync" ||
    (run.kind === "whole" && run.stale !== undefined) ||
    (run.kind === "diff" && exact && before.base === run.from);
  if (!covers) return attempt;
  let ledger = attempt;
  if (run.kind === "sync")
    ledger = withPrefix(ledger, prefixAfterReconcile(ledger.prefix, result.listing));
  return completeExport(ledger, commit, result, { ...options, retried: true });
}

export interface CliLaneOptions {
  dest: Destination;
  lakefs: LakefsClient;
  repository: string;
  config: Config;
  logger: Logger;
  signal?: AbortSignal | undefined;
}

/**
 * A one-off export into a prefix that a daemon's lane mirrors (its ledger is at the root). It
 * either keeps the lane's ledger true or refuses: while another owner holds the lane's lease it
 * writes nothing (LaneBusyError, naming the holder and the expiry); otherwise it takes the lease
 * for the whole export (as the lane, so the daemon re-reads the ledger when it takes the lease
 * back), records its commit as an attempt before writing, and afterwards what is true (see
 * ledgerAfterCliExport). Without a ledger there (and no lease held) it is not a lane's prefix:
 * `open` returns undefined and the export runs as lakeFS's Spark exporter would.
 */
export class CliLane {
  readonly ledger: Ledger;
  readonly #o: CliLaneOptions;
  readonly #lease: Lease | undefined;

  private constructor(o: CliLaneOptions, ledger: Ledger, lease: Lease | undefined) {
    this.#o = o;
    this.ledger = ledger;
    this.#lease = lease;
  }

  /** The lane's ledger at the destination, without taking anything (a dry run). */
  static async read(o: CliLaneOptions): Promise<Ledger | undefined> {
    const text = await withRetry(() => o.dest.getText(LEDGER_PATH, o.signal), retry(o, "read"));
    if (text === undefined) return undefined;
    const where = o.dest.describe(LEDGER_PATH);
    const other = recordLane(text);
    let ledger: Ledger;
    try {
      ledger = parseLedger(text, where);
    } catch (err) {
      // A lane's record this version cannot read: it cannot be kept true, so nothing is written.
      throw new LedgerError(
        `${where} is a lane ledger this version cannot use, so an export here could not keep it true: ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (ledger.repository !== o.repository) {
      const here = o.dest.uri;
      throw overlapError(
        `a one-off export of ${o.repository}`,
        here,
        other,
        here,
        `the destination is that lane's mirror of another repository`,
      );
    }
    return ledger;
  }

  /** Refuses, reads the ledger, takes the lease: see the class. */
  static async open(o: CliLaneOptions): Promise<CliLane | undefined> {
    const here = o.dest.uri;
    await withRetry(
      () => assertNoEnclosingLane(`a one-off export of ${o.repository}`, o.dest, o.signal),
      retry(o, "look for lanes around the destination"),
    );
    const [ledger, leaseText] = await Promise.all([
      CliLane.read(o),
      withRetry(() => o.dest.getText(LEASE_PATH, o.signal), retry(o, "read the lease")),
    ]);
    const held = leaseText === undefined ? undefined : parseLease(leaseText);
    if (!ledger) {
      // A lane that took its lease and has not recorded its first attempt yet.
      if (held && Date.parse(held.expiresAt) > Date.now())
        throw busy(here, `${held.repository}/${held.branch}`, held.owner, held.expiresAt);
      return undefined;
    }
    if (!o.config.lease.enabled) return new CliLane(o, ledger, undefined);
    const lease = new Lease({
      dest: o.dest,
      owner: `lakefs-mirror export on ${hostname()} (pid ${process.pid})`,
      repository: ledger.repository,
      branch: ledger.branch,
      ttlMs: o.config.lease.ttlSeconds * 1000,
      logger: o.logger,
      retry: o.config.retry,
    });
    try {
      await lease.ensure(o.signal);
    } catch (err) {
      if (!(err instanceof LeaseHeldError)) throw err;
      throw busy(here, laneName(ledger), err.owner, err.expiresAt.toISOString(), err);
    }
    // Whoever held the lane before this lease may have moved the ledger on: read it again.
    const current = (await CliLane.read(o)) ?? ledger;
    return new CliLane(o, current, lease);
  }

  /** For every write of the export: throws once the lease is no longer held. */
  readonly fence = (): void => this.#lease?.assertHeld();

  /**
   * What a whole export to `commit` must also delete so that its SUCCESS is true of every key
   * the ledger describes; undefined when only a full listing can tell (the export then stays an
   * attempt) or when a commit to diff from is gone from lakeFS.
   */
  async staleCover(commit: string): Promise<StaleCover | undefined> {
    return wholeCover(this.#o.lakefs, this.#o.repository, this.ledger, commit, this.#o.signal);
  }

  /**
   * Records `commit` as an attempt, runs `work` while holding the lease, records the outcome,
   * and hands the lease back. The lease's loss aborts `work` and writes no ledger.
   */
  async run(
    commit: string,
    plan: CliRun,
    work: (signal: AbortSignal) => Promise<ExportResult>,
  ): Promise<ExportResult> {
    const { config } = this.#o;
    const signal = this.#o.signal ?? new AbortController().signal;
    const body = async (held: AbortSignal) => {
      const before = this.ledger;
      const attempt = beginAttempt(before, commit, new Date());
      await this.#save(attempt, held);
      const result = await work(held);
      const after = ledgerAfterCliExport(before, attempt, commit, plan, result, {
        now: new Date(),
        backoffSeconds: backoff(
          config.scheduler.retryBaseSeconds,
          config.scheduler.retryMaxSeconds,
        ),
      });
      if (after !== attempt) await this.#save(after, held);
      return result;
    };
    try {
      return this.#lease ? await this.#lease.hold(signal, body) : await body(signal);
    } finally {
      await this.#lease?.release().catch(() => undefined);
    }
  }

  async #save(ledger: Ledger, signal: AbortSignal): Promise<void> {
    const epoch = this.#lease?.epoch;
    const text = JSON.stringify(epoch === undefined ? ledger : { ...ledger, epoch });
    await withRetry(
      () => {
        this.fence();
        return this.#o.dest.putText(LEDGER_PATH, text, signal, "application/json");
      },
      retry(this.#o, "write the lane ledger"),
    );
  }
}

/** See CliLane.staleCover; also what a dry run shows. */
export async function wholeCover(
  lakefs: LakefsClient,
  repository: string,
  ledger: Ledger,
  commit: string,
  signal?: AbortSignal,
): Promise<StaleCover | undefined> {
  const cover = staleCover(ledger, commit);
  if ("reconcile" in cover) return undefined;
  try {
    await Promise.all(cover.from.map((c) => lakefs.getCommit(repository, c, signal)));
  } catch (err) {
    if (err instanceof LakefsNotFoundError) return undefined;
    throw err;
  }
  return cover;
}

function busy(
  where: string,
  lane: string,
  owner: string,
  expiresAt: string,
  cause?: unknown,
): LaneBusyError {
  return new LaneBusyError(
    `${where} is the mirror of lane ${lane}, and ${owner} holds its lease until ${expiresAt}: ` +
      `an export now would write under a running daemon and make the lane's ledger untrue, so ` +
      `nothing was written. Try again once the lease has expired or been handed over (a daemon ` +
      `that stops hands it over at once)`,
    owner,
    new Date(expiresAt),
    cause === undefined ? undefined : { cause },
  );
}

function retry(o: CliLaneOptions, operation: string) {
  return { operation, signal: o.signal, logger: o.logger, policy: o.config.retry };
}

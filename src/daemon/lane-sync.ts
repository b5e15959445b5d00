import type { Logger } from "pino";
import type { Config } from "../config.ts";
import type { Destination } from "../destination/destination.ts";
import { exporterSettings } from "../clients.ts";
import {
  DestinationOverlapError,
  ExportFailedError,
  LakefsNotFoundError,
  LeaseHeldError,
  LeaseLostError,
} from "../errors.ts";
import { Exporter } from "../export/exporter.ts";
import type { ExportResult } from "../export/exporter.ts";
import { prefixState } from "../export/reconcile.ts";
import { pruneStatusFiles } from "../export/status-file.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import { Lease } from "../lease/lease.ts";
import {
  beginAttempt,
  backoff,
  completeExport,
  isNew,
  planCover,
  prefixAfterReconcile,
  withPrefix,
} from "../ledger/ledger.ts";
import type { Ledger, Plan } from "../ledger/ledger.ts";
import type { LedgerStore } from "../ledger/ledger-store.ts";
import type { CheckpointStore } from "./checkpoint.ts";
import { observeLag, sawHead } from "./lag.ts";
import { exportLane } from "./lane-export.ts";
import { checkLease, loadLane } from "./lane-load.ts";
import type { LaneLoadDeps } from "./lane-load.ts";
import type { Metrics } from "./metrics.ts";
import type { Lane, LaneRecord } from "./lane.ts";
import type { LaneOutcome } from "./scheduler.ts";
import type { Coordinator, Split } from "../work/coordinator.ts";
import { removeRecords } from "../work/items.ts";

export { resolveDestination } from "../config-mirrors.ts";

export interface LaneSyncDeps {
  lakefs: LakefsClient;
  destination: (uri: string) => Destination;
  checkpoint: CheckpointStore;
  ledgers: LedgerStore;
  metrics: Metrics;
  config: Config;
  logger: Logger;
  /** This daemon's name in destination leases (known once the checkpoint store is open). */
  owner: () => string;
  /** A task of the lane's export ended: tells the scheduler the export is moving. */
  progressed: (lane: Lane) => void;
  /** Shares big exports with the consumer group (kafka.workTopic); absent: every export runs here. */
  work?: Coordinator | undefined;
}

/** What a lane keeps between its runs in this process. */
interface LaneContext {
  dest: Destination;
  exporter: Exporter;
  lease: Lease | undefined;
  /** The lane's ledger as last saved; undefined: read it again (new holder, failed run). */
  ledger: Ledger | undefined;
}

/**
 * Brings lanes' destinations to their branch HEADs by the ledger's cover rule: the diffs from
 * the commit the destination holds and from every unfinished attempt, plus the paths that failed
 * last time (once their back-off has passed); or, with no trustworthy base, a reconciling full
 * export. The attempt is recorded before anything is written; the ledger advances after the
 * status file is written. With leases on, a lane writes only while this daemon holds its
 * destination's lease, and stops (no status file, no ledger) the moment it is lost.
 *
 * LaneSync decides and records (lease, plan, ledger, lag, metrics, pruning); exportLane
 * copies, here or through the group's work items (src/work: the coordinator decides and
 * records a split run, workers copy).
 */
export class LaneSync {
  readonly #d: LaneSyncDeps;
  readonly #lanes = new Map<string, LaneContext>();

  readonly #load: LaneLoadDeps;

  constructor(deps: LaneSyncDeps) {
    this.#d = deps;
    this.#load = {
      ledgers: deps.ledgers,
      retry: deps.config.retry,
      logger: deps.logger,
    };
  }

  /** The scheduler's runner. Throws when an export could not complete, to back off. */
  readonly run = async (lane: Lane, signal: AbortSignal): Promise<LaneOutcome> => {
    try {
      return await this.#run(lane, signal);
    } catch (err) {
      // A FAILURE status file is counted as a failed export already; this is "could not run".
      if (!(err instanceof ExportFailedError)) this.#d.metrics.exportError();
      if (err instanceof LeaseLostError) {
        this.#d.metrics.lease("lost");
        this.#d.logger.warn(
          { repository: lane.repository, branch: lane.branch, err: err.message },
          "lease lost: this daemon stopped writing the lane",
        );
      }
      // The ledger in memory may be ahead of what was saved: read it again next time.
      const ctx = this.#lanes.get(lane.id);
      if (ctx) ctx.ledger = undefined;
      if (err instanceof DestinationOverlapError) {
        this.#d.logger.error(
          { repository: lane.repository, branch: lane.branch, err },
          "refusing to export: the destination overlaps another lane's",
        );
        // The other lane may be waiting for this lease: hand it over at once.
        if (ctx?.lease?.held) await ctx.lease.release().catch(() => undefined);
      }
      throw err;
    }
  };

  /** Forgets a lane this daemon gave up, handing its lease over at once. */
  async release(laneId: string): Promise<void> {
    const ctx = this.#lanes.get(laneId);
    this.#lanes.delete(laneId);
    if (ctx?.lease?.held) {
      await ctx.lease.release().catch(() => undefined);
      this.#d.metrics.lease("released");
    }
  }

  /** Hands every lease this daemon holds over at once (shutdown). */
  async releaseAll(): Promise<void> {
    await Promise.all([...this.#lanes.keys()].map((id) => this.release(id)));
  }

  async #run(lane: Lane, signal: AbortSignal): Promise<LaneOutcome> {
    const { lakefs, metrics } = this.#d;
    const log = this.#d.logger.child({ repository: lane.repository, branch: lane.branch });
    const started = new Date();
    let head: string;
    try {
      head = (await lakefs.getBranch(lane.repository, lane.branch, signal)).commit_id;
    } catch (err) {
      if (err instanceof LakefsNotFoundError && err.what === "branch") {
        // post-delete-branch, or found gone by the reconciler: the lane ends, the mirror stays.
        // An event recorded after the branch was looked up may be for one created again.
        await this.#d.checkpoint.forget(lane.id, started);
        await this.release(lane.id);
        metrics.removeLane(lane);
        log.info("branch deleted; lane ended");
        return "ended";
      }
      throw err;
    }
    sawHead(lane, head);
    const ctx = this.#context(lane);
    // About to take the lease with no state of the lane loaded: a lease of another lane there
    // is an overlap, found before this lane's lease overwrites it.
    if (ctx.lease && !ctx.lease.held && !ctx.ledger)
      await checkLease(this.#load, lane, ctx.dest, signal);
    if (ctx.lease) {
      try {
        // A new holder (this daemon taking over, or again after a gap) reads the ledger anew:
        // whoever held the lane meanwhile may have moved it on.
        if (await ctx.lease.ensure(signal)) {
          ctx.ledger = undefined;
          metrics.lease("taken");
        }
      } catch (err) {
        if (!(err instanceof LeaseHeldError)) throw err;
        metrics.lease("held_elsewhere");
        // Nothing exported: the events that asked for this run are not covered yet.
        return {
          retryAt: new Date(Math.max(err.expiresAt.getTime(), Date.now()) + 1000),
          covered: false,
          error: err.message,
        };
      }
    }
    if (!ctx.ledger) {
      const loaded = await loadLane(this.#load, lane, ctx.dest, ctx.lease?.epoch, signal);
      if (loaded.source !== "checkpoint")
        log.info({ source: loaded.source, base: loaded.ledger.base }, "lane state loaded");
      this.#show(lane, ctx, loaded.ledger);
    }
    // The lag is measured while the export starts: it only feeds the export's log line and
    // the lane's metrics, and an export is what the commit's reader waits for.
    const measuring = this.#measure(lane, ctx, head, signal);
    measuring.catch(() => undefined);
    const plan = planCover(ctx.ledger!, head, started);
    if (plan.kind === "current" || plan.kind === "wait") {
      await measuring;
      // Nothing to write. Any pending event is covered: its commit is this HEAD or an older one.
      await this.#d.checkpoint.putLedger(lane.id, JSON.stringify(ctx.ledger), started);
      if (plan.kind === "wait") return { retryAt: plan.until };
      return "done";
    }
    // Pending events recorded before HEAD was read are covered by an export to it; one that
    // came later may be for a newer commit.
    const { result, mode } = ctx.lease
      ? await ctx.lease.hold(signal, (held) => this.#export(lane, ctx, plan, head, started, held))
      : await this.#export(lane, ctx, plan, head, started, signal);
    const ledger = ctx.ledger!;
    const lag = await measuring.catch(() => ({
      commitsBehind: lane.commitsBehind,
      lagSeconds: lane.lagSeconds,
    }));
    await this.#measure(lane, ctx, undefined, signal);
    const line = {
      destination: ctx.dest.uri,
      // From here to this line's time, this daemon wrote the destination (the lease says alone).
      startedAt: started.toISOString(),
      mode,
      from: plan.kind === "diff" ? plan.from : [],
      to: head,
      commitsCovered: lag.commitsBehind,
      copied: result.copied,
      deleted: result.deleted,
      unchanged: result.unchanged,
      failed: result.failed,
      failingPaths: ledger.failed.length,
      bytes: result.bytes,
      durationMs: result.durationMs,
      lagSeconds: Math.round(lag.lagSeconds * 1000) / 1000,
      commitsBehind: lag.commitsBehind,
      leaseEpoch: ctx.lease?.epoch ?? null,
      status: result.status,
      statusFile: result.statusKey,
    };
    const prune = () =>
      pruneStatusFiles(ctx.dest, this.#d.config.status.keep, signal, ledger.lastSuccess).catch(
        (err: unknown) => log.warn({ err }, "could not prune old status files"),
      );
    if (result.status === "SUCCESS") {
      log.info(line, "export finished");
      await prune();
      return "done";
    }
    const error = `${result.failed} failed: ${result.failureLines[0] ?? ""}`;
    log.error(line, "export failed");
    if (result.unfinished === undefined) {
      // Too many failures to track one by one, or a refusal: the whole attempt is retried.
      throw new ExportFailedError(`export to ${head} wrote ${result.statusKey}: ${error}`);
    }
    await prune();
    return ledger.retry ? { retryAt: new Date(ledger.retry.notBefore), error } : "done";
  }

  /** Records the attempt, exports, records the outcome; every write behind the lease's fence. */
  async #export(
    lane: Lane,
    ctx: LaneContext,
    plan: Exclude<Plan, { kind: "current" | "wait" }>,
    head: string,
    headReadAt: Date,
    signal: AbortSignal,
  ): Promise<{ result: ExportResult; mode: Plan["kind"] }> {
    const { config, metrics } = this.#d;
    const log = this.#d.logger.child({ repository: lane.repository, branch: lane.branch });
    let ledger = ctx.ledger!;
    // What the prefix holds, looked at once, before this lane writes anything of its own there:
    // keys under a prefix with no ledger or status file of ours are someone else's.
    if (isNew(ledger)) ledger = withPrefix(ledger, await prefixState(ctx.dest, signal));
    // Recorded before the first write: whatever happens next, the next export covers it. The
    // diffs are read while it is saved; the export writes nothing before the save is done. The
    // destination's copy is the one a load trusts: the local copy need not wait for the disk.
    // It carries the lease epoch it is written under (see LedgerStore.load).
    const work = this.#d.work;
    const at = ctx.lease
      ? {
          lane,
          dest: ctx.dest,
          exporter: ctx.exporter,
          lease: ctx.lease,
          progressed: () => this.#d.progressed(lane),
        }
      : undefined;
    const split: Split | undefined =
      work && at ? await work.prepare(at, ledger, plan, head, signal) : undefined;
    const attempt = {
      ...beginAttempt(ledger, head, new Date()),
      epoch: ctx.lease?.epoch ?? null,
      // A split export's run, for a new owner to resume (see Coordinator).
      work: split ? { run: split.run, commit: head, key: split.key } : null,
      ...(split ? { workRecords: true } : {}),
    };
    ledger = attempt;
    const fence = ctx.lease ? () => ctx.lease!.assertHeld() : undefined;
    const record = () =>
      this.#d.ledgers
        .save(lane, ctx.dest, attempt, { signal, fence, localSync: false })
        .then(() => this.#show(lane, ctx, attempt));
    const { result, mode } = await exportLane(
      {
        lane,
        exporter: ctx.exporter,
        ledger,
        plan,
        head,
        record,
        maxDeletes: config.export.maxDeletes,
        logger: log,
        ...(split && work && at ? { split: { split, work, at } } : {}),
      },
      signal,
    );
    metrics.export(lane, result);
    recordOf(lane).lastExportAt = new Date();
    // A listing that walked the whole prefix and found nothing foreign left makes the prefix
    // the lane's own from now on; one that stopped part-way proves nothing.
    if (mode === "reconcile")
      ledger = withPrefix(ledger, prefixAfterReconcile(ledger.prefix, result.listing));
    const retried = mode === "reconcile" || (plan.kind === "diff" && plan.retry.length > 0);
    const { retryBaseSeconds, retryMaxSeconds } = config.scheduler;
    const backoffSeconds = backoff(retryBaseSeconds, retryMaxSeconds);
    ledger = completeExport(ledger, head, result, { now: new Date(), retried, backoffSeconds });
    if (ledger.workRecords && fence)
      ledger = await sweepRecords(ctx.dest, ledger, fence, signal, log);
    const tracked = result.status === "SUCCESS" || result.unfinished !== undefined;
    await this.#d.ledgers.save(lane, ctx.dest, ledger, {
      signal,
      coveredUntil: tracked ? headReadAt : undefined,
      fence,
    });
    this.#show(lane, ctx, ledger);
    return { result, mode };
  }

  #context(lane: Lane): LaneContext {
    let ctx = this.#lanes.get(lane.id);
    if (ctx) return ctx;
    const { config } = this.#d;
    const dest = this.#d.destination(lane.destination);
    const logger = this.#d.logger.child({ repository: lane.repository, branch: lane.branch });
    const lease = config.lease.enabled
      ? new Lease({
          dest,
          owner: this.#d.owner(),
          repository: lane.repository,
          branch: lane.branch,
          ttlMs: config.lease.ttlSeconds * 1000,
          logger,
          retry: config.retry,
          onRenewed: () => this.#d.metrics.lease("renewed"),
        })
      : undefined;
    const exporter = new Exporter({
      lakefs: this.#d.lakefs,
      repository: lane.repository,
      destination: dest,
      logger,
      ...exporterSettings(config),
      // A task ended: the lane's export is moving (the scheduler tells a stalled one by this).
      onProgress: () => this.#d.progressed(lane),
      // Every write of an export checks that this daemon still holds the destination.
      ...(lease ? { fence: () => lease.assertHeld() } : {}),
    });
    ctx = { dest, exporter, lease, ledger: undefined };
    this.#lanes.set(lane.id, ctx);
    return ctx;
  }

  #show(lane: Lane, ctx: LaneContext, ledger: Ledger): void {
    ctx.ledger = ledger;
    const r = recordOf(lane);
    r.lastExportedCommit = ledger.base ?? undefined;
    r.lastSuccessCommit = ledger.lastSuccess ?? undefined;
    r.failingPaths = ledger.failed.length;
  }

  /** Updates the lane's lag against `head` (or the branch's HEAD now) in /status and metrics. */
  async #measure(lane: Lane, ctx: LaneContext, head: string | undefined, signal: AbortSignal) {
    const { lakefs, metrics } = this.#d;
    const now =
      head ??
      (await lakefs.getBranch(lane.repository, lane.branch, signal).catch(() => undefined))
        ?.commit_id;
    if (!now) return { commitsBehind: lane.commitsBehind, lagSeconds: lane.lagSeconds };
    const lag = await observeLag(lakefs, lane, ctx.ledger?.base ?? undefined, now, signal);
    metrics.lane(lane);
    return lag;
  }

  /**
   * The lag of a lane against `head` as the reconciler sees it, whatever the lane is doing:
   * from the ledger this process holds, else its checkpoint's copy, else nothing known.
   */
  async observe(lane: Lane, head: string, signal?: AbortSignal): Promise<void> {
    const base =
      this.#lanes.get(lane.id)?.ledger?.base ??
      (await this.#d.ledgers.cached(lane))?.base ??
      undefined;
    await observeLag(this.#d.lakefs, lane, base, head, signal);
    this.#d.metrics.lane(lane);
  }
}

/** LaneSync's own part of a lane, the one it writes (see lane.ts). */
function recordOf(lane: Lane): LaneRecord {
  return lane;
}

/**
 * After an export wrote its status file: the records of split runs go, this export's own (its
 * status file counts them) and any an earlier attempt gave up (this export covered what that
 * run would have done). Their workers write no more: a run ends after its owner's wait, and a
 * given-up one is named by no current lease. The ledger stops asking once a look finds none;
 * a failure leaves it asking, for the next export.
 */
async function sweepRecords(
  dest: Destination,
  ledger: Ledger,
  fence: () => void,
  signal: AbortSignal,
  log: Logger,
): Promise<Ledger> {
  try {
    const found = await removeRecords(dest, fence, signal);
    if (found > 0) log.info({ records: found }, "removed the records of split exports");
    return found === 0 ? { ...ledger, workRecords: false } : ledger;
  } catch (err) {
    if (signal.aborted || err instanceof LeaseLostError) throw err;
    log.warn({ err }, "could not remove the records of split exports; the next export tries again");
    return ledger;
  }
}

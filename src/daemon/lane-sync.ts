import type { Logger } from "pino";
import type { Config } from "../config.ts";
import { ExportFailedError, LakefsNotFoundError, errorMessage } from "../errors.ts";
import { Exporter } from "../export/exporter.ts";
import type { ExportResult } from "../export/exporter.ts";
import { parseDeleteLimit, prefixState } from "../export/reconcile.ts";
import { listStatusFiles } from "../export/status-file.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import {
  beginAttempt,
  completeFailure,
  completeSuccess,
  isNew,
  planCover,
  withPrefix,
} from "../ledger/ledger.ts";
import type { Ledger } from "../ledger/ledger.ts";
import type { LedgerStore } from "../ledger/ledger-store.ts";
import type { S3Destination } from "../s3/destination.ts";
import { formatS3Uri, parseS3Uri } from "../s3/uri.ts";
import type { CheckpointStore } from "./checkpoint.ts";
import type { Metrics } from "./metrics.ts";
import type { Lane, LaneOutcome } from "./scheduler.ts";

export interface LaneSyncDeps {
  lakefs: LakefsClient;
  destination: (uri: string) => S3Destination;
  checkpoint: CheckpointStore;
  ledgers: LedgerStore;
  metrics: Metrics;
  config: Config;
  logger: Logger;
}

/** Commits walked back from HEAD looking for the last exported one before giving up. */
const LAG_SCAN_LIMIT = 1000;

/**
 * How far a lane is behind its branch: the commits from HEAD back to the commit the mirror
 * holds, and the age of the oldest of them. When that commit is not among HEAD's ancestors (a
 * hard reset, or a lane that never exported), the branch counts as one move behind, with no age
 * to report: a reset's time is not recorded anywhere in lakeFS.
 */
export async function measureLag(
  lakefs: LakefsClient,
  repository: string,
  mirrored: string | undefined,
  headCommit: string,
  signal?: AbortSignal,
): Promise<{ commitsBehind: number; lagSeconds: number }> {
  if (mirrored === headCommit) return { commitsBehind: 0, lagSeconds: 0 };
  let behind = 0;
  let oldest: number | undefined;
  if (mirrored) {
    for await (const page of lakefs.logCommits(repository, headCommit, signal)) {
      for (const c of page) {
        if (c.id === mirrored) {
          return {
            commitsBehind: behind,
            lagSeconds: Math.max(0, Date.now() / 1000 - (oldest ?? c.creation_date)),
          };
        }
        behind++;
        oldest = c.creation_date;
        if (behind >= LAG_SCAN_LIMIT)
          return { commitsBehind: behind, lagSeconds: Date.now() / 1000 - oldest };
      }
    }
  }
  return { commitsBehind: 1, lagSeconds: 0 };
}

/** Keeps the newest `keep` status files, and always the newest SUCCESS (a resume point). */
async function pruneStatusFiles(
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

/**
 * Brings one lane's destination to its branch HEAD by the ledger's cover rule: the diffs from
 * the commit the destination holds and from every unfinished attempt, plus the paths that failed
 * last time (once their back-off has passed); or, with no trustworthy base, a reconciling full
 * export. The attempt is recorded before anything is written; the ledger advances after the
 * status file is written.
 */
export function createLaneRunner(deps: LaneSyncDeps) {
  const ledgers = new Map<string, Ledger>();
  const exporters = new Map<string, Exporter>();
  const backoff = (failures: number) =>
    Math.min(
      deps.config.scheduler.retryMaxSeconds,
      deps.config.scheduler.retryBaseSeconds * 2 ** (failures - 1),
    );

  const exporterFor = (lane: Lane, dest: S3Destination): Exporter => {
    let e = exporters.get(lane.id);
    if (!e) {
      const { config } = deps;
      e = new Exporter({
        lakefs: deps.lakefs,
        repository: lane.repository,
        destination: dest,
        logger: deps.logger.child({ repository: lane.repository, branch: lane.branch }),
        concurrency: config.export.concurrency,
        copyMode: config.export.copyMode,
        rounds: [...config.export.rounds],
        retry: config.retry,
        serverSideSources: config.export.serverSideCopySources,
      });
      exporters.set(lane.id, e);
    }
    return e;
  };

  const run = async (lane: Lane, signal: AbortSignal): Promise<LaneOutcome> => {
    const { lakefs, metrics, config } = deps;
    const log = deps.logger.child({ repository: lane.repository, branch: lane.branch });
    const started = new Date();
    let head: string;
    try {
      head = (await lakefs.getBranch(lane.repository, lane.branch, signal)).commit_id;
    } catch (err) {
      if (err instanceof LakefsNotFoundError && err.what === "branch") {
        // post-delete-branch, or found gone by the reconciler: the lane ends, the mirror stays.
        await deps.checkpoint.forget(lane.id);
        ledgers.delete(lane.id);
        exporters.delete(lane.id);
        metrics.removeLane(lane);
        log.info("branch deleted; lane ended");
        return "ended";
      }
      throw err;
    }
    lane.headCommit = head;
    const dest = deps.destination(lane.destination);
    let ledger = ledgers.get(lane.id);
    if (!ledger) {
      const loaded = await deps.ledgers.load(lane, dest, signal);
      ledger = loaded.ledger;
      if (loaded.source !== "checkpoint")
        log.info({ source: loaded.source, base: ledger.base }, "lane state loaded");
    }
    const show = (l: Ledger) => {
      ledgers.set(lane.id, l);
      lane.lastExportedCommit = l.base ?? undefined;
      lane.lastSuccessCommit = l.lastSuccess ?? undefined;
      lane.failingPaths = l.failed.length;
    };
    show(ledger);
    const lag = await measureLag(lakefs, lane.repository, ledger.base ?? undefined, head, signal);
    lane.commitsBehind = lag.commitsBehind;
    lane.lagSeconds = lag.lagSeconds;
    metrics.lane(lane);

    const plan = planCover(ledger, head, started);
    if (plan.kind === "current" || plan.kind === "wait") {
      // Nothing to write. Any pending event is covered: its commit is this HEAD or an older one.
      await deps.checkpoint.putLedger(lane.id, JSON.stringify(ledger), started);
      if (plan.kind === "wait") return { retryAt: plan.until };
      lane.lastError = undefined;
      return "done";
    }
    // What the prefix holds, looked at once, before this lane writes anything of its own there:
    // keys under a prefix with no ledger or status file of ours are someone else's.
    if (isNew(ledger)) ledger = withPrefix(ledger, await prefixState(dest, signal));
    // Recorded before the first write: whatever happens next, the next export covers it.
    ledger = beginAttempt(ledger, head, new Date());
    await deps.ledgers.save(lane, dest, ledger, signal);
    show(ledger);

    const exporter = exporterFor(lane, dest);
    const owned = lane.dedicated || ledger.prefix !== "foreign";
    const unguarded = ledger.prefix === "empty";
    const reconcile = () =>
      exporter.exportReconciling(
        head,
        {
          dedicated: lane.dedicated,
          owned,
          unguarded,
          maxDeletes: parseDeleteLimit(config.export.maxDeletes),
        },
        signal,
      );
    let result: ExportResult;
    let mode = plan.kind;
    if (plan.kind === "reconcile") {
      log.info({ reason: plan.reason }, "no trustworthy base; reconciling with a full listing");
      result = await reconcile();
    } else {
      try {
        result = await exporter.exportCover(
          plan.from,
          head,
          { retry: plan.retry, carry: plan.carry },
          signal,
        );
      } catch (err) {
        if (!(err instanceof LakefsNotFoundError) || err.what === "object") throw err;
        // A commit the diffs start from is gone from lakeFS (garbage-collected history).
        log.warn({ from: plan.from, err }, "a commit to diff from is gone; reconciling instead");
        mode = "reconcile";
        result = await reconcile();
      }
    }
    metrics.export(lane, result);
    // A listing that found nothing foreign left makes the prefix the lane's own from now on.
    if (mode === "reconcile" && result.kept === 0 && ledger.prefix === "foreign")
      ledger = withPrefix(ledger, "owned");

    const retried = mode === "reconcile" || (plan.kind === "diff" && plan.retry.length > 0);
    ledger =
      result.status === "SUCCESS"
        ? completeSuccess(ledger, head, new Date())
        : completeFailure(ledger, head, result.unfinished, {
            now: new Date(),
            retried,
            backoffSeconds: backoff,
          });
    const tracked = result.status === "SUCCESS" || result.unfinished !== undefined;
    await deps.ledgers.save(lane, dest, ledger, signal, tracked ? started : undefined);
    show(ledger);

    const now = await lakefs.getBranch(lane.repository, lane.branch, signal).catch(() => undefined);
    if (now) {
      lane.headCommit = now.commit_id;
      const after = await measureLag(
        lakefs,
        lane.repository,
        ledger.base ?? undefined,
        now.commit_id,
        signal,
      );
      lane.commitsBehind = after.commitsBehind;
      lane.lagSeconds = after.lagSeconds;
    }
    metrics.lane(lane);
    const line = {
      destination: formatS3Uri(parseS3Uri(lane.destination)),
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
      status: result.status,
      statusFile: result.statusKey,
    };
    if (result.status === "SUCCESS") {
      lane.lastError = undefined;
      log.info(line, "export finished");
      await pruneStatusFiles(dest, config.status.keep, signal).catch((err: unknown) =>
        log.warn({ err, destination: lane.destination }, "could not prune old status files"),
      );
      return "done";
    }
    lane.lastError = `${result.failed} failed: ${result.failureLines[0] ?? ""}`;
    log.error(line, "export failed");
    if (!tracked) {
      // Too many failures to track one by one, or a refusal: the whole attempt is retried.
      throw new ExportFailedError(`export to ${head} wrote ${result.statusKey}: ${lane.lastError}`);
    }
    await pruneStatusFiles(dest, config.status.keep, signal).catch((err: unknown) =>
      log.warn(
        { err: errorMessage(err), destination: lane.destination },
        "could not prune old status files",
      ),
    );
    return ledger.retry ? { retryAt: new Date(ledger.retry.notBefore) } : "done";
  };

  return async (lane: Lane, signal: AbortSignal): Promise<LaneOutcome> => {
    try {
      return await run(lane, signal);
    } catch (err) {
      // A FAILURE status file is counted as a failed export already; this is "could not run".
      if (!(err instanceof ExportFailedError)) deps.metrics.exportError();
      // The in-memory ledger may be ahead of what was saved: read it again next time.
      ledgers.delete(lane.id);
      throw err;
    }
  };
}

/** A mirror's destination for one branch, normalized: `s3a://b/x` and `s3://b/x/` are one place. */
export function resolveDestination(template: string, repository: string, branch: string): string {
  const uri = template.replaceAll("{repository}", repository).replaceAll("{branch}", branch);
  return formatS3Uri(parseS3Uri(uri));
}

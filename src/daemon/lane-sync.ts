import type { Logger } from "pino";
import type { Config } from "../config.ts";
import { LakefsNotFoundError, MirrorError } from "../errors.ts";
import { Exporter } from "../export/exporter.ts";
import type { ExportResult } from "../export/exporter.ts";
import { parseStatusFileName } from "../export/status-file.ts";
import type { ParsedStatusFile } from "../export/status-file.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import type { S3Destination } from "../s3/destination.ts";
import { parseS3Uri } from "../s3/uri.ts";
import type { CheckpointStore } from "./checkpoint.ts";
import type { Metrics } from "./metrics.ts";
import type { Lane } from "./scheduler.ts";

/** An export ran but wrote a FAILURE status file: the lane backs off and tries again. */
export class ExportFailedError extends MirrorError {
  override readonly code = "LM_EXPORT_FAILED";
  override readonly retriable = true;
}

export interface LaneSyncDeps {
  lakefs: LakefsClient;
  destination: (uri: string) => S3Destination;
  checkpoint: CheckpointStore;
  metrics: Metrics;
  config: Config;
  logger: Logger;
}

/** Commits walked back from HEAD looking for the last exported one before giving up. */
const LAG_SCAN_LIMIT = 1000;

/**
 * How far a lane is behind its branch: the commits from HEAD back to the last exported one, and
 * the age of the oldest of them. When the last exported commit is not among HEAD's ancestors (a
 * hard reset, or a lane that never exported), the branch counts as one move behind, with no age
 * to report: a reset's time is not recorded anywhere in lakeFS.
 */
export async function measureLag(
  lakefs: LakefsClient,
  lane: Lane,
  headCommit: string,
  signal?: AbortSignal,
): Promise<{ commitsBehind: number; lagSeconds: number }> {
  if (lane.lastExportedCommit === headCommit) return { commitsBehind: 0, lagSeconds: 0 };
  let behind = 0;
  let oldest: number | undefined;
  if (lane.lastExportedCommit) {
    for await (const page of lakefs.logCommits(lane.repository, headCommit, signal)) {
      for (const c of page) {
        if (c.id === lane.lastExportedCommit) {
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

/** The status files at a destination's root, newest first. */
async function statusFiles(
  dest: S3Destination,
  signal: AbortSignal,
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

/** The newest SUCCESS status file at the destination root whose commit lakeFS still has. */
async function commitFromStatusFiles(
  deps: LaneSyncDeps,
  lane: Lane,
  dest: S3Destination,
  signal: AbortSignal,
): Promise<string | undefined> {
  const newest = (await statusFiles(dest, signal)).find((f) => f.status === "SUCCESS");
  if (!newest) return undefined;
  try {
    await deps.lakefs.getCommit(lane.repository, newest.commitId, signal);
    return newest.commitId;
  } catch (err) {
    if (err instanceof LakefsNotFoundError) return undefined;
    throw err;
  }
}

/** Keeps the newest `keep` status files of the destination, deleting older ones. */
async function pruneStatusFiles(
  dest: S3Destination,
  keep: number,
  signal: AbortSignal,
): Promise<void> {
  if (keep <= 0) return;
  const old = (await statusFiles(dest, signal)).slice(keep).map((f) => f.path);
  for (let i = 0; i < old.length; i += 1000) await dest.deleteBatch(old.slice(i, i + 1000), signal);
}

/**
 * Brings one lane's destination to its branch HEAD: a two-dot diff from the last exported
 * commit (from the checkpoint, else the newest SUCCESS status file at the destination), or a
 * full export when there is none. The checkpoint advances only after the SUCCESS file exists.
 */
export function createLaneRunner(deps: LaneSyncDeps) {
  const run = syncLane(deps);
  return async (lane: Lane, signal: AbortSignal): Promise<"done" | "ended"> => {
    try {
      return await run(lane, signal);
    } catch (err) {
      // A FAILURE status file is counted as a failed export already; this is "could not run".
      if (!(err instanceof ExportFailedError)) deps.metrics.exportError();
      throw err;
    }
  };
}

function syncLane(deps: LaneSyncDeps) {
  return async (lane: Lane, signal: AbortSignal): Promise<"done" | "ended"> => {
    const { lakefs, checkpoint, metrics, config } = deps;
    const started = new Date();
    let head: string;
    try {
      head = (await lakefs.getBranch(lane.repository, lane.branch, signal)).commit_id;
    } catch (err) {
      if (err instanceof LakefsNotFoundError && err.what === "branch") {
        // post-delete-branch, or found gone by the reconciler: the lane ends, the mirror stays.
        await checkpoint.forget(lane.id);
        metrics.removeLane(lane);
        deps.logger.info(
          { repository: lane.repository, branch: lane.branch },
          "branch deleted; lane ended",
        );
        return "ended";
      }
      throw err;
    }
    lane.headCommit = head;
    const dest = deps.destination(lane.destination);
    if (!lane.lastExportedCommit) {
      const found = await commitFromStatusFiles(deps, lane, dest, signal);
      if (found) {
        lane.lastExportedCommit = found;
        deps.logger.info(
          { repository: lane.repository, branch: lane.branch, commit: found },
          "resuming from the destination's newest SUCCESS status file",
        );
      }
    }
    const lag = await measureLag(lakefs, lane, head, signal);
    lane.commitsBehind = lag.commitsBehind;
    lane.lagSeconds = lag.lagSeconds;
    metrics.lane(lane);
    if (lane.lastExportedCommit === head) {
      await checkpoint.advance(lane.id, head, started);
      return "done";
    }

    const exporter = new Exporter({
      lakefs,
      repository: lane.repository,
      destination: dest,
      logger: deps.logger.child({ repository: lane.repository, branch: lane.branch }),
      concurrency: config.export.concurrency,
      copyMode: config.export.copyMode,
      rounds: [...config.export.rounds],
    });
    let from = lane.lastExportedCommit;
    let result: ExportResult;
    try {
      result = from
        ? await exporter.exportDiff(from, head, signal)
        : await exporter.exportAllFromCommit(head, signal);
    } catch (err) {
      if (!(from && err instanceof LakefsNotFoundError && err.what === "commit")) throw err;
      // The last exported commit is gone from lakeFS (garbage-collected history).
      deps.logger.warn(
        { repository: lane.repository, branch: lane.branch, commit: from },
        "last exported commit is gone from lakeFS; exporting the whole HEAD commit",
      );
      from = undefined;
      result = await exporter.exportAllFromCommit(head, signal);
    }
    metrics.export(lane, result);
    const line = {
      repository: lane.repository,
      branch: lane.branch,
      destination: lane.destination,
      from: from ?? null,
      to: head,
      commitsCovered: lag.commitsBehind,
      copied: result.copied,
      deleted: result.deleted,
      failed: result.failed,
      bytes: result.bytes,
      durationMs: result.durationMs,
      lagSeconds: Math.round(lag.lagSeconds * 1000) / 1000,
      commitsBehind: lag.commitsBehind,
      status: result.status,
      statusFile: result.statusKey,
    };
    if (result.status !== "SUCCESS") {
      deps.logger.error(line, "export failed");
      throw new ExportFailedError(
        `export ${from ?? "(full)"}..${head} wrote ${result.statusKey}: ${result.failureLines[0] ?? ""}`,
      );
    }
    await checkpoint.advance(lane.id, head, started);
    lane.lastExportedCommit = head;
    // Lag after this export: HEAD may have moved while it ran.
    const now = await lakefs.getBranch(lane.repository, lane.branch, signal).catch(() => undefined);
    if (now) {
      lane.headCommit = now.commit_id;
      const after = await measureLag(lakefs, lane, now.commit_id, signal);
      lane.commitsBehind = after.commitsBehind;
      lane.lagSeconds = after.lagSeconds;
    }
    metrics.lane(lane);
    deps.logger.info(line, "export finished");
    await pruneStatusFiles(dest, config.status.keep, signal).catch((err: unknown) =>
      deps.logger.warn(
        { err: (err as Error).message, destination: lane.destination },
        "could not prune old status files",
      ),
    );
    return "done";
  };
}

export function resolveDestination(template: string, repository: string, branch: string): string {
  const uri = template.replaceAll("{repository}", repository).replaceAll("{branch}", branch);
  parseS3Uri(uri);
  return uri;
}

import type { Logger } from "pino";
import { AbortedError, SourceObjectError, errorMessage } from "../errors.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import type { ObjectStats } from "../lakefs/types.ts";
import { withRetry } from "../retry.ts";
import type { RetryPolicy } from "../retry.ts";
import type { S3Destination } from "../s3/destination.ts";
import { ObjectCopier } from "./copier.ts";
import type { CopyMode } from "./copier.ts";
import { TaskPool } from "./pool.ts";
import { Rounds } from "./rounds.ts";
import type { RoundRule } from "./rounds.ts";
import {
  failureLine,
  failureText,
  MAX_FAILURE_LINES,
  statusFileName,
  SUCCESS_TEXT,
} from "./status-file.ts";
import type { ExportStatus } from "./status-file.ts";

/** One thing to do at the destination. A copy from a full listing carries its stats already. */
export type ExportTask =
  | { op: "copy"; path: string; stats?: ObjectStats; change: "added" | "changed" | "listed" }
  | { op: "delete"; path: string };

export interface ExportProgress {
  copied: number;
  deleted: number;
  bytes: number;
  bytesStreamed: number;
  failed: number;
  serverSideCopies: number;
  streamedCopies: number;
}

export interface ExportResult extends ExportProgress {
  repository: string;
  commitId: string;
  fromCommitId: string | undefined;
  status: ExportStatus;
  statusKey: string;
  failureLines: string[];
  durationMs: number;
}

export interface ExporterOptions {
  lakefs: LakefsClient;
  repository: string;
  destination: S3Destination;
  logger: Logger;
  concurrency?: number;
  copyMode?: CopyMode;
  rounds?: RoundRule[];
  retry?: Partial<RetryPolicy>;
  onProgress?: (progress: Readonly<ExportProgress>) => void;
}

const DELETE_BATCH = 1000;

/**
 * The export engine behind all three modes of lakeFS's Spark exporter: a stream of tasks (a
 * full listing or a two-dot diff), run page by page with bounded concurrency, in rounds, then a
 * status file at the destination root. Never throws for a failed object: failures end up in
 * the FAILURE status file. Throws only when the export could not run at all (lakeFS down, a
 * commit that does not exist, the destination unwritable for the status file, abort).
 */
export class Exporter {
  readonly #o: ExporterOptions & { concurrency: number; copyMode: CopyMode };
  readonly #rounds: Rounds;
  readonly #copier: ObjectCopier;

  constructor(options: ExporterOptions) {
    this.#o = {
      ...options,
      concurrency: options.concurrency ?? 16,
      copyMode: options.copyMode ?? "auto",
    };
    this.#rounds = new Rounds(options.rounds);
    this.#copier = new ObjectCopier({
      lakefs: options.lakefs,
      repository: options.repository,
      dest: options.destination,
      mode: this.#o.copyMode,
      logger: options.logger,
      retry: options.retry,
    });
  }

  /** Whole branch HEAD (the committed state only). */
  async exportAllFromBranch(branch: string, signal?: AbortSignal): Promise<ExportResult> {
    const ref = await this.#o.lakefs.getBranch(this.#o.repository, branch, signal);
    return this.exportAllFromCommit(ref.commit_id, signal);
  }

  /** Every object of a commit. Never deletes anything at the destination. */
  async exportAllFromCommit(commitId: string, signal?: AbortSignal): Promise<ExportResult> {
    const commit = await this.#o.lakefs.getCommit(this.#o.repository, commitId, signal);
    return this.#run(commit.id, undefined, this.listingTasks(commit.id, signal), signal);
  }

  /** The diff from `prevCommitId` to the branch HEAD. */
  async exportFrom(
    branch: string,
    prevCommitId: string,
    signal?: AbortSignal,
  ): Promise<ExportResult> {
    const ref = await this.#o.lakefs.getBranch(this.#o.repository, branch, signal);
    return this.exportDiff(prevCommitId, ref.commit_id, signal);
  }

  /** The two-dot diff `prevCommitId..commitId`: copies added and changed, deletes removed. */
  async exportDiff(
    prevCommitId: string,
    commitId: string,
    signal?: AbortSignal,
  ): Promise<ExportResult> {
    const [prev, target] = await Promise.all([
      this.#o.lakefs.getCommit(this.#o.repository, prevCommitId, signal),
      this.#o.lakefs.getCommit(this.#o.repository, commitId, signal),
    ]);
    return this.#run(target.id, prev.id, this.diffTasks(prev.id, target.id, signal), signal);
  }

  async *listingTasks(commitId: string, signal?: AbortSignal): AsyncGenerator<ExportTask> {
    for await (const page of this.#o.lakefs.listObjects(this.#o.repository, commitId, "", signal)) {
      for (const stats of page) {
        if (stats.path_type === "object")
          yield { op: "copy", path: stats.path, stats, change: "listed" };
      }
    }
  }

  async *diffTasks(fromId: string, toId: string, signal?: AbortSignal): AsyncGenerator<ExportTask> {
    for await (const page of this.#o.lakefs.diff(this.#o.repository, fromId, toId, signal)) {
      for (const d of page) {
        if (d.path_type !== "object") continue;
        switch (d.type) {
          case "added":
          case "changed":
            yield { op: "copy", path: d.path, change: d.type };
            break;
          case "removed":
            yield { op: "delete", path: d.path };
            break;
          case "conflict":
          case "prefix_changed":
            // Cannot occur in a two-dot diff without a delimiter; refuse rather than guess.
            throw new TypeError(`unexpected diff entry type "${d.type}" for ${d.path}`);
        }
      }
    }
  }

  /** Which round a path is exported in. */
  roundOf(path: string): number {
    return this.#rounds.of(path);
  }

  async #run(
    commitId: string,
    fromCommitId: string | undefined,
    tasks: AsyncIterable<ExportTask>,
    signal?: AbortSignal,
  ): Promise<ExportResult> {
    const started = Date.now();
    const progress: ExportProgress = {
      copied: 0,
      deleted: 0,
      bytes: 0,
      bytesStreamed: 0,
      failed: 0,
      serverSideCopies: 0,
      streamedCopies: 0,
    };
    const failures: string[] = [];
    const fail = (line: string) => {
      progress.failed++;
      if (failures.length < MAX_FAILURE_LINES) failures.push(line);
    };
    const pool = new TaskPool(this.#o.concurrency);
    const deferred = new Map<number, ExportTask[]>();
    let deletes: string[] = [];

    const flushDeletes = async () => {
      if (deletes.length === 0) return;
      const batch = deletes;
      deletes = [];
      await pool.submit(() => this.#deleteBatch(batch, progress, fail, signal));
    };
    const runTask = async (task: ExportTask) => {
      if (task.op === "delete") {
        deletes.push(task.path);
        if (deletes.length >= DELETE_BATCH) await flushDeletes();
        return;
      }
      await pool.submit(() => this.#copyOne(commitId, task, progress, fail, signal));
    };

    // Round 0 runs while the listing streams; later-round tasks (few: _SUCCESS markers by default) wait in memory.
    const first = this.#rounds.order[0] ?? 0;
    for await (const task of tasks) {
      if (signal?.aborted) break;
      const round = this.#rounds.of(task.path);
      if (round === first) {
        await runTask(task);
      } else {
        let list = deferred.get(round);
        if (!list) deferred.set(round, (list = []));
        list.push(task);
      }
    }
    await flushDeletes();
    await pool.drain();
    for (const round of this.#rounds.order.slice(1)) {
      // A failed round stops the rounds after it, as in the Spark exporter.
      if (progress.failed > 0 || signal?.aborted) break;
      for (const task of deferred.get(round) ?? []) {
        if (signal?.aborted) break;
        await runTask(task);
      }
      await flushDeletes();
      await pool.drain();
    }
    if (signal?.aborted) throw new AbortedError(`export of ${commitId} aborted`);

    const status: ExportStatus = progress.failed === 0 ? "SUCCESS" : "FAILURE";
    const statusKey = statusFileName(commitId, status, new Date());
    // The status file is written last: its presence is what readers and the daemon trust.
    await this.#o.destination.putText(
      statusKey,
      status === "SUCCESS" ? SUCCESS_TEXT : failureText(failures, progress.failed),
      signal,
    );
    return {
      ...progress,
      repository: this.#o.repository,
      commitId,
      fromCommitId,
      status,
      statusKey: this.#o.destination.key(statusKey),
      failureLines: failures,
      durationMs: Date.now() - started,
    };
  }

  async #copyOne(
    commitId: string,
    task: Extract<ExportTask, { op: "copy" }>,
    progress: ExportProgress,
    fail: (line: string) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    try {
      // A diff entry carries no physical address: stat it (by commit ID) to learn one.
      const stats =
        task.stats ??
        (await this.#o.lakefs.statObject(this.#o.repository, commitId, task.path, signal));
      const outcome = await this.#copier.copy(commitId, stats, signal);
      progress.copied++;
      progress.bytes += outcome.bytes;
      if (outcome.method === "stream") {
        progress.streamedCopies++;
        progress.bytesStreamed += outcome.bytes;
      } else {
        progress.serverSideCopies++;
      }
    } catch (err) {
      if (signal?.aborted) return;
      const reason = err instanceof SourceObjectError ? err.message : errorMessage(err);
      fail(failureLine("copy", task.path, reason));
      this.#o.logger.warn({ path: task.path, err: reason }, "copy failed");
    }
    this.#o.onProgress?.(progress);
  }

  async #deleteBatch(
    paths: string[],
    progress: ExportProgress,
    fail: (line: string) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    try {
      const refused = await withRetry(() => this.#o.destination.deleteBatch(paths, signal), {
        operation: `delete ${paths.length} keys`,
        signal,
        logger: this.#o.logger,
        ...(this.#o.retry ? { policy: this.#o.retry } : {}),
      });
      for (const r of refused) fail(failureLine("delete", r.path, r.error));
      progress.deleted += paths.length - refused.length;
    } catch (err) {
      if (signal?.aborted) return;
      for (const p of paths) fail(failureLine("delete", p, errorMessage(err)));
    }
    this.#o.onProgress?.(progress);
  }
}

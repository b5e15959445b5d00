import type { Logger } from "pino";
import {
  AbortedError,
  LakefsNotFoundError,
  ObjectRefusedError,
  errorMessage,
  isRetriable,
} from "../errors.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import type { ObjectStats } from "../lakefs/types.ts";
import type { FailedPath } from "../ledger/ledger.ts";
import { MAX_FAILED } from "../ledger/ledger.ts";
import { withRetry } from "../retry.ts";
import type { RetryPolicy } from "../retry.ts";
import type { S3Destination } from "../s3/destination.ts";
import { ObjectCopier, mirrorMeta } from "./copier.ts";
import type { CopyMode } from "./copier.ts";
import { coverTasks } from "./cover-tasks.ts";
import { TaskPool } from "./pool.ts";
import { Reconciliation } from "./reconcile.ts";
import type { DeleteLimit } from "./reconcile.ts";
import { isReservedPath, reservedReason } from "./reserved.ts";
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

/**
 * One thing to do at the destination.
 * - copy: write the object as it is in the commit (a listing supplies its stats already);
 * - delete: remove the key;
 * - sync: the key's state is unknown (it failed before): copy it if the commit has it, else delete;
 * - check: the key exists on both sides with equal size and content; copy it only if its
 *   Content-Type or metadata differ (a HEAD tells);
 * - keep: a key the commit lacks that is not ours to delete (counted, left alone);
 * - refuse: the export must not finish as SUCCESS, for the reason given.
 */
export type ExportTask =
  | {
      op: "copy";
      path: string;
      stats?: ObjectStats;
      change: "added" | "changed" | "listed" | "missing" | "differs";
    }
  | { op: "delete"; path: string }
  | { op: "sync"; path: string }
  | { op: "check"; path: string; stats: ObjectStats }
  | { op: "keep"; path: string }
  | { op: "refuse"; path: string; reason: string };

export interface ExportProgress {
  copied: number;
  deleted: number;
  bytes: number;
  bytesStreamed: number;
  failed: number;
  serverSideCopies: number;
  streamedCopies: number;
  /** Reconciling exports: keys found equal and left alone. */
  unchanged: number;
  /** Reconciling exports: keys the commit lacks, left because the prefix is not lakefs-mirror's. */
  kept: number;
}

export interface ExportResult extends ExportProgress {
  repository: string;
  commitId: string;
  /** The commits diffed from; empty for a full listing. */
  fromCommitIds: string[];
  /** The commit diffed from when there was exactly one (the Spark exporter's prev_commit_id). */
  fromCommitId: string | undefined;
  status: ExportStatus;
  statusKey: string;
  failureLines: string[];
  /**
   * The paths this export left undone (failed, or in a round that did not run), with why; empty
   * on SUCCESS. Undefined when they cannot be listed (too many, or a refusal such as the delete
   * guard): then nothing the export did may be taken as a new base.
   */
  unfinished: FailedPath[] | undefined;
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
  /** Locations server-side copies may read besides the repository's storage namespace. */
  serverSideSources?: readonly string[];
  onProgress?: (progress: Readonly<ExportProgress>) => void;
}

export interface CoverOptions {
  /** Failed paths to read again at the commit. */
  retry?: readonly FailedPath[];
  /** Failed paths not tried this time: they stay failed unless the diffs write them. */
  carry?: readonly FailedPath[];
}

export interface ReconcileOptions {
  /** Delete keys the commit lacks even when no status file or ledger marks the prefix as ours. */
  dedicated?: boolean;
  /** Whether the prefix is lakefs-mirror's, when the caller knows (the daemon's ledger does). */
  owned?: boolean;
  /** Every key under the prefix is the caller's own: no max-deletes guard. */
  unguarded?: boolean;
  /** The most keys a listing may delete; more turns the export into a FAILURE. */
  maxDeletes?: DeleteLimit;
}

const DELETE_BATCH = 1000;
const STOP_AFTER_TRANSIENT_FAILURES = 3;

/**
 * The export engine behind all three modes of lakeFS's Spark exporter and the daemon: a
 * stream of tasks (a full listing, two-dot diffs, or a listing merged with the destination's),
 * run page by page with bounded concurrency, in rounds, then a status file at the destination
 * root. Never throws for a failed object: failures end up in the FAILURE status file. Throws
 * only when the export could not run (lakeFS down for longer than the retries, a commit that
 * does not exist, the status file unwritable, abort); it then returns only once every request
 * it started has settled, so nothing it began can land after a later export's writes.
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
    if (!Number.isInteger(this.#o.concurrency) || this.#o.concurrency < 1)
      throw new TypeError(`export concurrency must be >= 1, got ${this.#o.concurrency}`);
    this.#rounds = new Rounds(options.rounds);
    this.#copier = new ObjectCopier({
      lakefs: options.lakefs,
      repository: options.repository,
      dest: options.destination,
      mode: this.#o.copyMode,
      logger: options.logger,
      retry: options.retry,
      serverSideSources: options.serverSideSources,
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
    return this.#run(commit.id, [], this.listingTasks(commit.id, signal), {}, signal);
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
    return this.exportCover([prev.id], target.id, {}, signal);
  }

  /**
   * Brings every key that may differ from `commitId` to its state there: the union of the
   * two-dot diffs from each of `fromCommitIds`, plus `retry` paths read again at the commit.
   * A `from` commit lakeFS no longer has fails the export before anything is written.
   */
  exportCover(
    fromCommitIds: string[],
    commitId: string,
    options: CoverOptions = {},
    signal?: AbortSignal,
  ): Promise<ExportResult> {
    const tasks = this.coverTasks(fromCommitIds, commitId, options.retry ?? [], signal);
    return this.#run(commitId, fromCommitIds, tasks, options, signal);
  }

  /**
   * A full export that also repairs: the commit's listing merged with the destination's, copying
   * only what differs and deleting keys the commit lacks, within the guards (see Reconciliation).
   */
  async exportReconciling(
    commitId: string,
    options: ReconcileOptions = {},
    signal?: AbortSignal,
  ): Promise<ExportResult> {
    const commit = await this.#o.lakefs.getCommit(this.#o.repository, commitId, signal);
    return this.#run(commit.id, [], this.reconcileTasks(commit.id, options, signal), {}, signal);
  }

  async *listingTasks(commitId: string, signal?: AbortSignal): AsyncGenerator<ExportTask> {
    for await (const page of this.#o.lakefs.listObjects(this.#o.repository, commitId, "", signal)) {
      for (const stats of page) {
        if (stats.path_type === "object")
          yield { op: "copy", path: stats.path, stats, change: "listed" };
      }
    }
  }

  coverTasks(
    fromCommitIds: string[],
    commitId: string,
    retry: readonly FailedPath[] = [],
    signal?: AbortSignal,
  ): AsyncGenerator<ExportTask> {
    return coverTasks(this.#o.lakefs, this.#o.repository, fromCommitIds, commitId, retry, signal);
  }

  reconcileTasks(
    commitId: string,
    options: ReconcileOptions = {},
    signal?: AbortSignal,
  ): AsyncGenerator<ExportTask> {
    return new Reconciliation({
      lakefs: this.#o.lakefs,
      repository: this.#o.repository,
      destination: this.#o.destination,
      commitId,
      dedicated: options.dedicated ?? false,
      owned: options.owned,
      unguarded: options.unguarded,
      maxDeletes: options.maxDeletes,
      signal,
    }).tasks();
  }

  /** Which round a path is exported in. */
  roundOf(path: string): number {
    return this.#rounds.of(path);
  }

  async #run(
    commitId: string,
    fromCommitIds: string[],
    tasks: AsyncIterable<ExportTask>,
    cover: CoverOptions,
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
      unchanged: 0,
      kept: 0,
    };
    const failures: string[] = [];
    let undone: FailedPath[] | undefined = [];
    const leftUndone = (path: string, reason: string, op?: "copy" | "delete") => {
      if (undone && undone.length < MAX_FAILED)
        undone.push({ path, reason, ...(op ? { op } : {}) });
      else undone = undefined;
    };
    // Failures in a row that outlived their retries and may succeed later (lakeFS or S3 away,
    // not one object's problem): this many stop the export instead of failing object after
    // object, each after a full retry budget.
    let streak = 0;
    let stopped: unknown;
    const fail = (op: "copy" | "delete", path: string, err: unknown, line?: string) => {
      const reason = errorMessage(err);
      progress.failed++;
      if (failures.length < MAX_FAILURE_LINES) failures.push(failureLine(op, path, line ?? reason));
      leftUndone(path, reason, op);
      if (isRetriable(err) && ++streak >= STOP_AFTER_TRANSIENT_FAILURES) stopped ??= err;
    };
    // Carried failures stay failed unless this export writes their path after all.
    const carried = new Map((cover.carry ?? []).map((f) => [f.path, f]));
    const done = (path: string) => {
      streak = 0;
      carried.delete(path);
    };

    const pool = new TaskPool(this.#o.concurrency);
    const deferred = new Map<number, ExportTask[]>();
    let deletes: string[] = [];
    const flushDeletes = async () => {
      if (deletes.length === 0) return;
      const batch = deletes;
      deletes = [];
      await pool.submit(() => this.#deleteBatch(batch, progress, fail, done, signal));
    };
    const runTask = async (task: ExportTask) => {
      switch (task.op) {
        case "delete":
          // A key lakefs-mirror keeps there was never mirrored from lakeFS: nothing to delete.
          if (isReservedPath(task.path)) {
            done(task.path);
            return;
          }
          deletes.push(task.path);
          if (deletes.length >= DELETE_BATCH) await flushDeletes();
          return;
        case "keep":
          progress.kept++;
          return;
        case "refuse":
          progress.failed++;
          failures.push(`delete: ${task.reason}`);
          undone = undefined;
          return;
        case "copy":
        case "sync":
        case "check":
          await pool.submit(() =>
            this.#writeOne(commitId, task, progress, fail, done, signal, (p) => {
              deletes.push(p);
            }),
          );
          return;
      }
    };

    // Round 0 runs while the listing streams; later-round tasks (few: _SUCCESS markers by
    // default) wait in memory. Whatever happens, every request started here settles before
    // this function returns or throws.
    const first = this.#rounds.order[0] ?? 0;
    try {
      for await (const task of tasks) {
        if (signal?.aborted || stopped !== undefined) break;
        const round = this.#rounds.of(task.path);
        if (round === first) await runTask(task);
        else {
          let list = deferred.get(round);
          if (!list) deferred.set(round, (list = []));
          list.push(task);
        }
      }
      await pool.drain();
      await flushDeletes();
      await pool.drain();
      for (const round of this.#rounds.order.slice(1)) {
        const pending = deferred.get(round) ?? [];
        // A failed round stops the rounds after it, as in the Spark exporter.
        if (progress.failed > 0 || signal?.aborted || stopped !== undefined) {
          for (const t of pending)
            if (t.op !== "keep" && t.op !== "refuse")
              leftUndone(t.path, "not exported: an earlier round failed");
          continue;
        }
        for (const task of pending) {
          if (signal?.aborted) break;
          await runTask(task);
        }
        await pool.drain();
        await flushDeletes();
        await pool.drain();
      }
    } finally {
      await pool.drain();
    }
    if (signal?.aborted) throw new AbortedError(`export of ${commitId} aborted`);
    for (const f of carried.values())
      fail(f.op ?? "copy", f.path, f.reason, `not retried yet (backing off): ${f.reason}`);
    if (stopped !== undefined) {
      // What the export did not reach is unknown: the whole attempt stays to be covered.
      failures.push(
        `export stopped after ${STOP_AFTER_TRANSIENT_FAILURES} failures in a row: ${errorMessage(stopped)}`,
      );
      undone = undefined;
    }

    const status: ExportStatus = progress.failed === 0 ? "SUCCESS" : "FAILURE";
    const statusKey = statusFileName(commitId, status, new Date());
    // The status file is written last: its presence is what readers and the daemon trust.
    await withRetry(
      () =>
        this.#o.destination.putText(
          statusKey,
          status === "SUCCESS" ? SUCCESS_TEXT : failureText(failures, progress.failed),
          signal,
        ),
      this.#retryOptions("write the status file", signal),
    );
    return {
      ...progress,
      repository: this.#o.repository,
      commitId,
      fromCommitIds,
      fromCommitId: fromCommitIds.length === 1 ? fromCommitIds[0] : undefined,
      status,
      statusKey: this.#o.destination.key(statusKey),
      failureLines: failures,
      unfinished: status === "SUCCESS" ? [] : undone,
      durationMs: Date.now() - started,
    };
  }

  async #writeOne(
    commitId: string,
    task: Extract<ExportTask, { op: "copy" | "sync" | "check" }>,
    progress: ExportProgress,
    fail: (op: "copy" | "delete", path: string, err: unknown) => void,
    done: (path: string) => void,
    signal: AbortSignal | undefined,
    deleteLater: (path: string) => void,
  ): Promise<void> {
    try {
      let stats: ObjectStats | undefined;
      if (task.op === "sync") {
        try {
          stats = await this.#stat(commitId, task.path, signal);
        } catch (err) {
          if (!(err instanceof LakefsNotFoundError)) throw err;
          // Gone from the commit. A reserved key at the destination is lakefs-mirror's own.
          if (isReservedPath(task.path)) done(task.path);
          else deleteLater(task.path);
          return;
        }
      }
      if (isReservedPath(task.path)) throw new ObjectRefusedError(reservedReason(task.path));
      // A diff entry carries no physical address: stat it (by commit ID) to learn one.
      stats ??=
        task.op !== "sync" && task.stats
          ? task.stats
          : await this.#stat(commitId, task.path, signal);
      if (task.op === "check" && (await this.#sameMeta(task.path, stats, signal))) {
        progress.unchanged++;
        done(task.path);
        return;
      }
      const outcome = await this.#copier.copy(commitId, stats, signal);
      progress.copied++;
      progress.bytes += outcome.bytes;
      if (outcome.method === "stream") {
        progress.streamedCopies++;
        progress.bytesStreamed += outcome.bytes;
      } else {
        progress.serverSideCopies++;
      }
      done(task.path);
    } catch (err) {
      if (signal?.aborted) return;
      fail("copy", task.path, err);
      this.#o.logger.warn({ path: task.path, err }, "copy failed");
    } finally {
      this.#o.onProgress?.(progress);
    }
  }

  #stat(commitId: string, path: string, signal?: AbortSignal): Promise<ObjectStats> {
    return this.#o.lakefs.statObject(this.#o.repository, commitId, path, signal);
  }

  /** Whether the mirrored key already carries the Content-Type and metadata it should. */
  async #sameMeta(path: string, stats: ObjectStats, signal?: AbortSignal): Promise<boolean> {
    const head = await withRetry(
      () => this.#o.destination.head(path, signal),
      this.#retryOptions(`head ${path}`, signal),
    );
    if (!head) return false;
    const want = mirrorMeta(stats);
    if (head.contentType !== want.contentType) return false;
    const a = Object.entries(head.metadata).sort();
    const b = Object.entries(want.metadata).sort();
    return a.length === b.length && a.every(([k, v], i) => b[i]?.[0] === k && b[i][1] === v);
  }

  async #deleteBatch(
    paths: string[],
    progress: ExportProgress,
    fail: (op: "copy" | "delete", path: string, err: unknown) => void,
    done: (path: string) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    try {
      const refused = await withRetry(
        () => this.#o.destination.deleteBatch(paths, signal),
        this.#retryOptions(`delete ${paths.length} keys`, signal),
      );
      const bad = new Set(refused.map((r) => r.path));
      for (const r of refused) fail("delete", r.path, r.error);
      for (const p of paths) if (!bad.has(p)) done(p);
      progress.deleted += paths.length - refused.length;
    } catch (err) {
      if (signal?.aborted) return;
      for (const p of paths) fail("delete", p, err);
    }
    this.#o.onProgress?.(progress);
  }

  #retryOptions(operation: string, signal: AbortSignal | undefined) {
    return {
      operation,
      signal,
      logger: this.#o.logger,
      ...(this.#o.retry ? { policy: this.#o.retry } : {}),
    };
  }
}

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
import { mirrorMeta } from "./copier.ts";
import type { ObjectCopier } from "./copier.ts";
import { TaskPool } from "./pool.ts";
import { isReservedPath, reservedReason } from "./reserved.ts";
import type { Rounds } from "./rounds.ts";
import {
  failureLine,
  failureText,
  MAX_FAILURE_LINES,
  statusFileName,
  SUCCESS_TEXT,
} from "./status-file.ts";
import type { ExportStatus } from "./status-file.ts";
import type { ExportProgress, ExportTask } from "./task.ts";

export interface ExportRunOptions {
  lakefs: LakefsClient;
  repository: string;
  destination: S3Destination;
  copier: ObjectCopier;
  rounds: Rounds;
  concurrency: number;
  logger: Logger;
  retry?: Partial<RetryPolicy> | undefined;
  onProgress?: ((progress: Readonly<ExportProgress>) => void) | undefined;
}

/** What one run of a task stream did, and the status file it wrote. */
export interface RunOutcome extends ExportProgress {
  status: ExportStatus;
  /** The status file's key at the destination. */
  statusKey: string;
  failureLines: string[];
  /**
   * The paths the run left undone (failed, or in a round that did not run), with why; empty on
   * SUCCESS. Undefined when they cannot be listed (too many, or a refusal such as the delete
   * guard, or a stop after repeated failures): nothing the run did may be taken as a new base.
   */
  unfinished: FailedPath[] | undefined;
  durationMs: number;
}

const DELETE_BATCH = 1000;
const STOP_AFTER_TRANSIENT_FAILURES = 3;

/**
 * Runs one export's task stream: page by page with bounded concurrency, in rounds, then the
 * status file at the destination root. A failed object becomes a FAILURE line; several failures
 * in a row that outlived their retries (lakeFS or S3 away) stop the run. Whatever ends it, every
 * request it started has settled before it returns or throws, so nothing it began can land after
 * a later export's writes.
 */
export class ExportRun {
  readonly #o: ExportRunOptions;
  readonly #copier: ObjectCopier;
  readonly #rounds: Rounds;

  constructor(options: ExportRunOptions) {
    this.#o = options;
    this.#copier = options.copier;
    this.#rounds = options.rounds;
  }

  async run(
    commitId: string,
    tasks: AsyncIterable<ExportTask>,
    carry: readonly FailedPath[],
    signal?: AbortSignal,
  ): Promise<RunOutcome> {
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
    const carried = new Map(carry.map((f) => [f.path, f]));
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

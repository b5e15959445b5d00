import { setMaxListeners } from "node:events";
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
import type { Destination } from "../destination/destination.ts";
import { mirrorMeta, sameMeta } from "./copier.ts";
import type { ObjectCopier } from "./copier.ts";
import type { TableRewrite } from "./table-rewrite.ts";
import { TaskPool } from "./pool.ts";
import { isReservedPath, reservedReason } from "./reserved.ts";
import { DeferredTasks } from "./deferred.ts";
import { LAST, comparePositions, samePosition } from "./rounds.ts";
import type { Position, Rounds } from "./rounds.ts";
import {
  failureLine,
  failureText,
  MAX_FAILURE_LINES,
  statusFileName,
  SUCCESS_TEXT,
} from "./status-file.ts";
import type { ExportStatus } from "./status-file.ts";
import { addProgress, noProgress } from "./task.ts";
import type { ExportProgress, ExportTask } from "./task.ts";

export interface ExportRunOptions {
  lakefs: LakefsClient;
  repository: string;
  destination: Destination;
  copier: ObjectCopier;
  rounds: Rounds;
  concurrency: number;
  logger: Logger;
  retry?: Partial<RetryPolicy> | undefined;
  onProgress?: ((progress: Readonly<ExportProgress>) => void) | undefined;
  /**
   * Called before every write (and the status file); throws to stop the run, as the daemon's
   * lease check does when this process may no longer write the destination.
   */
  fence?: (() => void) | undefined;
  /** Deletes run after every copy of every round. */
  deletesLast?: boolean | undefined;
  /** Later-round tasks held in memory before they spill to files (see DeferredTasks). */
  deferredInMemory?: number | undefined;
  /** Where spilled tasks go; default: the OS's temporary directory. */
  spillDirectory?: string | undefined;
  /** No write (nor the status file) before this settles; its rejection ends the run. */
  writesAfter?: Promise<unknown> | undefined;
  /** The Iceberg rewrite of this run's tables (see TableRewrite); none: every file as it is. */
  rewrite?: TableRewrite | undefined;
  /**
   * This run is one part of a split export (a work item): it writes round 0 only and hands
   * every other task (and, with `deferDeletes`, every delete) to `defer`, for the export's owner
   * to run once every part has finished. No status file.
   */
  part?: { defer: (task: ExportTask) => void; deferDeletes: boolean } | undefined;
  /** What the parts of a split export did before this, the owner's last run, counted in its status. */
  prior?: PartsDone | undefined;
}

/** What the parts of a split export did, summed. */
export interface PartsDone {
  progress: ExportProgress;
  failures: string[];
  /** Their unfinished paths; undefined when any part could not list them. */
  undone: FailedPath[] | undefined;
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

/** Enough for the markers and metadata of most exports; a VACUUM's deletes spill. */
export const DEFAULT_DEFERRED_IN_MEMORY = 10_000;
const LEFT_UNDONE = "not exported: an earlier round failed";
const STOP_AFTER_TRANSIENT_FAILURES = 3;

/**
 * Runs one export's task stream, once: page by page with bounded concurrency, in rounds (each
 * position of RoundPosition a barrier; later ones wait in a DeferredTasks store, which spills to
 * files), then the status file at the destination root. A failed object becomes a FAILURE line; several
 * failures in a row that outlived their retries (lakeFS or S3 away) stop the run with a FAILURE
 * that says so; a fence that throws (the daemon's lease is gone) stops it with no status file.
 * Whatever ends it, every request it started has settled before it returns or throws, so
 * nothing it began can land after a later export's writes.
 */
export class ExportRun {
  readonly #o: ExportRunOptions;
  readonly #commitId: string;
  readonly #signal: AbortSignal | undefined;
  readonly #pool: TaskPool;
  readonly #progress: ExportProgress = noProgress();
  readonly #failures: string[] = [];
  /** Carried failures stay failed unless this run writes their path after all. */
  readonly #carried: Map<string, FailedPath>;
  /**
   * Where each carried failure would have run: one still failed there stops the positions
   * after it, as a failure of this run does (a `_SUCCESS` must not be written over a data
   * file that is still stale because its copy is backing off).
   */
  readonly #carriedAt: [string, Position][];
  /**
   * With deletes last, retried paths found gone from the commit: deleted with the other
   * deletes. Few: retries come from the ledger's bounded failed list.
   */
  #lateDeletes: string[] = [];
  #undone: FailedPath[] | undefined = [];
  #deletes: string[] = [];
  /**
   * Failures in a row that outlived their retries and may pass later (lakeFS or S3 away, not
   * one object's problem): this many stop the run instead of failing object after object,
   * each after a full retry budget.
   */
  #streak = 0;
  #stopped: unknown;
  /** What the fence threw: the run ends without a status file. */
  #fenced: Error | undefined;
  /** Whether `writesAfter` has settled well. */
  #open = false;

  constructor(
    options: ExportRunOptions,
    commitId: string,
    carry: readonly FailedPath[],
    signal?: AbortSignal,
  ) {
    this.#o = options;
    this.#commitId = commitId;
    this.#signal = signal;
    // Every task in flight may wait on it (for a write slot, a range, a retry's back-off).
    if (signal) setMaxListeners(0, signal);
    this.#pool = new TaskPool(options.concurrency);
    this.#carried = new Map(carry.map((f) => [f.path, f]));
    this.#carriedAt = [...this.#carried.values()].map((f) => [
      f.path,
      this.#positionOf(f.op === "delete" ? "delete" : "copy", f.path),
    ]);
    // Its rejection is the run's to report, when the run reaches its first write.
    options.writesAfter?.catch(() => undefined);
    const prior = options.prior;
    if (prior) {
      // A failure in a part stops this run's later positions, as one of its own would.
      addProgress(this.#progress, prior.progress);
      this.#failures.push(...prior.failures.slice(0, MAX_FAILURE_LINES));
      this.#undone = prior.undone ? [...prior.undone] : undefined;
    }
  }

  /**
   * Runs one part of a split export (see `part`): round 0 of the tasks, then settles.
   * Throws like `run` when aborted or fenced.
   */
  async runPart(tasks: AsyncIterable<ExportTask>): Promise<PartsDone> {
    const part = this.#o.part;
    if (!part) throw new TypeError("runPart needs the part option");
    const signal = this.#signal;
    try {
      for await (const task of tasks) {
        if (signal?.aborted || this.#stopped !== undefined || this.#fenced !== undefined) break;
        await this.#opened();
        const position = this.#positionOf(task.op, task.path);
        if (position.round === 0 && !(part.deferDeletes && task.op === "delete"))
          await this.#runTask(task);
        else part.defer(task);
      }
      await this.#pool.drain();
      await this.#flushDeletes();
      await this.#pool.drain();
      // Retried paths found gone from the commit, with deletes last: the owner deletes them.
      for (const path of this.#lateDeletes) part.defer({ op: "delete", path });
      this.#lateDeletes = [];
    } finally {
      await this.#pool.drain();
    }
    if (this.#fenced !== undefined) throw this.#fenced;
    if (signal?.aborted) throw new AbortedError(`export of ${this.#commitId} aborted`);
    if (this.#stopped !== undefined) {
      this.#failures.push(
        `export stopped after ${STOP_AFTER_TRANSIENT_FAILURES} failures in a row: ${errorMessage(this.#stopped)}`,
      );
      this.#undone = undefined;
    }
    return {
      progress: { ...this.#progress },
      failures: this.#failures,
      undone: this.#progress.failed === 0 ? [] : this.#undone,
    };
  }

  async run(tasks: AsyncIterable<ExportTask>): Promise<RunOutcome> {
    const started = Date.now();
    const signal = this.#signal;
    const deferred = new DeferredTasks({
      inMemory: this.#o.deferredInMemory ?? DEFAULT_DEFERRED_IN_MEMORY,
      directory: this.#o.spillDirectory,
    });
    const halted = () =>
      signal?.aborted === true || this.#stopped !== undefined || this.#fenced !== undefined;
    const settle = async () => {
      await this.#pool.drain();
      await this.#flushDeletes();
      await this.#pool.drain();
    };
    try {
      // Round 0 runs while the listing streams; later positions wait in the deferred store,
      // bounded in memory (it spills to files), and run in order once the listing is done.
      for await (const task of tasks) {
        if (halted()) break;
        await this.#opened();
        if (halted()) break;
        const position = this.#positionOf(task.op, task.path);
        if (position.round === 0) await this.#runTask(task);
        else await deferred.add(position, task);
      }
      await settle();
      let current: Position | undefined;
      // A failed position stops the positions after it, as in the Spark exporter.
      let stopped = false;
      const enter = async (position: Position) => {
        await settle();
        current = position;
        stopped ||= this.#failedBefore(position);
        if (samePosition(position, LAST) && !stopped) await this.#runLateDeletes();
      };
      for await (const { position, task } of halted() ? [] : deferred.drain()) {
        if (halted()) break;
        if (!current || !samePosition(current, position)) await enter(position);
        if (halted()) break;
        if (!stopped) await this.#runTask(task);
        else if (this.#undone === undefined) break;
        else if (task.op !== "keep" && task.op !== "refuse")
          this.#leftUndone(task.path, LEFT_UNDONE, task.op === "delete" ? "delete" : undefined);
      }
      if (!halted() && this.#lateDeletes.length > 0 && !(current && samePosition(current, LAST)))
        await enter(LAST);
      if (stopped)
        for (const path of this.#lateDeletes) this.#leftUndone(path, LEFT_UNDONE, "delete");
      await settle();
    } finally {
      await this.#pool.drain();
      await deferred.close();
    }
    if (this.#fenced !== undefined) throw this.#fenced;
    if (signal?.aborted) throw new AbortedError(`export of ${this.#commitId} aborted`);
    for (const f of this.#carried.values())
      this.#fail(f.op ?? "copy", f.path, f.reason, `not retried yet (backing off): ${f.reason}`);
    if (this.#stopped !== undefined) {
      // What the run did not reach is unknown: the whole attempt stays to be covered.
      this.#failures.push(
        `export stopped after ${STOP_AFTER_TRANSIENT_FAILURES} failures in a row: ${errorMessage(this.#stopped)}`,
      );
      this.#undone = undefined;
    }

    await this.#opened();
    this.#o.fence?.();
    const progress = this.#progress;
    const status: ExportStatus = progress.failed === 0 ? "SUCCESS" : "FAILURE";
    const statusKey = statusFileName(this.#commitId, status, new Date());
    // The status file is written last: its presence is what readers and the daemon trust.
    await withRetry(() => {
      this.#o.fence?.();
      return this.#o.destination.putText(
        statusKey,
        status === "SUCCESS" ? SUCCESS_TEXT : failureText(this.#failures, progress.failed),
        signal,
      );
    }, this.#retryOptions("write the status file"));
    return {
      ...progress,
      status,
      statusKey: this.#o.destination.key(statusKey),
      failureLines: this.#failures,
      unfinished: status === "SUCCESS" ? [] : this.#undone,
      durationMs: Date.now() - started,
    };
  }

  #positionOf(op: ExportTask["op"], path: string): Position {
    return op === "delete" && this.#o.deletesLast ? LAST : this.#o.rounds.positionOf(path);
  }

  /** Whether anything before `position` failed: in this run, or carried and not written. */
  #failedBefore(position: Position): boolean {
    if (this.#progress.failed > 0) return true;
    return this.#carriedAt.some(
      ([path, at]) => this.#carried.has(path) && comparePositions(at, position) < 0,
    );
  }

  async #runLateDeletes(): Promise<void> {
    const paths = this.#lateDeletes;
    this.#lateDeletes = [];
    for (const path of paths) await this.#runTask({ op: "delete", path });
  }

  /** Waits, once, for what must happen before the first write (the daemon's attempt record). */
  async #opened(): Promise<void> {
    if (this.#open) return;
    await this.#o.writesAfter;
    this.#open = true;
  }

  async #runTask(task: ExportTask): Promise<void> {
    switch (task.op) {
      case "delete":
        // A key lakefs-mirror keeps there was never mirrored from lakeFS: nothing to delete.
        if (isReservedPath(task.path)) {
          this.#done(task.path);
          return;
        }
        this.#deletes.push(task.path);
        if (this.#deletes.length >= this.#o.destination.capabilities.maxDeleteBatch)
          await this.#flushDeletes();
        return;
      case "keep":
        this.#progress.kept++;
        return;
      case "refuse":
        this.#progress.failed++;
        this.#failures.push(`delete: ${task.reason}`);
        this.#undone = undefined;
        return;
      case "copy":
      case "sync":
      case "check":
        await this.#pool.submit(() => this.#writeOne(task));
        return;
    }
  }

  async #flushDeletes(): Promise<void> {
    if (this.#deletes.length === 0) return;
    const batch = this.#deletes;
    this.#deletes = [];
    await this.#pool.submit(() => this.#deleteBatch(batch));
  }

  /** Checks the fence right before a request that writes; false when the run must stop. */
  #mayWrite(): boolean {
    if (this.#fenced !== undefined) return false;
    try {
      this.#o.fence?.();
      return true;
    } catch (err) {
      this.#fenced = err instanceof Error ? err : new Error(String(err));
      return false;
    }
  }

  #leftUndone(path: string, reason: string, op?: "copy" | "delete"): void {
    if (this.#undone && this.#undone.length < MAX_FAILED)
      this.#undone.push({ path, reason, ...(op ? { op } : {}) });
    else this.#undone = undefined;
  }

  #fail(op: "copy" | "delete", path: string, err: unknown, line?: string): void {
    const reason = errorMessage(err);
    this.#progress.failed++;
    if (this.#failures.length < MAX_FAILURE_LINES)
      this.#failures.push(failureLine(op, path, line ?? reason));
    this.#leftUndone(path, reason, op);
    if (isRetriable(err) && ++this.#streak >= STOP_AFTER_TRANSIENT_FAILURES) this.#stopped ??= err;
  }

  #done(path: string): void {
    this.#streak = 0;
    this.#carried.delete(path);
  }

  async #writeOne(task: Extract<ExportTask, { op: "copy" | "sync" | "check" }>): Promise<void> {
    const signal = this.#signal;
    let slot: { release(): void } | undefined;
    try {
      let stats: ObjectStats | undefined;
      if (task.op === "sync") {
        try {
          stats = await this.#stat(task.path);
        } catch (err) {
          if (!(err instanceof LakefsNotFoundError)) throw err;
          // Gone from the commit. A reserved key at the destination is lakefs-mirror's own.
          if (isReservedPath(task.path)) this.#done(task.path);
          else if (this.#o.deletesLast) this.#lateDeletes.push(task.path);
          else this.#deletes.push(task.path);
          return;
        }
      }
      if (isReservedPath(task.path)) throw new ObjectRefusedError(reservedReason(task.path));
      // A diff entry carries no physical address: unless the listing supplied them
      // (withListedStats), stat it by commit ID to learn one.
      stats ??= task.op !== "sync" && task.stats ? task.stats : await this.#stat(task.path);
      const rewrite = this.#o.rewrite;
      // A rewritten file differs from its source by design: a reconcile compares the
      // destination with the rewrite of the source instead (the copier's `unlessSame`).
      const rewritten = rewrite?.kindOf(task.path) !== undefined;
      if (task.op === "check" && !rewritten && (await this.#sameMeta(task.path, stats))) {
        this.#progress.unchanged++;
        this.#done(task.path);
        return;
      }
      if (!this.#mayWrite()) return;
      // Paced writes (export.adaptiveConcurrency): the slot is taken once a write is due (a
      // check that finds the object in place never waits), before the object is read.
      slot = await this.#o.destination.writeSlot?.(signal);
      const reconciled = task.op === "check" || (task.op === "copy" && task.change === "differs");
      const outcome = await this.#o.copier.copy(this.#commitId, stats, signal, rewrite, {
        unlessSame: rewritten && reconciled,
      });
      const progress = this.#progress;
      if (outcome.method === "unchanged") {
        progress.unchanged++;
        this.#done(task.path);
        return;
      }
      progress.copied++;
      progress.bytes += outcome.bytes;
      if (outcome.method === "stream") {
        progress.streamedCopies++;
        progress.bytesStreamed += outcome.bytes;
      } else {
        progress.serverSideCopies++;
      }
      this.#done(task.path);
    } catch (err) {
      // Aborted, or stopped by the fence (no longer this process's to write): not a failure.
      if (signal?.aborted || !this.#mayWrite()) return;
      this.#fail("copy", task.path, err);
      this.#o.logger.warn({ path: task.path, err }, "copy failed");
    } finally {
      slot?.release();
      this.#o.onProgress?.(this.#progress);
    }
  }

  #stat(path: string): Promise<ObjectStats> {
    return this.#o.lakefs.statObject(this.#o.repository, this.#commitId, path, this.#signal);
  }

  /** Whether the mirrored key already carries the Content-Type and metadata it should. */
  async #sameMeta(path: string, stats: ObjectStats): Promise<boolean> {
    const head = await withRetry(
      () => this.#o.destination.head(path, this.#signal),
      this.#retryOptions(`head ${path}`),
    );
    return head !== undefined && sameMeta(head, mirrorMeta(stats));
  }

  async #deleteBatch(paths: string[]): Promise<void> {
    const signal = this.#signal;
    if (!this.#mayWrite()) return;
    let slot: { release(): void } | undefined;
    try {
      slot = await this.#o.destination.writeSlot?.(signal);
      const refused = await withRetry(
        () => {
          this.#o.fence?.();
          return this.#o.destination.deleteBatch(paths, signal);
        },
        this.#retryOptions(`delete ${paths.length} keys`),
      );
      const bad = new Set(refused.map((r) => r.path));
      for (const r of refused) this.#fail("delete", r.path, r.error);
      for (const p of paths) if (!bad.has(p)) this.#done(p);
      this.#progress.deleted += paths.length - refused.length;
    } catch (err) {
      if (signal?.aborted || !this.#mayWrite()) return;
      for (const p of paths) this.#fail("delete", p, err);
    } finally {
      slot?.release();
    }
    this.#o.onProgress?.(this.#progress);
  }

  #retryOptions(operation: string) {
    return {
      operation,
      signal: this.#signal,
      logger: this.#o.logger,
      ...(this.#o.retry ? { policy: this.#o.retry } : {}),
    };
  }
}

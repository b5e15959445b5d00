import pino from "pino";
import type { Logger } from "pino";
import type { Destination } from "../destination/destination.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import type { FailedPath } from "../ledger/ledger.ts";
import type { RetryPolicy } from "../retry.ts";
import { ObjectCopier } from "./copier.ts";
import type { CopyMode, RangedReads } from "./copier.ts";
import { coverTasks } from "./cover-tasks.ts";
import { withListedStats } from "./listed-stats.ts";
import { ExportRun } from "./export-run.ts";
import type { PartsDone, RunOutcome } from "./export-run.ts";
import type { LaneName } from "../ledger/lane-records.ts";
import { Reconciliation } from "./reconcile.ts";
import { ourKeys } from "./our-keys.ts";
import type { DeleteLimit, ListingEvidence } from "./reconcile.ts";
import { staleTasks } from "./stale-tasks.ts";
import { TableRewrite } from "./table-rewrite.ts";
import type { StaleCover } from "./stale-tasks.ts";
import { Rounds, isRoundPresetName, roundPresets } from "./rounds.ts";
import type { RoundFunction, RoundPresetName, RoundRule } from "./rounds.ts";
import type { ExportProgress, ExportTask } from "./task.ts";

export type { ExportProgress, ExportTask } from "./task.ts";

export interface ExportResult extends RunOutcome {
  repository: string;
  commitId: string;
  /** The commits diffed from; empty for a full listing. */
  fromCommitIds: string[];
  /** The commit diffed from when there was exactly one (the Spark exporter's prev_commit_id). */
  fromCommitId: string | undefined;
  /**
   * A reconciling export's evidence: what its merge saw once it had walked both listings to
   * their end. Undefined for other exports, and for a reconcile that stopped before the end.
   */
  listing?: ListingEvidence | undefined;
}

export interface ExporterOptions {
  lakefs: LakefsClient;
  repository: string;
  destination: Destination;
  /** Where warnings go (a pino logger); default: nowhere. */
  logger?: Logger;
  concurrency?: number;
  copyMode?: CopyMode;
  /**
   * Which round each path is written in: a preset ("spark", the default, "delta", "iceberg"),
   * rules as data, or a function from path to round (the Spark exporter's custom filter).
   * Round 0 is written while the listing streams; later rounds wait until then (see
   * deferredInMemory).
   */
  rounds?: RoundPresetName | RoundRule[] | RoundFunction;
  /** Deletes after every copy of every round. Default: the preset's choice, else false. */
  deletesLast?: boolean;
  /**
   * Rewrite the absolute paths of Apache Iceberg tables (see TableRewrite), so that the mirrored
   * tables refer to the mirror. Default: on with the `iceberg` preset, else off.
   */
  icebergRewrite?: boolean;
  /** Host names of lakeFS's S3 gateway, for Iceberg tables that store HTTP URLs. */
  gatewayHosts?: readonly string[];
  /**
   * Tasks of later rounds (and deletes, when they go last) held in memory while the listing
   * streams; beyond this many they spill, sorted, to files in `spillDirectory` and are merged
   * back when their round runs, so memory stays flat whatever their number. Default 10,000.
   */
  deferredInMemory?: number;
  /** Where spilled tasks go (a directory per export, removed when it ends); default: the OS's temporary directory. */
  spillDirectory?: string;
  retry?: Partial<RetryPolicy>;
  /** Locations server-side copies may read besides the repository's storage namespace. */
  serverSideSources?: readonly string[];
  /** Streamed reads of large objects by parallel ranges (see ObjectCopier). */
  rangedReads?: RangedReads;
  /** Streamed copies read by URLs lakeFS pre-signs, where it signs for the store. */
  presignedReads?: boolean;
  onProgress?: (progress: Readonly<ExportProgress>) => void;
  /** Called before every write and the status file; throws to stop the export (see ExportRun). */
  fence?: () => void;
}

export interface CoverOptions {
  /** Failed paths to read again at the commit. */
  retry?: readonly FailedPath[];
  /** Failed paths not tried this time: they stay failed unless the diffs write them. */
  carry?: readonly FailedPath[];
  /**
   * Nothing is written at the destination (not even the status file) before this promise
   * settles, and its rejection fails the export: the diffs are read meanwhile. The daemon
   * records its attempt this way.
   */
  writesAfter?: Promise<unknown>;
}

export interface ReconcileOptions {
  /** Delete keys the commit lacks even when no ledger marks the prefix as lakefs-mirror's. */
  dedicated?: boolean;
  /**
   * Whether every key under the prefix is lakefs-mirror's (a lane's ledger says so). Without
   * it, or with `dedicated`, keys the commit lacks are deleted only when a record names them.
   */
  owned?: boolean;
  /** Every key under the prefix is the caller's own: no max-deletes guard. */
  unguarded?: boolean;
  /** The most keys a listing may delete; more turns the export into a FAILURE. */
  maxDeletes?: DeleteLimit;
  /**
   * The commits a lane's ledger says may have been written here and its failed paths (its
   * base, unfinished attempts and failures). On a prefix that is not owned, the keys these and
   * the status files' commits name that the commit lacks are lakefs-mirror's leftovers and are
   * deleted; nothing else is.
   */
  ours?: { from: readonly string[]; failed: readonly FailedPath[] };
  /** The lane reconciling, for the message of an overlap with another lane. */
  lane?: LaneName;
  /** Called once nothing refuses the export, before its first task (see Reconciliation). */
  onChecked?: () => void;
  /** No write before this settles (see CoverOptions). */
  writesAfter?: Promise<unknown>;
}

/**
 * The export engine behind all three modes of lakeFS's Spark exporter and the daemon: a
 * stream of tasks (a full listing, two-dot diffs, or a listing merged with the destination's)
 * run by an ExportRun, which ends with a status file at the destination root. Never throws for
 * a failed object: failures end up in the FAILURE status file. Throws only when the export
 * could not run (a commit that does not exist, the status file unwritable, abort), and then
 * only once every request it started has settled.
 */
export class Exporter {
  readonly #o: ExporterOptions & { concurrency: number; copyMode: CopyMode; logger: Logger };
  readonly #rounds: Rounds;
  readonly #deletesLast: boolean;
  readonly #icebergRewrite: boolean;
  readonly #copier: ObjectCopier;

  constructor(options: ExporterOptions) {
    this.#o = {
      ...options,
      concurrency: options.concurrency ?? 16,
      copyMode: options.copyMode ?? "auto",
      logger: options.logger ?? pino({ level: "silent" }),
    };
    if (!Number.isInteger(this.#o.concurrency) || this.#o.concurrency < 1)
      throw new TypeError(`export concurrency must be >= 1, got ${this.#o.concurrency}`);
    const inMemory = options.deferredInMemory;
    if (inMemory !== undefined && (!Number.isInteger(inMemory) || inMemory < 1))
      throw new TypeError(`deferredInMemory must be an integer >= 1, got ${inMemory}`);
    const rounds = options.rounds ?? "spark";
    const preset =
      typeof rounds === "string"
        ? isRoundPresetName(rounds)
          ? roundPresets[rounds]
          : undefined
        : undefined;
    if (typeof rounds === "string" && !preset)
      throw new TypeError(`unknown round preset "${rounds}" (spark, delta, iceberg)`);
    this.#rounds = new Rounds(preset ? preset.rules : (rounds as RoundRule[] | RoundFunction));
    this.#deletesLast = options.deletesLast ?? preset?.deletesLast ?? false;
    this.#icebergRewrite = options.icebergRewrite ?? rounds === "iceberg";
    this.#copier = new ObjectCopier({
      lakefs: options.lakefs,
      repository: options.repository,
      dest: options.destination,
      mode: this.#o.copyMode,
      logger: this.#o.logger,
      retry: options.retry,
      serverSideSources: options.serverSideSources,
      fence: options.fence,
      refuseAbsoluteDelta: rounds === "delta",
      rangedReads: options.rangedReads,
      presignedReads: options.presignedReads,
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
    return this.#run(commit.id, [], this.listingTasks(commit.id, signal), {}, signal, () =>
      this.#listedPaths(commit.id, signal),
    );
  }

  /** The diff from `prevCommitId` to the branch HEAD. */
  async exportFrom(
    branch: string,
    prevCommitId: string,
    signal?: AbortSignal,
  ): Promise<ExportResult> {
    // The branch's HEAD is a full commit ID already; only the previous one needs resolving,
    // and both questions go to lakeFS at once.
    const [ref, prev] = await Promise.all([
      this.#o.lakefs.getBranch(this.#o.repository, branch, signal),
      this.#o.lakefs.getCommit(this.#o.repository, prevCommitId, signal),
    ]);
    return this.exportCover([prev.id], ref.commit_id, {}, signal);
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
    const { lakefs, repository } = this.#o;
    // Physical addresses for the copies come from the commit's listing, a page per request,
    // wherever the diff is dense enough for that to beat a stat per object.
    const tasks = withListedStats(
      this.coverTasks(fromCommitIds, commitId, options.retry ?? [], signal),
      {
        list: (after, amount) =>
          lakefs.listObjectsAfter(repository, commitId, after, amount, signal),
      },
    );
    return this.#run(commitId, fromCommitIds, tasks, options, signal, () =>
      copiedPaths(this.coverTasks(fromCommitIds, commitId, options.retry ?? [], signal)),
    );
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
    const reconciliation = this.#reconciliation(commit.id, options, signal);
    const cover = options.writesAfter ? { writesAfter: options.writesAfter } : {};
    const result = await this.#run(commit.id, [], reconciliation.tasks(), cover, signal, () =>
      this.#listedPaths(commit.id, signal),
    );
    return { ...result, listing: reconciliation.listing };
  }

  /**
   * Every object of a commit, and deletes of the keys `stale` says may be there although the
   * commit lacks them (see staleTasks): a whole export whose SUCCESS is true of every key a
   * lane's ledger describes.
   */
  async exportWhole(
    commitId: string,
    stale: StaleCover,
    signal?: AbortSignal,
  ): Promise<ExportResult> {
    const commit = await this.#o.lakefs.getCommit(this.#o.repository, commitId, signal);
    return this.#run(commit.id, [], this.wholeTasks(commit.id, stale, signal), {}, signal, () =>
      this.#listedPaths(commit.id, signal),
    );
  }

  wholeTasks(commitId: string, stale: StaleCover, signal?: AbortSignal) {
    return staleTasks(
      this.#o.lakefs.listObjects(this.#o.repository, commitId, "", signal),
      this.coverTasks([...stale.from], commitId, stale.failed, signal),
    );
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
    return this.#reconciliation(commitId, options, signal).tasks();
  }

  #reconciliation(commitId: string, options: ReconcileOptions, signal?: AbortSignal) {
    const { lakefs, repository, destination: dest } = this.#o;
    return new Reconciliation({
      source: () => lakefs.listObjects(repository, commitId, "", signal),
      dest: () => dest.list("", signal),
      contentIdIsChecksum: dest.capabilities.contentIdIsChecksum,
      readText: (path) => dest.getText(path, signal),
      owned: options.dedicated === true || options.owned === true,
      unguarded: options.unguarded,
      maxDeletes: options.maxDeletes,
      ours: () =>
        ourKeys(
          lakefs,
          repository,
          dest,
          commitId,
          options.ours ?? { from: [], failed: [] },
          signal,
        ),
      lane: options.lane,
      onChecked: options.onChecked,
      where: dest.uri,
    });
  }

  async #run(
    commitId: string,
    fromCommitIds: string[],
    tasks: AsyncIterable<ExportTask>,
    cover: CoverOptions,
    signal: AbortSignal | undefined,
    paths: (() => AsyncIterable<string>) | undefined,
    prior?: PartsDone,
  ): Promise<ExportResult> {
    // Where server-side copies may read is asked of lakeFS while the first page of tasks loads.
    this.#copier.prepare(signal);
    // Iceberg tables are planned from the paths the export copies before it writes anything.
    const rewrite =
      this.#icebergRewrite && paths
        ? await TableRewrite.plan(
            {
              lakefs: this.#o.lakefs,
              repository: this.#o.repository,
              commitId,
              destination: this.#o.destination,
              gatewayHosts: this.#o.gatewayHosts,
              signal,
            },
            paths(),
          )
        : undefined;
    const outcome = await new ExportRun(
      {
        ...this.#runOptions({}),
        rounds: rewrite ? rewrite.rounds(this.#rounds) : this.#rounds,
        writesAfter: cover.writesAfter,
        rewrite,
        prior,
      },
      commitId,
      cover.carry ?? [],
      signal,
    ).run(tasks);
    return {
      ...outcome,
      repository: this.#o.repository,
      commitId,
      fromCommitIds,
      fromCommitId: fromCommitIds.length === 1 ? fromCommitIds[0] : undefined,
    };
  }

  async *#listedPaths(commitId: string, signal?: AbortSignal): AsyncGenerator<string> {
    for await (const page of this.#o.lakefs.listObjects(this.#o.repository, commitId, "", signal))
      for (const stats of page) if (stats.path_type === "object") yield stats.path;
  }

  /** Which round a path is exported in. */
  roundOf(path: string): number {
    return this.#rounds.of(path);
  }

  /** Whether exports can be split into work items: not while Iceberg tables are rewritten. */
  get splittable(): boolean {
    return !this.#icebergRewrite;
  }

  /** Whether a part of a split export leaves `task` to the export's owner (see runPart). */
  defers(task: ExportTask, deferDeletes: boolean): boolean {
    if (task.op === "delete")
      return deferDeletes || this.#deletesLast || this.#rounds.of(task.path) !== 0;
    return this.#rounds.of(task.path) !== 0;
  }

  /**
   * One part of a split export of `commitId`: writes round 0 of `tasks` with this exporter's
   * copier, fence and rules, and hands the rest (see `defers`) to `defer`. No status file.
   */
  runPart(
    commitId: string,
    tasks: AsyncIterable<ExportTask>,
    part: { defer: (task: ExportTask) => void; deferDeletes: boolean },
    signal?: AbortSignal,
  ): Promise<PartsDone> {
    this.#copier.prepare(signal);
    return new ExportRun(this.#runOptions({ part }), commitId, [], signal).runPart(tasks);
  }

  /**
   * The last run of a split export, by its owner: the tasks the parts left (later rounds,
   * deferred deletes), then the status file, which counts what the parts did (`prior`).
   */
  finishParts(
    commitId: string,
    fromCommitIds: string[],
    tasks: AsyncIterable<ExportTask>,
    prior: PartsDone,
    signal?: AbortSignal,
  ): Promise<ExportResult> {
    return this.#run(commitId, fromCommitIds, tasks, {}, signal, undefined, prior);
  }

  #runOptions(extra: { part?: ConstructorParameters<typeof ExportRun>[0]["part"] }) {
    return {
      lakefs: this.#o.lakefs,
      repository: this.#o.repository,
      destination: this.#o.destination,
      copier: this.#copier,
      rounds: this.#rounds,
      deletesLast: this.#deletesLast,
      deferredInMemory: this.#o.deferredInMemory,
      spillDirectory: this.#o.spillDirectory,
      concurrency: this.#o.concurrency,
      logger: this.#o.logger,
      retry: this.#o.retry,
      onProgress: this.#o.onProgress,
      fence: this.#o.fence,
      ...extra,
    };
  }
}

/** The paths a task stream writes (copies, and syncs that may copy). */
async function* copiedPaths(tasks: AsyncIterable<ExportTask>): AsyncGenerator<string> {
  for await (const t of tasks) if (t.op !== "delete") yield t.path;
}

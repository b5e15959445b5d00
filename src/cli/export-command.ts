import { parseArgs } from "node:util";
import { loadConfig } from "../config.ts";
import { parseLocation } from "../destination/schemes.ts";
import { UsageError } from "../errors.ts";
import type { ExportResult, ExportTask, ReconcileOptions } from "../export/exporter.ts";
import { parseDeleteLimit } from "../export/reconcile.ts";
import { clearAttempt, markAttempt } from "../export/attempt-marks.ts";
import { withRetry } from "../retry.ts";
import { Exporter } from "../export/exporter.ts";
import type { RoundRule } from "../export/rounds.ts";
import { createLogger } from "../logger.ts";
import { createClients, exporterSettings } from "../clients.ts";
import type { Clients } from "../clients.ts";
import type { CliIo } from "./main.ts";
import { ourRecords } from "../ledger/ledger.ts";
import type { Ledger } from "../ledger/ledger.ts";
import { CliLane, wholeCover } from "./cli-lane.ts";
import type { CliRun } from "./cli-lane.ts";
import { TerminalProgress } from "./progress.ts";

const options = {
  branch: { type: "string" },
  commit_id: { type: "string" },
  "commit-id": { type: "string" },
  prev_commit_id: { type: "string" },
  "prev-commit-id": { type: "string" },
  "dry-run": { type: "boolean" },
  "copy-mode": { type: "string" },
  concurrency: { type: "string" },
  config: { type: "string" },
  round: { type: "string", multiple: true },
  rounds: { type: "string" },
  "deletes-last": { type: "boolean" },
  "iceberg-rewrite": { type: "boolean" },
  "no-iceberg-rewrite": { type: "boolean" },
  "multipart-threshold": { type: "string" },
  "part-size": { type: "string" },
  "parallel-reads": { type: "string" },
  "presigned-reads": { type: "boolean" },
  "copy-multipart-threshold": { type: "string" },
  "copy-part-size": { type: "string" },
  sync: { type: "boolean" },
  "max-deletes": { type: "string" },
  dedicated: { type: "boolean" },
} as const;

function int(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a whole number, got "${v}"`);
  return Number(v);
}

function rounds(specs: string[] | undefined): RoundRule[] | undefined {
  return specs?.map((s) => {
    const at = s.lastIndexOf("=");
    const round = Number(s.slice(at + 1));
    if (at <= 0 || !Number.isInteger(round))
      throw new UsageError(`--round takes <regex>=<round>, got "${s}"`);
    return { pattern: s.slice(0, at), round };
  });
}

function icebergRewriteFlag(v: {
  "iceberg-rewrite"?: boolean | undefined;
  "no-iceberg-rewrite"?: boolean | undefined;
}): boolean | undefined {
  if (v["iceberg-rewrite"] && v["no-iceberg-rewrite"])
    throw new UsageError("give either --iceberg-rewrite or --no-iceberg-rewrite, not both");
  if (v["iceberg-rewrite"]) return true;
  if (v["no-iceberg-rewrite"]) return false;
  return undefined;
}

/** The Spark exporter's argument rules: exactly one of branch/commit; a commit excludes prev. */
function exportMode(v: Mode) {
  if (v.branch && v.commit) throw new UsageError("give either --branch or --commit_id, not both");
  if (!v.branch && !v.commit) throw new UsageError("one of --branch or --commit_id is required");
  if (v.commit && v.prev)
    throw new UsageError("--prev_commit_id goes with --branch, not with --commit_id");
  if (v.sync && v.prev)
    throw new UsageError("--sync makes a whole export; it does not go with --prev_commit_id");
}

export async function exportCommand(argv: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 2)
    throw new UsageError("export takes <repository> <s3://bucket/prefix/>");
  const [repository = "", uri = ""] = positionals;
  const branch = values.branch;
  const commit = values.commit_id ?? values["commit-id"];
  const prev = values.prev_commit_id ?? values["prev-commit-id"];
  const sync = values.sync === true;
  if (!sync && (values["max-deletes"] !== undefined || values.dedicated))
    throw new UsageError("--max-deletes and --dedicated only go with --sync");
  const mode: Mode = { branch, commit, prev, sync };
  exportMode(mode);
  // Checked before anything else runs: a malformed URI is a usage error.
  parseLocation(uri);

  const config = loadConfig({
    env: io.env,
    file: values.config,
    overrides: {
      "export.copyMode": values["copy-mode"],
      "export.concurrency": int("concurrency", values.concurrency),
      "export.rounds": values.rounds ?? rounds(values.round),
      "export.deletesLast": values["deletes-last"] ? true : undefined,
      "export.icebergRewrite": icebergRewriteFlag(values),
      "export.multipartThresholdBytes": int("multipart-threshold", values["multipart-threshold"]),
      "export.multipartPartSizeBytes": int("part-size", values["part-size"]),
      "export.parallelReads": int("parallel-reads", values["parallel-reads"]),
      "export.presignedReads": values["presigned-reads"] ? true : undefined,
      "export.copyMultipartThresholdBytes": int(
        "copy-multipart-threshold",
        values["copy-multipart-threshold"],
      ),
      "export.copyPartSizeBytes": int("copy-part-size", values["copy-part-size"]),
      "export.maxDeletes": values["max-deletes"],
    },
  });
  const dedicated = values.dedicated === true;
  const maxDeletes = parseDeleteLimit(config.export.maxDeletes);
  const logger = createLogger(config.log.level);
  const clients = createClients(config, logger);
  const tty = io.stderr.isTTY === true;
  const progress = tty ? new TerminalProgress(io.stderr) : undefined;
  const signal = io.signal;
  const dest = clients.destination(uri);
  const laneOptions = {
    dest,
    lakefs: clients.lakefs,
    repository,
    config,
    logger: logger.child({ component: "lane" }),
    signal,
  };
  try {
    // A prefix a daemon's lane mirrors: its ledger is kept true, or nothing is written.
    const lane = values["dry-run"] ? undefined : await CliLane.open(laneOptions);
    const ledger = values["dry-run"] ? await CliLane.read(laneOptions) : lane?.ledger;
    const exporter = new Exporter({
      lakefs: clients.lakefs,
      repository,
      destination: dest,
      logger: logger.child({ component: "exporter" }),
      ...exporterSettings(config),
      ...(progress ? { onProgress: (p) => progress.update(p) } : {}),
      ...(lane ? { fence: lane.fence } : {}),
    });
    // With a lane's ledger, --sync follows the lane's own rules for deleting by listing;
    // without one, it deletes only keys that the status files' commits name (or, --dedicated,
    // every key the commit lacks).
    const reconcile: ReconcileOptions = {
      dedicated,
      maxDeletes,
      ...(ledger ? { owned: ledger.prefix !== "foreign", ours: ourRecords(ledger) } : {}),
    };
    const planned = await planTasks(exporter, clients.lakefs, repository, mode, reconcile, ledger);
    if (values["dry-run"]) {
      const plan = await dryRun(exporter, mode, planned);
      io.stdout.write(
        JSON.stringify({ dryRun: true, repository, destination: dest.uri, ...plan }, null, 2) +
          "\n",
      );
      return 0;
    }
    if (progress) {
      progress.start();
      // Only for the terminal's ETA: count the same listing or diff alongside the export.
      countTasks(exporter, clients.lakefs, repository, mode, reconcile, ledger, signal)
        .then((n) => progress.setTotal(n))
        .catch(() => undefined);
    }
    const { commitId, run } = planned;
    // Into a prefix no lane's ledger describes: the commit is recorded before the first write
    // and the record removed once the status file is written (see attempt-marks.ts).
    const unrecorded = async (
      id: string,
      fn: (held: AbortSignal | undefined) => Promise<ExportResult>,
    ): Promise<ExportResult> => {
      const retry = { signal, logger, policy: config.retry };
      await withRetry(() => markAttempt(dest, id, signal), {
        ...retry,
        operation: "record the export's commit",
      });
      const done = await fn(signal);
      await withRetry(() => clearAttempt(dest, id, signal), {
        ...retry,
        operation: "remove the export's record",
      });
      return done;
    };
    const go = (held: AbortSignal | undefined): Promise<ExportResult> => {
      switch (run.kind) {
        case "sync":
          return exporter.exportReconciling(commitId, reconcile, held);
        case "diff":
          return exporter.exportCover([run.from], commitId, {}, held);
        case "whole":
          return run.stale
            ? exporter.exportWhole(commitId, run.stale, held)
            : exporter.exportAllFromCommit(commitId, held);
      }
    };
    const result = lane ? await lane.run(commitId, run, go) : await unrecorded(commitId, go);
    progress?.stop();
    const { failureLines, unfinished: _unfinished, listing: _listing, ...summary } = result;
    const line = {
      ...summary,
      destination: dest.uri,
      failureSample: failureLines.slice(0, 5),
    };
    if (result.status === "SUCCESS") logger.info(line, "export finished");
    else logger.error(line, "export finished with failures");
    return result.status === "SUCCESS" ? 0 : 1;
  } finally {
    progress?.stop();
    await clients.close();
  }
}

type Mode = {
  branch?: string | undefined;
  commit?: string | undefined;
  prev?: string | undefined;
  sync?: boolean;
};

/**
 * The commit a mode exports, how it runs as far as a lane's ledger cares, and its task stream,
 * as the exporter would resolve them. With a lane's ledger, a whole export also deletes what the
 * ledger says may be stale.
 */
async function planTasks(
  exporter: Exporter,
  lakefs: Clients["lakefs"],
  repository: string,
  mode: Mode,
  reconcile: ReconcileOptions,
  ledger: Ledger | undefined,
  signal?: AbortSignal,
): Promise<{ commitId: string; run: CliRun; tasks: () => AsyncGenerator<ExportTask> }> {
  const commitId = mode.commit
    ? (await lakefs.getCommit(repository, mode.commit, signal)).id
    : (await lakefs.getBranch(repository, mode.branch ?? "", signal)).commit_id;
  if (mode.sync) {
    return {
      commitId,
      run: { kind: "sync" },
      tasks: () => exporter.reconcileTasks(commitId, reconcile, signal),
    };
  }
  if (mode.prev) {
    const from = (await lakefs.getCommit(repository, mode.prev, signal)).id;
    return {
      commitId,
      run: { kind: "diff", from },
      tasks: () => exporter.coverTasks([from], commitId, [], signal),
    };
  }
  const stale = ledger && (await wholeCover(lakefs, repository, ledger, commitId, signal));
  return {
    commitId,
    run: { kind: "whole", stale: stale || undefined },
    tasks: () =>
      stale
        ? exporter.wholeTasks(commitId, stale, signal)
        : exporter.listingTasks(commitId, signal),
  };
}

async function countTasks(
  exporter: Exporter,
  lakefs: Clients["lakefs"],
  repository: string,
  mode: Mode,
  reconcile: ReconcileOptions,
  ledger: Ledger | undefined,
  signal?: AbortSignal,
) {
  let n = 0;
  const { tasks } = await planTasks(exporter, lakefs, repository, mode, reconcile, ledger, signal);
  for await (const t of tasks()) if (t.op !== "refuse") n++;
  return n;
}

function actionOf(t: ExportTask): string {
  switch (t.op) {
    case "copy":
      return t.change === "listed" ? "copy" : `copy (${t.change})`;
    case "check":
      return "copy if Content-Type or metadata differ";
    case "keep":
      return "keep (not in the commit; the prefix is not lakefs-mirror's)";
    case "delete":
    case "sync":
    case "refuse":
      return t.op;
  }
}

async function dryRun(
  exporter: Exporter,
  mode: Mode,
  planned: Awaited<ReturnType<typeof planTasks>>,
) {
  const counts: Record<string, number> = {};
  const rounds: Record<string, number> = {};
  const sample: Record<string, string[]> = {};
  const refusals: string[] = [];
  for await (const t of planned.tasks()) {
    if (t.op === "refuse") {
      refusals.push(t.reason);
      continue;
    }
    const action = actionOf(t);
    counts[action] = (counts[action] ?? 0) + 1;
    const r = String(exporter.roundOf(t.path));
    rounds[r] = (rounds[r] ?? 0) + 1;
    const s = (sample[action] ??= []);
    // Deletes by listing are what a user checks before running --sync: show them all.
    if (s.length < 10 || (mode.sync && t.op === "delete")) s.push(t.path);
  }
  return {
    commitId: planned.commitId,
    fromCommitId: mode.prev,
    sync: mode.sync === true,
    actions: counts,
    objectsPerRound: rounds,
    sample,
    ...(refusals.length ? { refusals } : {}),
  };
}

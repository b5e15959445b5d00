import { parseArgs } from "node:util";
import { loadConfig } from "../config.ts";
import { UsageError } from "../errors.ts";
import type { ExportResult, ExportTask, ReconcileOptions } from "../export/exporter.ts";
import { parseDeleteLimit } from "../export/reconcile.ts";
import { Exporter } from "../export/exporter.ts";
import type { RoundRule } from "../export/rounds.ts";
import { createLogger } from "../logger.ts";
import { formatS3Uri, parseS3Uri } from "../s3/uri.ts";
import { createClients, exporterSettings } from "../clients.ts";
import type { Clients } from "../clients.ts";
import type { CliIo } from "./main.ts";
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
  "multipart-threshold": { type: "string" },
  "part-size": { type: "string" },
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
  const location = parseS3Uri(uri);

  const config = loadConfig({
    env: io.env,
    file: values.config,
    overrides: {
      "export.copyMode": values["copy-mode"],
      "export.concurrency": int("concurrency", values.concurrency),
      "export.rounds": values.rounds ?? rounds(values.round),
      "export.deletesLast": values["deletes-last"] ? true : undefined,
      "export.multipartThresholdBytes": int("multipart-threshold", values["multipart-threshold"]),
      "export.multipartPartSizeBytes": int("part-size", values["part-size"]),
      "export.copyMultipartThresholdBytes": int(
        "copy-multipart-threshold",
        values["copy-multipart-threshold"],
      ),
      "export.copyPartSizeBytes": int("copy-part-size", values["copy-part-size"]),
      "export.maxDeletes": values["max-deletes"],
    },
  });
  const reconcile = {
    dedicated: values.dedicated === true,
    maxDeletes: parseDeleteLimit(config.export.maxDeletes),
  };
  const logger = createLogger(config.log.level);
  const clients = createClients(config, logger);
  const tty = io.stderr.isTTY === true;
  const progress = tty ? new TerminalProgress(io.stderr) : undefined;
  const exporter = new Exporter({
    lakefs: clients.lakefs,
    repository,
    destination: clients.destination(location),
    logger: logger.child({ component: "exporter" }),
    ...exporterSettings(config),
    ...(progress ? { onProgress: (p) => progress.update(p) } : {}),
  });
  const signal = io.signal;
  try {
    if (values["dry-run"]) {
      const plan = await dryRun(exporter, clients.lakefs, repository, mode, reconcile, signal);
      io.stdout.write(
        JSON.stringify(
          { dryRun: true, repository, destination: formatS3Uri(location), ...plan },
          null,
          2,
        ) + "\n",
      );
      return 0;
    }
    if (progress) {
      progress.start();
      // Only for the terminal's ETA: count the same listing or diff alongside the export.
      countTasks(exporter, clients.lakefs, repository, mode, reconcile, signal)
        .then((n) => progress.setTotal(n))
        .catch(() => undefined);
    }
    let result: ExportResult;
    if (sync) {
      const target =
        commit ?? (await clients.lakefs.getBranch(repository, branch ?? "", signal)).commit_id;
      result = await exporter.exportReconciling(target, reconcile, signal);
    } else if (commit) result = await exporter.exportAllFromCommit(commit, signal);
    else if (prev) result = await exporter.exportFrom(branch ?? "", prev, signal);
    else result = await exporter.exportAllFromBranch(branch ?? "", signal);
    progress?.stop();
    const { failureLines, unfinished: _unfinished, ...summary } = result;
    const line = {
      ...summary,
      destination: formatS3Uri(location),
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

/** The commit a mode exports and the task stream it runs, as the exporter would resolve them. */
async function planTasks(
  exporter: Exporter,
  lakefs: Clients["lakefs"],
  repository: string,
  mode: Mode,
  reconcile: ReconcileOptions,
  signal?: AbortSignal,
) {
  const commitId = mode.commit
    ? (await lakefs.getCommit(repository, mode.commit, signal)).id
    : (await lakefs.getBranch(repository, mode.branch ?? "", signal)).commit_id;
  if (mode.sync) return { commitId, tasks: exporter.reconcileTasks(commitId, reconcile, signal) };
  if (!mode.prev) return { commitId, tasks: exporter.listingTasks(commitId, signal) };
  const prevId = (await lakefs.getCommit(repository, mode.prev, signal)).id;
  return { commitId, tasks: exporter.coverTasks([prevId], commitId, [], signal) };
}

async function countTasks(
  exporter: Exporter,
  lakefs: Clients["lakefs"],
  repository: string,
  mode: Mode,
  reconcile: ReconcileOptions,
  signal?: AbortSignal,
) {
  let n = 0;
  const { tasks } = await planTasks(exporter, lakefs, repository, mode, reconcile, signal);
  for await (const t of tasks) if (t.op !== "refuse") n++;
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
  lakefs: Clients["lakefs"],
  repository: string,
  mode: Mode,
  reconcile: ReconcileOptions,
  signal?: AbortSignal,
) {
  const { commitId, tasks } = await planTasks(
    exporter,
    lakefs,
    repository,
    mode,
    reconcile,
    signal,
  );
  const counts: Record<string, number> = {};
  const rounds: Record<string, number> = {};
  const sample: Record<string, string[]> = {};
  const refusals: string[] = [];
  for await (const t of tasks) {
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
    commitId,
    fromCommitId: mode.prev,
    sync: mode.sync === true,
    actions: counts,
    objectsPerRound: rounds,
    sample,
    ...(refusals.length ? { refusals } : {}),
  };
}

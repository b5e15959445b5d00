import { parseArgs } from "node:util";
import { loadConfig } from "../config.ts";
import { UsageError } from "../errors.ts";
import type { ExportResult } from "../export/exporter.ts";
import { Exporter } from "../export/exporter.ts";
import type { RoundRule } from "../export/rounds.ts";
import { createLogger } from "../logger.ts";
import { formatS3Uri, parseS3Uri } from "../s3/uri.ts";
import { createClients } from "./context.ts";
import type { Clients } from "./context.ts";
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
  "multipart-threshold": { type: "string" },
  "part-size": { type: "string" },
  "copy-multipart-threshold": { type: "string" },
  "copy-part-size": { type: "string" },
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
function exportMode(v: { branch?: string; commit?: string; prev?: string }) {
  if (v.branch && v.commit) throw new UsageError("give either --branch or --commit_id, not both");
  if (!v.branch && !v.commit) throw new UsageError("one of --branch or --commit_id is required");
  if (v.commit && v.prev)
    throw new UsageError("--prev_commit_id goes with --branch, not with --commit_id");
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
  exportMode({ branch, commit, prev });
  const location = parseS3Uri(uri);

  const config = loadConfig({
    env: io.env,
    file: values.config,
    overrides: {
      "export.copyMode": values["copy-mode"],
      "export.concurrency": int("concurrency", values.concurrency),
      "export.rounds": rounds(values.round),
      "export.multipartThresholdBytes": int("multipart-threshold", values["multipart-threshold"]),
      "export.multipartPartSizeBytes": int("part-size", values["part-size"]),
      "export.copyMultipartThresholdBytes": int(
        "copy-multipart-threshold",
        values["copy-multipart-threshold"],
      ),
      "export.copyPartSizeBytes": int("copy-part-size", values["copy-part-size"]),
    },
  });
  const logger = createLogger(config.log.level);
  const clients = createClients(config, logger);
  const tty = io.stderr.isTTY === true;
  const progress = tty ? new TerminalProgress(io.stderr) : undefined;
  const exporter = new Exporter({
    lakefs: clients.lakefs,
    repository,
    destination: clients.destination(location),
    logger: logger.child({ component: "exporter" }),
    concurrency: config.export.concurrency,
    copyMode: config.export.copyMode,
    rounds: [...config.export.rounds],
    ...(progress ? { onProgress: (p) => progress.update(p) } : {}),
  });
  const signal = io.signal;
  try {
    if (values["dry-run"]) {
      const plan = await dryRun(
        exporter,
        clients.lakefs,
        repository,
        { branch, commit, prev },
        signal,
      );
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
      countTasks(exporter, clients.lakefs, repository, { branch, commit, prev }, signal)
        .then((n) => progress.setTotal(n))
        .catch(() => undefined);
    }
    let result: ExportResult;
    if (commit) result = await exporter.exportAllFromCommit(commit, signal);
    else if (prev) result = await exporter.exportFrom(branch ?? "", prev, signal);
    else result = await exporter.exportAllFromBranch(branch ?? "", signal);
    progress?.stop();
    const { failureLines, ...summary } = result;
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

type Mode = { branch?: string | undefined; commit?: string | undefined; prev?: string | undefined };

/** The commit a mode exports and the task stream it runs, as the exporter would resolve them. */
async function planTasks(
  exporter: Exporter,
  lakefs: Clients["lakefs"],
  repository: string,
  mode: Mode,
  signal?: AbortSignal,
) {
  if (mode.commit) {
    const commitId = (await lakefs.getCommit(repository, mode.commit, signal)).id;
    return { commitId, tasks: exporter.listingTasks(commitId, signal) };
  }
  const commitId = (await lakefs.getBranch(repository, mode.branch ?? "", signal)).commit_id;
  if (!mode.prev) return { commitId, tasks: exporter.listingTasks(commitId, signal) };
  const prevId = (await lakefs.getCommit(repository, mode.prev, signal)).id;
  return { commitId, tasks: exporter.diffTasks(prevId, commitId, signal) };
}

async function countTasks(
  exporter: Exporter,
  lakefs: Clients["lakefs"],
  repository: string,
  mode: Mode,
  signal?: AbortSignal,
) {
  let n = 0;
  for await (const _ of (await planTasks(exporter, lakefs, repository, mode, signal)).tasks) n++;
  return n;
}

async function dryRun(
  exporter: Exporter,
  lakefs: Clients["lakefs"],
  repository: string,
  mode: Mode,
  signal?: AbortSignal,
) {
  const { commitId, tasks } = await planTasks(exporter, lakefs, repository, mode, signal);
  const counts: Record<string, number> = {};
  const rounds: Record<string, number> = {};
  const sample: Record<string, string[]> = {};
  for await (const t of tasks) {
    const action =
      t.op === "delete" ? "delete" : t.change === "listed" ? "copy" : `copy (${t.change})`;
    counts[action] = (counts[action] ?? 0) + 1;
    const r = String(exporter.roundOf(t.path));
    rounds[r] = (rounds[r] ?? 0) + 1;
    const s = (sample[action] ??= []);
    if (s.length < 10) s.push(t.path);
  }
  return { commitId, fromCommitId: mode.prev, actions: counts, objectsPerRound: rounds, sample };
}

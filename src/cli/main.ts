import type { Writable } from "node:stream";
import { INTERNAL_ERROR_CODE, MirrorError, errorMessage } from "../errors.ts";

export interface CliIo {
  env: NodeJS.ProcessEnv;
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable & { isTTY?: boolean };
  /** Aborted on SIGINT/SIGTERM by the entry file. */
  signal?: AbortSignal;
}

export const USAGE = `Usage:
  lakefs-mirror export <repository> <s3://bucket/prefix/> --branch=<branch> [--prev_commit_id=<commit>]
  lakefs-mirror export <repository> <s3://bucket/prefix/> --commit_id=<commit>
      [--sync [--max-deletes=N|P%] [--dedicated]] (whole exports: also delete what the commit lacks)
      [--dry-run] [--copy-mode=auto|server-side|stream] [--concurrency=N] [--config=FILE]
      [--rounds=spark|delta|iceberg | --round=<regex>=<n> ...] [--deletes-last]
      [--iceberg-rewrite | --no-iceberg-rewrite] (default: on with --rounds=iceberg)
      [--multipart-threshold=BYTES] [--part-size=BYTES]
      [--copy-multipart-threshold=BYTES] [--copy-part-size=BYTES]
      [--parallel-reads=N] [--presigned-reads] (streamed reads: ranges at once; via URLs lakeFS signs)
  lakefs-mirror run [--config=FILE] [--forward-webhooks-to-kafka] [--print-config] [--sidecar]
  lakefs-mirror verify <repository> <commit-or-branch> <s3://bucket/prefix/> [--no-metadata] [--config=FILE]
      [--rounds=iceberg | --iceberg-rewrite | --no-iceberg-rewrite] (compare Iceberg files with their rewrite)
  lakefs-mirror status [--url=http://127.0.0.1:8081] [--max-lag=SECONDS] [--json] [--token=TOKEN]

lakeFS: LAKEFS_ENDPOINT, LAKEFS_ACCESS_KEY_ID, LAKEFS_SECRET_ACCESS_KEY.
S3: the AWS SDK's own variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, …).
Exit status: 0 when the export wrote a SUCCESS status file (verify: no difference; status: every
lane current), 1 otherwise, 2 on bad usage.
`;

/** Runs one CLI command and returns its exit code. Never calls process.exit. */
export async function main(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "export":
        // Each command loads only what it uses: a one-off export starts without the daemon's Kafka,
        // LevelDB and Prometheus code.
        return await (await import("./export-command.ts")).exportCommand(rest, io);
      case "verify":
        return await (await import("./verify-command.ts")).verifyCommand(rest, io);
      case "run":
        return await (await import("./run-command.ts")).runCommand(rest, io);
      case "status":
        return await (await import("./status-command.ts")).statusCommand(rest, io);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        io.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        io.stderr.write(`lakefs-mirror: unknown command "${command}"\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    const code = err instanceof MirrorError ? err.code : INTERNAL_ERROR_CODE;
    io.stderr.write(`lakefs-mirror ${command}: ${errorMessage(err)} [${code}]\n`);
    if (code === "LM_USAGE") io.stderr.write(`\n${USAGE}`);
    if (!(err instanceof MirrorError) && err instanceof Error && err.stack)
      io.stderr.write(`${err.stack}\n`);
    return code === "LM_USAGE" || code === "LM_CONFIG" ? 2 : 1;
  }
}

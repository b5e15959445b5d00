import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Stack } from "./stack.ts";

const entry = fileURLToPath(new URL("../../src/cli/bin.ts", import.meta.url));

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `lakefs-mirror <args>` as its own process, pointed at the stack. */
export function runCli(
  stack: Stack,
  args: string[],
  env: Record<string, string> = {},
): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", entry, ...args],
      { env: { ...process.env, ...stack.env, LOG_LEVEL: "info", ...env } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** The CLI's last JSON log line: the export's summary. */
export function cliSummary(run: CliRun): Record<string, unknown> {
  const lines = run.stdout.trim().split("\n").filter(Boolean);
  return JSON.parse(lines.at(-1) ?? "{}") as Record<string, unknown>;
}

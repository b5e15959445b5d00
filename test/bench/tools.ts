// The contenders of npm run bench as processes: how each is run and measured, and the
// environment that points rclone and mc at the stack.
import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { StackEnv } from "../helpers/stack.ts";

const measureScript = fileURLToPath(new URL("measure.py", import.meta.url));
const installScript = fileURLToPath(new URL("../stack/install", import.meta.url));
const upScript = fileURLToPath(new URL("../stack/up", import.meta.url));

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
export const cliEntry = `${repoRoot}dist/cli/bin.js`;

/** The node flags of the bin's own `#!` line, which `node dist/cli/bin.js` would skip. */
export const binNodeFlags = readFileSync(new URL("../../src/cli/bin.ts", import.meta.url), "utf8")
  .split("\n")[0]!
  .split(" ")
  .filter((word) => word.startsWith("--"));

export interface Usage {
  seconds: number;
  /** User + system CPU seconds of the process and its children. */
  cpuSeconds: number;
  peakRssMb: number;
}

/** Runs a command to its end through measure.py; rejects with its output when it fails. */
export function measure(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Usage> {
  return new Promise((resolve, reject) => {
    const child = spawn("python3", [measureScript, cmd, ...args], {
      env,
      stdio: ["ignore", "pipe", "pipe", "pipe"],
    });
    let out = "";
    let report = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    (child.stdio[3] as NodeJS.ReadableStream).on("data", (d: Buffer) => (report += d.toString()));
    child.on("error", reject);
    child.on("close", () => {
      let usage: (Usage & { code: number }) | undefined;
      try {
        usage = JSON.parse(report) as Usage & { code: number };
      } catch {
        // No report: the wrapper itself failed; its output says why.
      }
      if (usage?.code !== 0)
        reject(new Error(`${cmd} ${args.join(" ")} exited ${usage?.code}:\n${out.slice(-3000)}`));
      else
        resolve({
          seconds: usage.seconds,
          cpuSeconds: usage.cpuSeconds,
          peakRssMb: usage.peakRssMb,
        });
    });
  });
}

/** `lakefs-mirror export ARGS --concurrency=32`, run as its bin line runs it, measured. */
export function measureExport(args: string[], env: NodeJS.ProcessEnv): Promise<Usage> {
  return measure(
    process.execPath,
    [...binNodeFlags, cliEntry, "export", ...args, "--concurrency=32"],
    env,
  );
}

/**
 * The rclone the bench runs: the one test/stack/install builds from its Go module (the stack's
 * `RCLONE`), built first when missing (several minutes, once per machine). Only when that build
 * fails does the bench run whichever `rclone` is on PATH, and says so here and in its results.
 */
export function rcloneCommand(e: StackEnv): { cmd: string; origin: string } {
  let built = e.RCLONE;
  if (!built) {
    execFileSync(installScript, ["rclone"], { stdio: ["ignore", "inherit", "inherit"] });
    built = /^export RCLONE=(.+)$/m.exec(execFileSync(upScript).toString())?.[1];
  }
  if (built) return { cmd: built, origin: "built from its Go module" };
  process.stderr.write("warning: the stack has no rclone of its own; using rclone from PATH\n");
  return { cmd: "rclone", origin: "from PATH" };
}

/** rclone's remotes `lakefs:` (the lakeFS S3 gateway) and `dest:` (the destination S3). */
export function rcloneEnv(e: StackEnv): NodeJS.ProcessEnv {
  const remote = (name: string, endpoint: string, key: string, secret: string) => ({
    [`RCLONE_CONFIG_${name}_TYPE`]: "s3",
    [`RCLONE_CONFIG_${name}_PROVIDER`]: "Other",
    [`RCLONE_CONFIG_${name}_ENDPOINT`]: endpoint,
    [`RCLONE_CONFIG_${name}_ACCESS_KEY_ID`]: key,
    [`RCLONE_CONFIG_${name}_SECRET_ACCESS_KEY`]: secret,
    [`RCLONE_CONFIG_${name}_REGION`]: "us-east-1",
    [`RCLONE_CONFIG_${name}_FORCE_PATH_STYLE`]: "true",
  });
  // rclone 1.60 refuses to start with AWS_CA_BUNDLE set on a plain-HTTP endpoint; the stack is loopback HTTP.
  const { AWS_CA_BUNDLE: _bundle, ...inherited } = process.env;
  return {
    ...inherited,
    ...remote("LAKEFS", e.LAKEFS_ENDPOINT, e.LAKEFS_ACCESS_KEY_ID, e.LAKEFS_SECRET_ACCESS_KEY),
    ...remote("DEST", e.AWS_ENDPOINT_URL, e.AWS_ACCESS_KEY_ID, e.AWS_SECRET_ACCESS_KEY),
  };
}

export const rcloneFlags = [
  "--transfers=32",
  "--checkers=32",
  "--s3-upload-concurrency=4",
  "--s3-chunk-size=16M",
  "-q",
];

/** mc's aliases `lakefs` (the lakeFS S3 gateway) and `dest` (the destination S3, also the store lakeFS writes to). */
export function mcEnv(e: StackEnv, configDir: string): NodeJS.ProcessEnv {
  const alias = (endpoint: string, key: string, secret: string) => {
    const url = new URL(endpoint);
    return `${url.protocol}//${encodeURIComponent(key)}:${encodeURIComponent(secret)}@${url.host}`;
  };
  return {
    ...process.env,
    MC_CONFIG_DIR: configDir,
    MC_HOST_lakefs: alias(e.LAKEFS_ENDPOINT, e.LAKEFS_ACCESS_KEY_ID, e.LAKEFS_SECRET_ACCESS_KEY),
    MC_HOST_dest: alias(e.AWS_ENDPOINT_URL, e.AWS_ACCESS_KEY_ID, e.AWS_SECRET_ACCESS_KEY),
    MC_QUIET: "1",
    MC_NO_COLOR: "1",
  };
}

/** The version line a tool prints, for the results' header. */
export function versionOf(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { stdio: ["ignore", "pipe", "ignore"] })
      .toString()
      .split("\n")[0]!
      .trim();
  } catch {
    return `${cmd}: not found`;
  }
}

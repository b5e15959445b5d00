// The daemon as its own process for npm run bench, fed by a real lakeFS post-commit action:
// the clock runs from the commit call's return to the SUCCESS status file's appearance.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { parseS3Uri } from "../../src/s3/uri.ts";
import { actionFor } from "../helpers/daemon.ts";
import type { Stack } from "../helpers/stack.ts";

/** Starts the daemon with one mirror of `repo`'s main branch; its peak RSS is watched. */
export async function startBenchDaemon(
  entry: string[],
  stack: Stack,
  repo: string,
  destination: string,
  env: NodeJS.ProcessEnv,
) {
  const dir = mkdtempSync(join(tmpdir(), "lakefs-mirror-bench-"));
  const configFile = join(dir, "config.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      mirrors: [{ repository: repo, branches: ["main"], destination }],
      server: { host: "127.0.0.1", port: 0 },
      webhook: { token: stack.env.LAKEFSACTION_MIRROR_TOKEN },
      checkpoint: { path: join(dir, "checkpoint") },
      reconcile: { intervalSeconds: 0 },
      export: { concurrency: 32 },
    }),
  );
  // Webhooks only: KAFKA_BROKERS from the stack would not turn Kafka on without a topic, but keep it out.
  const daemonEnv: NodeJS.ProcessEnv = { ...env };
  delete daemonEnv.KAFKA_BROKERS;
  const child = spawn(process.execPath, [...entry, "run", "--config", configFile], {
    env: { ...daemonEnv, LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.on("exit", (code) => reject(new Error(`daemon exited ${code}: ${out.slice(-2000)}`)));
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /"address":"([^"]+)".*daemon started/.exec(out);
      if (m?.[1]) resolve(m[1]);
    });
  });
  const loc = parseS3Uri(destination);
  const hasStatus = async (commitId: string) => {
    const res = await stack.s3.send(
      new ListObjectsV2Command({
        Bucket: loc.bucket,
        Prefix: `${loc.prefix}EXPORT_${commitId}_`,
        MaxKeys: 1,
      }),
    );
    return (res.KeyCount ?? 0) > 0;
  };
  const commitAndWait = async (message: string) => {
    const commit = await stack.lakefs.commit(repo, "main", { message });
    const started = process.hrtime.bigint();
    const deadline = Date.now() + 60_000;
    while (!(await hasStatus(commit.id))) {
      if (Date.now() > deadline)
        throw new Error(`no SUCCESS status file for ${commit.id}: ${out.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return Number(process.hrtime.bigint() - started) / 1e9;
  };
  return {
    install: async () => {
      await stack.lakefs.uploadObject(
        repo,
        "main",
        "_lakefs_actions/lakefs-mirror.yaml",
        actionFor(url),
      );
      await commitAndWait("install the lakefs-mirror action");
    },
    commitAndWait,
    peakRssMb: () => {
      const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
      return Number(m?.[1] ?? 0) / 1024;
    },
    stop: async () => {
      child.removeAllListeners("exit");
      child.kill("SIGTERM");
      await new Promise((r) => child.on("exit", r));
    },
  };
}

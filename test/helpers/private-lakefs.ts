import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { LakefsClient } from "../../src/lakefs/client.ts";
import { createS3Client } from "../../src/s3/client.ts";
import type { Stack } from "./stack.ts";
import { freePort } from "./ports.ts";

const stackDir = fileURLToPath(new URL("../stack/", import.meta.url));

/** The stack's lakeFS binary (test/stack/lib.sh's lakefs_bin). */
async function lakefsBinary(): Promise<string> {
  const { stdout } = await promisify(execFile)("bash", [
    "-c",
    'source "$1/lib.sh"; lakefs_bin',
    "lakefs-bin",
    stackDir,
  ]);
  return stdout.trim();
}

export interface PrivateLakefs {
  /**
   * The stack with this lakeFS in place of the shared one: its API, its S3 gateway and the
   * environment the CLI reads (LAKEFS_ENDPOINT and its keys); the stores are the stack's.
   */
  stack: Stack;
  /** Stops lakeFS and removes its data; idempotent. */
  stop(): Promise<void>;
}

/**
 * A lakeFS of the test's own, the stack's binary with its own local KV store and port, keeping
 * its repositories on the block store that `blockstore` configures (lakeFS's `blockstore`
 * section, as YAML lines), so that a test can run lakeFS on Azurite or fake-gcs-server where the
 * shared lakeFS stays on MinIO. `env` is added to lakeFS's environment.
 */
export async function startPrivateLakefs(
  base: Stack,
  blockstore: string,
  env: Record<string, string> = {},
  timeoutMs = 90_000,
): Promise<PrivateLakefs> {
  const dir = mkdtempSync(join(tmpdir(), "lakefs-mirror-lakefs-"));
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  // As AWS access key IDs are: 20 characters (lakeFS's gateway reads no longer ones).
  const accessKeyId = `AKIA${randomBytes(8).toString("hex").toUpperCase()}`;
  const secretAccessKey = randomBytes(24).toString("base64url");
  const config = join(dir, "lakefs.yaml");
  writeFileSync(
    config,
    [
      `listen_address: 127.0.0.1:${port}`,
      "logging: { format: text, level: INFO }",
      `database: { type: local, local: { path: ${JSON.stringify(join(dir, "kv"))} } }`,
      `auth: { encrypt: { secret_key: ${randomBytes(16).toString("hex")} } }`,
      blockstore.trimEnd(),
      "installation:",
      "  user_name: admin",
      `  access_key_id: ${accessKeyId}`,
      `  secret_access_key: ${secretAccessKey}`,
      "stats: { enabled: false }",
      "security: { check_latest_version: false }",
      "",
    ].join("\n"),
  );
  const log = join(dir, "lakefs.log");
  const binary = await lakefsBinary();
  // Through bash, so that lakeFS's output goes to a file the test can show when it fails.
  const proc: ChildProcess = spawn(
    "bash",
    ["-c", 'exec "$1" run --config "$2" >"$3" 2>&1 </dev/null', "lakefs", binary, config, log],
    { stdio: "ignore", env: { ...process.env, ...env } },
  );
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (proc.exitCode === null) {
        proc.kill("SIGTERM");
        const killed = setTimeout(() => proc.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(killed);
      }
      lakefs.close().catch(() => undefined);
      gateway.destroy();
      rmSync(dir, { recursive: true, force: true });
    })());

  const lakefs = new LakefsClient({
    endpoint,
    accessKeyId,
    secretAccessKey,
    retry: { retries: 2, maxRetryTimeMs: 5_000 },
  });
  const gateway = createS3Client({
    endpoint,
    region: "us-east-1",
    credentials: { accessKeyId, secretAccessKey },
  });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const up = await fetch(`${endpoint}/api/v1/healthcheck`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (proc.exitCode !== null || Date.now() > deadline) {
      let text = "";
      try {
        text = readFileSync(log, "utf8").slice(-3000);
      } catch {
        // No log yet.
      }
      await stop();
      throw new Error(`the private lakeFS did not start:\n${text}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const stack: Stack = {
    ...base,
    env: {
      ...base.env,
      LAKEFS_ENDPOINT: endpoint,
      LAKEFS_ACCESS_KEY_ID: accessKeyId,
      LAKEFS_SECRET_ACCESS_KEY: secretAccessKey,
    },
    lakefs,
    gateway,
    close: stop,
  };
  return { stack, stop };
}

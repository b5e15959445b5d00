import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../../src/config.ts";
import type { MirrorSpec } from "../../src/config.ts";
import { Daemon } from "../../src/daemon/daemon.ts";
import type { DaemonParts, LaneStatus } from "../../src/daemon/daemon.ts";
import { silentLogger } from "./mirror.ts";
import type { Stack } from "./stack.ts";

export interface DaemonSettings {
  mirrors: MirrorSpec[];
  checkpointPath?: string;
  reconcileIntervalSeconds?: number;
  kafka?: { topic: string; groupId: string; deadLetterTopic?: string };
  forwardToKafka?: boolean;
  token?: string;
  extra?: Record<string, unknown>;
  /** Environment variables over the stack's (they override the config file, as in a container). */
  env?: Record<string, string>;
}

/** A config file for the daemon, pointing at the stack, in a fresh temporary directory. */
export function writeDaemonConfig(
  stack: Stack,
  s: DaemonSettings,
): { file: string; checkpointPath: string } {
  const dir = mkdtempSync(join(tmpdir(), "lakefs-mirror-test-"));
  const checkpointPath = s.checkpointPath ?? join(dir, "checkpoint");
  const config = {
    mirrors: s.mirrors,
    server: { host: "127.0.0.1", port: 0 },
    webhook: {
      token: s.token ?? stack.env.LAKEFSACTION_MIRROR_TOKEN,
      forwardToKafka: s.forwardToKafka ?? false,
    },
    checkpoint: { path: checkpointPath },
    reconcile: { intervalSeconds: s.reconcileIntervalSeconds ?? 0 },
    scheduler: { maxParallelLanes: 4, retryBaseSeconds: 1, retryMaxSeconds: 2 },
    export: { concurrency: 8 },
    shutdown: { graceSeconds: 20 },
    ...(s.kafka ? { kafka: { brokers: stack.env.KAFKA_BROKERS.split(","), ...s.kafka } } : {}),
    ...s.extra,
  };
  const file = join(dir, "config.json");
  writeFileSync(file, JSON.stringify(config, null, 2));
  return { file, checkpointPath };
}

/** The stack's environment without KAFKA_BROKERS, which would override the config file's brokers. */
export function daemonEnv(stack: Stack): NodeJS.ProcessEnv {
  const { KAFKA_BROKERS: _k, ...env } = { ...process.env, ...stack.env };
  return env;
}

/** The daemon in this process, as `lakefs-mirror run --config` would build it. */
export async function startDaemon(
  stack: Stack,
  s: DaemonSettings,
  parts: Partial<DaemonParts> = {},
): Promise<{ daemon: Daemon; url: string; checkpointPath: string }> {
  const { file, checkpointPath } = writeDaemonConfig(stack, s);
  const config = loadConfig({
    env: { ...daemonEnv(stack), LOG_LEVEL: "silent", ...s.env },
    file,
  });
  const daemon = new Daemon(config, silentLogger, parts);
  try {
    await daemon.start();
  } catch (err) {
    await daemon.close();
    throw err;
  }
  return { daemon, url: daemon.http.address, checkpointPath };
}

const entry = fileURLToPath(new URL("../../src/cli/bin.ts", import.meta.url));

export interface DaemonProcess {
  child: ChildProcess;
  url: Promise<string>;
  output: () => string;
  exited: Promise<number | null>;
}

/** `lakefs-mirror run` as its own process, for kill -9 and signal tests. */
export function spawnDaemon(
  stack: Stack,
  configFile: string,
  env: Record<string, string> = {},
): DaemonProcess {
  const child = spawn(process.execPath, ["--import", "tsx", entry, "run", "--config", configFile], {
    env: { ...daemonEnv(stack), LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let resolveUrl: (u: string) => void = () => undefined;
  const url = new Promise<string>((r) => (resolveUrl = r));
  const onData = (d: Buffer) => {
    out += d.toString();
    const m = /"address":"(http:\/\/[^"]+)".*daemon started/.exec(out);
    if (m?.[1]) resolveUrl(m[1]);
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  return { child, url, output: () => out, exited };
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(
    `timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ""}`,
  );
}

export async function laneStatus(url: string): Promise<LaneStatus[]> {
  const res = await fetch(`${url}/status`);
  return ((await res.json()) as { lanes: LaneStatus[] }).lanes;
}

/**
 * Resolves when the lane of (repository, branch) has exported `commitId` with a SUCCESS status
 * file, has no failing paths and is idle.
 */
export function waitForExported(
  url: string,
  repository: string,
  branch: string,
  commitId: string,
  timeoutMs = 60_000,
) {
  return waitFor(
    `${repository}/${branch} exported at ${commitId.slice(0, 12)}`,
    async () => {
      const lane = (await laneStatus(url)).find(
        (l) => l.repository === repository && l.branch === branch,
      );
      return lane &&
        lane.lastSuccessCommit === commitId &&
        lane.lastExportedCommit === commitId &&
        lane.failingPaths === 0 &&
        lane.state === "idle"
        ? lane
        : undefined;
    },
    timeoutMs,
  );
}

export async function postWebhook(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${url}/webhooks/lakefs`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

export function commitEvent(
  repository: string,
  branch: string,
  commitId: string,
  eventType = "post-commit",
) {
  return {
    event_type: eventType,
    event_time: new Date().toISOString(),
    action_name: "test",
    hook_id: "test",
    repository_id: repository,
    branch_id: branch,
    commit_id: commitId,
  };
}

/**
 * The lakeFS action shipped in deploy/lakefs-action.yaml, pointed at a daemon's address, so
 * that tests and the demo exercise the very file users install.
 */
export function actionFor(daemonUrl: string): string {
  const shipped = readFileSync(
    fileURLToPath(new URL("../../deploy/lakefs-action.yaml", import.meta.url)),
    "utf8",
  );
  const out = shipped.replace("http://127.0.0.1:8081", daemonUrl);
  if (out === shipped)
    throw new Error("deploy/lakefs-action.yaml no longer calls http://127.0.0.1:8081");
  return out;
}

import { PutObjectCommand } from "@aws-sdk/client-s3";
import pino from "pino";
import { loadConfig } from "../../src/config.ts";
import { Daemon } from "../../src/daemon/daemon.ts";
import type { DaemonSettings } from "./daemon.ts";
import { daemonEnv, writeDaemonConfig } from "./daemon.ts";
import { listKeys } from "./mirror.ts";
import type { Stack } from "./stack.ts";

/**
 * Short windows for convergence tests: back-offs of one or two seconds, retries that give up in
 * milliseconds. `overrides` replaces whole sections (as DaemonSettings.extra does).
 */
export function shortWindows(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    scheduler: { maxParallelLanes: 4, retryBaseSeconds: 1, retryMaxSeconds: 2 },
    retry: { retries: 1, minTimeoutMs: 10, maxTimeoutMs: 50, maxRetryTimeMs: 2000 },
    export: { concurrency: 16 },
    ...overrides,
  };
}

export interface ObservedDaemon {
  daemon: Daemon;
  url: string;
  checkpointPath: string;
  /** Every log line the daemon wrote so far, parsed. */
  logs: () => Record<string, unknown>[];
  /** The log lines as text, for assertion messages. */
  logText: () => string;
}

/**
 * The daemon in this process, as startDaemon builds it, but with its log kept in memory: the
 * lines are evidence when an assertion fails, and tell which way a lane loaded its state.
 */
export async function startObservedDaemon(
  stack: Stack,
  settings: DaemonSettings,
): Promise<ObservedDaemon> {
  const { file, checkpointPath } = writeDaemonConfig(stack, settings);
  const config = loadConfig({ env: { ...daemonEnv(stack), LOG_LEVEL: "silent" }, file });
  const lines: string[] = [];
  const logger = pino(
    { level: "info" },
    {
      write(line: string) {
        lines.push(line);
      },
    },
  );
  const daemon = new Daemon(config, logger);
  try {
    await daemon.start();
  } catch (err) {
    await daemon.close();
    throw err;
  }
  return {
    daemon,
    url: daemon.http.address,
    checkpointPath,
    logs: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    logText: () => lines.join(""),
  };
}

/** The daemon's /metrics text. */
export async function scrape(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return res.text();
}

/**
 * The value of a sample in Prometheus text whose labels include `labels`; 0 when no sample
 * matches (a counter not incremented yet is not listed), an error when several do.
 */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const found: number[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      have.set(l[1]!, l[2]!.replace(/\\(.)/g, "$1"));
    }
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) found.push(Number(m[3]));
  }
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match`);
  return found[0] ?? 0;
}

/** The counters a test compares before and after an export. */
export interface ExportCounters {
  copied: number;
  deleted: number;
  failed: number;
  successes: number;
  failures: number;
}

export async function exportCounters(url: string): Promise<ExportCounters> {
  const text = await scrape(url);
  return {
    copied: sample(text, "lakefs_mirror_objects_total", { op: "copied" }),
    deleted: sample(text, "lakefs_mirror_objects_total", { op: "deleted" }),
    failed: sample(text, "lakefs_mirror_objects_total", { op: "failed" }),
    successes: sample(text, "lakefs_mirror_exports_total", { result: "success" }),
    failures: sample(text, "lakefs_mirror_exports_total", { result: "failure" }),
  };
}

export interface StatusFile {
  key: string;
  commitId: string;
  at: number;
  status: "SUCCESS" | "FAILURE";
}

/** Status files at a destination root, parsed from their names, newest first. */
export async function statusFiles(
  stack: Stack,
  bucket: string,
  prefix = "",
): Promise<StatusFile[]> {
  const out: StatusFile[] = [];
  for (const key of (await listKeys(stack, bucket, prefix)).keys()) {
    const m =
      /^EXPORT_([0-9a-zA-Z]+)_(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)_(SUCCESS|FAILURE)$/.exec(
        key,
      );
    if (m) out.push({ key, commitId: m[1]!, at: Date.parse(m[2]!), status: m[3] as "SUCCESS" });
  }
  return out.sort((a, b) => b.at - a.at);
}

/**
 * The mirrored objects at a destination (path → size): every key but the root's status files and
 * `_lakefs_mirror/`, which are lakefs-mirror's own records.
 */
export async function mirroredObjects(
  stack: Stack,
  bucket: string,
  prefix = "",
): Promise<Map<string, number>> {
  const keys = await listKeys(stack, bucket, prefix);
  for (const k of [...keys.keys()]) {
    if (/^EXPORT_.*_(SUCCESS|FAILURE)$/.test(k) || k.startsWith("_lakefs_mirror/")) keys.delete(k);
  }
  return keys;
}

/** Puts an object's bytes back at its physical address, behind lakeFS's back. */
export async function restorePhysicalObject(
  stack: Stack,
  repo: string,
  ref: string,
  path: string,
  content: string | Buffer,
): Promise<void> {
  const address = (await stack.lakefs.statObject(repo, ref, path)).physical_address;
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(address);
  if (!m) throw new Error(`not an S3 address: ${address}`);
  await stack.s3.send(
    new PutObjectCommand({
      Bucket: m[1],
      Key: m[2],
      Body: typeof content === "string" ? Buffer.from(content) : content,
    }),
  );
}

import type { DaemonStatus } from "../../src/daemon/daemon.ts";
import { laneKey, partitionOf } from "../../src/kafka/client.ts";

/** A daemon's whole GET /status answer: its owner name, Kafka state, partitions and lanes. */
export async function daemonStatus(url: string): Promise<DaemonStatus> {
  const res = await fetch(`${url}/status`);
  if (!res.ok) throw new Error(`GET ${url}/status answered ${res.status}`);
  return (await res.json()) as DaemonStatus;
}

/**
 * Branch names `<prefix><partition>-<n>` picked so that `perPartition` lanes of `repository`
 * land in each of the topic's partitions: every member of the group then has lanes to export,
 * whatever partitions it is given.
 */
export function branchesOverPartitions(
  repository: string,
  partitions: number,
  perPartition: number,
  prefix = "b-",
): string[] {
  const out: string[] = [];
  for (let p = 0; p < partitions; p++) {
    let found = 0;
    for (let n = 0; found < perPartition; n++) {
      if (n > 10_000) throw new Error(`no branch name lands in partition ${p}`);
      const branch = `${prefix}${p}-${n}`;
      if (partitionOf(laneKey(repository, branch), partitions) !== p) continue;
      out.push(branch);
      found++;
    }
  }
  return out;
}

/** One "export finished" / "export failed" line of a daemon's log, as a writing interval. */
export interface ExportInterval {
  daemon: string;
  repository: string;
  branch: string;
  destination: string;
  /** When the run that wrote began (ms since the epoch). */
  start: number;
  /** When the line was written, after the status file and the ledger (ms since the epoch). */
  end: number;
  status: string;
  leaseEpoch: number | null;
}

/** The export lines in a daemon's output (pino JSON lines; anything else is skipped). */
export function exportIntervals(daemon: string, output: string): ExportInterval[] {
  const out: ExportInterval[] = [];
  for (const text of output.split("\n")) {
    if (!text.startsWith("{")) continue;
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (line.msg !== "export finished" && line.msg !== "export failed") continue;
    const start = Date.parse(String(line.startedAt));
    const end = Date.parse(String(line.time));
    if (Number.isNaN(start) || Number.isNaN(end)) {
      throw new Error(`an export line without startedAt and time: ${text}`);
    }
    out.push({
      daemon,
      repository: String(line.repository),
      branch: String(line.branch),
      destination: String(line.destination),
      start,
      end,
      status: String(line.status),
      leaseEpoch: typeof line.leaseEpoch === "number" ? line.leaseEpoch : null,
    });
  }
  return out;
}

/** A "lease taken" line of a daemon's log: it became a destination's writer. */
export interface LeaseTaken {
  daemon: string;
  branch: string;
  previousOwner: string | null;
  at: number;
}

export function leasesTaken(daemon: string, output: string): LeaseTaken[] {
  const out: LeaseTaken[] = [];
  for (const text of output.split("\n")) {
    if (!text.startsWith("{") || !text.includes('"lease taken"')) continue;
    const line = JSON.parse(text) as Record<string, unknown>;
    if (line.msg !== "lease taken") continue;
    out.push({
      daemon,
      branch: String(line.branch),
      previousOwner: typeof line.previousOwner === "string" ? line.previousOwner : null,
      at: Date.parse(String(line.time)),
    });
  }
  return out;
}

/** Every pair of intervals at one destination, from different daemons, that overlap in time. */
export function concurrentWriters(
  intervals: readonly ExportInterval[],
): [ExportInterval, ExportInterval][] {
  const pairs: [ExportInterval, ExportInterval][] = [];
  for (let i = 0; i < intervals.length; i++) {
    for (let j = i + 1; j < intervals.length; j++) {
      const a = intervals[i]!;
      const b = intervals[j]!;
      if (a.destination !== b.destination || a.daemon === b.daemon) continue;
      if (a.start < b.end && b.start < a.end) pairs.push([a, b]);
    }
  }
  return pairs;
}

/** The samples of one Prometheus metric, by their label set as written (`event="taken"`). */
export function metricSamples(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    out.set(m[2] ?? "", Number(m[3]));
  }
  return out;
}

export async function metricsText(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  if (!res.ok) throw new Error(`GET ${url}/metrics answered ${res.status}`);
  return res.text();
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

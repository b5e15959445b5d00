import type { Fleet } from "./fleet.ts";
import type { OpRecord } from "./report.ts";
import type { DeliveryCounts } from "./runtime-events.ts";
import type { KafkaSide } from "./runtime-kafka.ts";
import type { OffsetCounts } from "./runtime-offsets.ts";
import { runtimeReplayCommand } from "./runtime-options.ts";
import type { RuntimeOptions } from "./runtime-options.ts";

export interface RuntimeReport {
  seed: number;
  stepsDone: number;
  durationMs: number;
  runDir: string;
  ops: Record<string, number>;
  events: DeliveryCounts | undefined;
  kafka: (KafkaSide["counts"] & { partitions: number; observed: number }) | undefined;
  offsets: OffsetCounts | undefined;
  daemons: Fleet["counts"] | undefined;
  /** Times a repository was made to fail, and requests the proxy refused. */
  repoFailures: number;
  refused: number;
  foreignKeys: number;
  settles: number[];
  failure?: { kind: string; step: number; message: string; details: string[] } | undefined;
  /** An error of the harness itself (not a finding about lakefs-mirror). */
  harnessError?: string | undefined;
  oplog: OpRecord[];
}

/** The human summary of one run, and on failure everything needed to understand and replay it. */
export function describeRuntimeReport(o: RuntimeOptions, r: RuntimeReport): string {
  const lines = [
    `seed=${r.seed} steps=${r.stepsDone}/${o.steps} daemons=${o.daemons} repos=${o.repos} ${Math.round(r.durationMs / 1000)} s`,
    `ops: ${JSON.stringify(r.ops)}`,
    `events: ${JSON.stringify(r.events ?? {})}`,
    `kafka: ${JSON.stringify(r.kafka ?? {})}`,
    `offsets: ${JSON.stringify(r.offsets ?? {})}`,
    `daemons: ${JSON.stringify(r.daemons ?? {})}`,
    `repository failures: ${r.repoFailures} (${r.refused} requests refused); foreign keys: ${r.foreignKeys}`,
    `settles (ms to converge): ${JSON.stringify(r.settles)}`,
    `logs: ${r.runDir}`,
  ];
  if (r.failure) {
    lines.push(
      "",
      `FAILURE at step ${r.failure.step}: ${r.failure.kind}`,
      r.failure.message,
      ...r.failure.details.map((d) => `  ${d}`),
      "",
      "operation log:",
      ...r.oplog.map((x) => `  [${(x.at / 1000).toFixed(1)}s] step ${x.step} ${x.op}: ${x.detail}`),
    );
  }
  if (r.harnessError) lines.push("", `HARNESS ERROR (not a finding): ${r.harnessError}`);
  if (r.failure || r.harnessError) lines.push("", `replay: ${runtimeReplayCommand(o)}`);
  return lines.join("\n");
}

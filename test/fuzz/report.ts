import type { Fault } from "../helpers/fault-injecting-proxy.ts";
import type { Fleet } from "./fleet.ts";
import { replayCommand } from "./options.ts";
import type { FuzzOptions } from "./options.ts";

export interface OpRecord {
  step: number;
  /** Milliseconds since the run began. */
  at: number;
  op: string;
  detail: string;
}

export interface FuzzReport {
  seed: number;
  stepsDone: number;
  durationMs: number;
  runDir: string;
  ops: Record<string, number>;
  faults: { s3: Record<Fault, number>; lakefs: Record<Fault, number> };
  daemons: Fleet["counts"];
  foreign: { written: number; kept: number; lost: string[] };
  cli: Record<string, { runs: number; success: number; failure: number; other: number }>;
  settles: number[];
  failure?: { kind: string; step: number; message: string; details: string[] } | undefined;
  /** An error of the harness itself (not a finding about lakefs-mirror). */
  harnessError?: string | undefined;
  oplog: OpRecord[];
}

/** The human summary of one run, and on failure everything needed to understand and replay it. */
export function describeReport(o: FuzzOptions, r: FuzzReport): string {
  const lines = [
    `seed=${r.seed} steps=${r.stepsDone}/${o.steps} daemons=${o.daemons} ${Math.round(r.durationMs / 1000)} s`,
    `ops: ${JSON.stringify(r.ops)}`,
    `faults injected: s3 ${JSON.stringify(r.faults.s3)}, lakeFS ${JSON.stringify(r.faults.lakefs)}`,
    `daemons: ${JSON.stringify(r.daemons)}`,
    `foreign keys: ${r.foreign.written} written, ${r.foreign.kept} kept, ${r.foreign.lost.length} lost`,
    `cli: ${JSON.stringify(r.cli)}`,
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
  if (r.failure || r.harnessError) lines.push("", `replay: ${replayCommand(o)}`);
  return lines.join("\n");
}

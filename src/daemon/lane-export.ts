import type { Logger } from "pino";
import { LakefsNotFoundError } from "../errors.ts";
import type { Exporter, ExportResult } from "../export/exporter.ts";
import { parseDeleteLimit } from "../export/reconcile.ts";
import { ourRecords } from "../ledger/ledger.ts";
import type { Ledger, Plan } from "../ledger/ledger.ts";
import type { Coordinator, Split, SplitLane } from "../work/coordinator.ts";
import type { Lane } from "./lane.ts";

export interface LaneExportInput {
  lane: Lane;
  exporter: Exporter;
  /** The lane's ledger with this attempt begun (its prefix state known). */
  ledger: Ledger;
  plan: Exclude<Plan, { kind: "current" | "wait" }>;
  head: string;
  /** Saves the attempt's ledger: nothing is written to the destination before it is done. */
  record: () => Promise<void>;
  /** export.maxDeletes, as configured. */
  maxDeletes: string;
  logger: Logger;
  /** The group's share of the work, when LaneSync's coordinator chose to split it. */
  split?: { split: Split; work: Coordinator; at: SplitLane };
}

/**
 * Who copies for a lane: runs the plan LaneSync chose, shared by the group as work items, as
 * a reconciling full export, or as the cover diffs (reconciling instead when a commit to diff
 * from is gone). It writes nothing to the ledger but the attempt's record, through `record`,
 * before its first write; the outcome is LaneSync's to record.
 */
export async function exportLane(
  input: LaneExportInput,
  signal: AbortSignal,
): Promise<{ result: ExportResult; mode: Plan["kind"] }> {
  const { lane, exporter, ledger, plan, head, record, logger: log } = input;
  const reconcile = (gate?: { onChecked: () => void; writesAfter: Promise<void> }) =>
    exporter.exportReconciling(
      head,
      {
        dedicated: lane.dedicated,
        owned: lane.dedicated || ledger.prefix !== "foreign",
        unguarded: ledger.prefix === "empty",
        maxDeletes: parseDeleteLimit(input.maxDeletes),
        // On a prefix that holds others' keys, the lane's own leftovers are still its to
        // delete: what its ledger says it may have written (base, unfinished attempts).
        ours: ourRecords(ledger),
        lane,
        ...gate,
      },
      signal,
    );
  if (input.split) {
    const { split, work, at } = input.split;
    log.info(
      {
        run: split.run,
        kind: split.kind,
        resumed: split.resumed,
        reason: plan.kind === "reconcile" ? plan.reason : undefined,
      },
      "splitting the export into work items for the group",
    );
    return { result: await work.run(split, at, record, signal), mode: plan.kind };
  }
  if (plan.kind === "reconcile") {
    log.info({ reason: plan.reason }, "no trustworthy base; reconciling with a full listing");
    // The attempt is recorded once the reconcile's first pass found nothing that refuses it
    // (another lane's records below): a lane that refuses leaves no ledger behind.
    let open = () => undefined as void;
    const recorded = new Promise<void>((resolve) => (open = resolve)).then(record);
    recorded.catch(() => undefined);
    const result = await reconcile({ onChecked: open, writesAfter: recorded });
    await recorded;
    return { result, mode: "reconcile" };
  }
  const saving = record();
  saving.catch(() => undefined);
  try {
    const result = await exporter.exportCover(
      plan.from,
      head,
      { retry: plan.retry, carry: plan.carry, writesAfter: saving },
      signal,
    );
    return { result, mode: plan.kind };
  } catch (err) {
    // The attempt's record settles before anything else happens; a failed save is the
    // failure to report (as when it ran first: a lost lease, say).
    await saving;
    if (!(err instanceof LakefsNotFoundError) || err.what === "object") throw err;
    // A commit the diffs start from is gone from lakeFS (garbage-collected history).
    log.warn({ from: plan.from, err }, "a commit to diff from is gone; reconciling instead");
    return { result: await reconcile(), mode: "reconcile" };
  }
}

import assert from "node:assert/strict";
import { it } from "node:test";
import pino from "pino";
import { ExportRun } from "../../../src/export/export-run.ts";
import { Rounds, roundPresets } from "../../../src/export/rounds.ts";
import type { ExportTask } from "../../../src/export/task.ts";
import { RecordingStubs } from "../export/recording-stubs.ts";

const iter = (tasks: ExportTask[]) => ({
  [Symbol.asyncIterator]: () => {
    const it = tasks[Symbol.iterator]();
    return { next: () => Promise.resolve(it.next()) };
  },
});

it("regression: a work item's retried path gone from the commit, with deletes last, is deleted by the owner (it was dropped)", async () => {
  const stubs = new RecordingStubs(new Set(), new Set(["t/part-9.parquet"]));
  const deferred: ExportTask[] = [];
  const opts = {
    lakefs: stubs.lakefs,
    repository: "repo",
    destination: stubs.destination,
    copier: stubs.copier,
    rounds: new Rounds(roundPresets.delta.rules),
    deletesLast: true,
    concurrency: 4,
    logger: pino({ level: "silent" }),
    retry: { retries: 0 },
  };
  const part = await new ExportRun(
    { ...opts, part: { defer: (t) => deferred.push(t), deferDeletes: false } },
    "c0ffee",
    [],
  ).runPart(iter([{ op: "sync", path: "t/part-9.parquet" }]));
  // The owner's last run (finishParts) with the part's result as prior and the deferred tasks:
  const owner = await new ExportRun({ ...opts, prior: part }, "c0ffee", []).run(iter(deferred));
  assert.equal(owner.status, "SUCCESS");
  assert.deepEqual(deferred, [{ op: "delete", path: "t/part-9.parquet" }]);
  // The part left it to the owner (the events hold the part's stat and the owner's delete).
  assert.ok(
    stubs.events.some((e) => e.op === "delete" && JSON.stringify(e).includes("t/part-9.parquet")),
    JSON.stringify(stubs.events),
  );
});

import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { describe, it } from "node:test";
import { Rounds, roundPresets } from "../../../src/export/rounds.ts";
import type { ExportTask } from "../../../src/export/task.ts";
import { RecordingStubs, spillDir, stats } from "./recording-stubs.ts";

const copy = (path: string): ExportTask => ({
  op: "copy",
  path,
  stats: stats(path),
  change: "added",
});
const del = (path: string): ExportTask => ({ op: "delete", path });
const files = (dir: string) => readdirSync(dir, { recursive: true }).length;

describe("an export's rounds", () => {
  it("a burst of Delta commits coalesced into one export writes version N+1's log entry only after version N's has settled", async () => {
    const stubs = new RecordingStubs();
    const log = "sales/_delta_log";
    const v = (n: number) => String(n).padStart(20, "0");
    const tasks = [
      ...Array.from({ length: 6 }, (_, n) => copy(`${log}/${v(n)}.json`)),
      copy(`${log}/${v(5)}.checkpoint.parquet`),
      copy(`${log}/_last_checkpoint`),
      ...Array.from({ length: 6 }, (_, n) => copy(`sales/part-${n}.parquet`)),
    ];
    const outcome = await stubs.run(tasks, {
      rounds: new Rounds(roundPresets.delta.rules),
      deletesLast: true,
      concurrency: 8,
    });
    assert.equal(outcome.status, "SUCCESS");
    const at = (at: "start" | "end", path: string) =>
      stubs.events.findIndex((e) => e.at === at && e.path === path);
    for (let n = 1; n < 6; n++)
      assert.ok(
        at("end", `${log}/${v(n - 1)}.json`) < at("start", `${log}/${v(n)}.json`),
        `version ${n} was written before version ${n - 1} settled`,
      );
    assert.ok(at("end", `${log}/${v(5)}.json`) < at("start", `${log}/${v(5)}.checkpoint.parquet`));
    assert.ok(
      at("end", `${log}/${v(5)}.checkpoint.parquet`) < at("start", `${log}/_last_checkpoint`),
    );
  });

  it("a data file still backing off from an earlier failure holds back its directory's _SUCCESS", async () => {
    const stubs = new RecordingStubs();
    const outcome = await stubs.run([copy("job/part-2.csv"), copy("job/_SUCCESS")], {
      rounds: new Rounds(roundPresets.spark.rules),
      carry: [{ path: "job/part-1.csv", op: "copy", reason: "503 SlowDown" }],
    });
    assert.equal(outcome.status, "FAILURE");
    assert.deepEqual(
      stubs.events.filter((e) => e.at === "start").map((e) => e.path),
      ["job/part-2.csv"],
    );
    assert.deepEqual(outcome.unfinished?.map((f) => f.path).sort(), [
      "job/_SUCCESS",
      "job/part-1.csv",
    ]);
  });

  it("a carried failure written by this export after all no longer holds back later rounds", async () => {
    const stubs = new RecordingStubs();
    const outcome = await stubs.run([copy("job/part-1.csv"), copy("job/_SUCCESS")], {
      rounds: new Rounds(roundPresets.spark.rules),
      carry: [{ path: "job/part-1.csv", op: "copy", reason: "503 SlowDown" }],
    });
    assert.equal(outcome.status, "SUCCESS");
    assert.equal(stubs.events.filter((e) => e.at === "end" && e.ok).length, 2);
  });

  it("deletes beyond the in-memory cap spill to files, all run after every copy, and the files are gone afterwards", async () => {
    const stubs = new RecordingStubs();
    const spill = spillDir();
    let spilled = 0;
    stubs.onStart = (e) => {
      if (e.op === "delete") spilled = Math.max(spilled, files(spill));
    };
    const deletes = Array.from({ length: 5000 }, (_, i) => del(`old/part=${i % 7}/f-${i}`));
    const outcome = await stubs.run([...deletes, copy("new/f-1"), copy("new/f-2")], {
      rounds: new Rounds(roundPresets.delta.rules),
      deletesLast: true,
      deferredInMemory: 10,
      spillDirectory: spill,
    });
    assert.equal(outcome.status, "SUCCESS");
    assert.equal(outcome.deleted, 5000);
    assert.ok(spilled > 0, "the deletes went through files");
    const firstDelete = stubs.events.findIndex((e) => e.op === "delete");
    assert.ok(stubs.events.findLastIndex((e) => e.op === "copy") < firstDelete);
    assert.equal(files(spill), 0);
  });

  it("an export fenced during its spilled deletes leaves no spill files", async () => {
    const stubs = new RecordingStubs();
    const spill = spillDir();
    let deletes = 0;
    stubs.onStart = (e) => {
      if (e.op === "delete") deletes++;
    };
    const lost = new Error("lease lost");
    await assert.rejects(
      stubs.run(
        Array.from({ length: 3000 }, (_, i) => del(`d/${i}`)),
        {
          rounds: new Rounds(),
          deletesLast: true,
          deferredInMemory: 7,
          spillDirectory: spill,
          fence: () => {
            if (deletes >= 1000) throw lost;
          },
        },
      ),
      (err) => err === lost,
    );
    assert.equal(files(spill), 0);
  });

  it("an aborted export leaves no spill files", async () => {
    const stubs = new RecordingStubs();
    const spill = spillDir();
    const abort = new AbortController();
    stubs.onStart = (e) => {
      if (e.op === "delete") abort.abort();
    };
    await assert.rejects(
      stubs.run(
        Array.from({ length: 3000 }, (_, i) => del(`d/${i}`)),
        {
          rounds: new Rounds(),
          deletesLast: true,
          deferredInMemory: 7,
          spillDirectory: spill,
          signal: abort.signal,
        },
      ),
      { code: "LM_ABORTED" },
    );
    assert.equal(files(spill), 0);
  });
});

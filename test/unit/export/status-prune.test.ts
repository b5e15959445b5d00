import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  newestFirst,
  statusFileName,
  statusFilesToPrune,
} from "../../../src/export/status-file.ts";
import type { ExportStatus, ListedStatusFile } from "../../../src/export/status-file.ts";

const T0 = Date.parse("2026-11-25T12:00:00Z");
const commits = ["a", "b", "c", "d"].map((c) => c.repeat(64));

function file(
  commit: string,
  status: ExportStatus,
  at: number,
  storedAt: number,
): ListedStatusFile {
  return {
    commitId: commit,
    status,
    at: new Date(at),
    path: statusFileName(commit, status, new Date(at)),
    storedAt: new Date(storedAt),
  };
}

/**
 * Status files as writers with disagreeing clocks leave them: name times anywhere within an
 * hour of the store's time, store times that tie (S3 lists LastModified to the second).
 */
const files = fc
  .array(
    fc.record({
      commit: fc.constantFrom(...commits),
      status: fc.constantFrom<ExportStatus>("SUCCESS", "FAILURE"),
      skew: fc.integer({ min: -3_600_000, max: 3_600_000 }),
      stored: fc.integer({ min: 0, max: 20 }),
    }),
    { maxLength: 30 },
  )
  .map((rs) => {
    const byPath = new Map<string, ListedStatusFile>();
    for (const r of rs) {
      const storedAt = T0 + r.stored * 1000;
      const f = file(r.commit, r.status, storedAt + r.skew, storedAt);
      byPath.set(f.path, f);
    }
    return [...byPath.values()];
  });

describe("status-file pruning plan", () => {
  it("keeps the newest by the store's clock, the newest SUCCESS and the ledger's, and deletes only the rest", () => {
    fc.assert(
      fc.property(
        files,
        fc.integer({ min: -1, max: 8 }),
        fc.option(fc.constantFrom(...commits), { nil: undefined }),
        (listed, keep, lastSuccess) => {
          const deleted = statusFilesToPrune(listed, keep, lastSuccess);
          const gone = new Set(deleted);
          assert.equal(gone.size, deleted.length, "each at most once");
          const paths = new Set(listed.map((f) => f.path));
          for (const p of deleted) assert.ok(paths.has(p), `${p} was not listed`);
          if (keep <= 0) return assert.deepEqual(deleted, []);
          const sorted = [...listed].sort(newestFirst);
          for (const f of sorted.slice(0, keep)) assert.ok(!gone.has(f.path));
          const success = sorted.filter((f) => f.status === "SUCCESS");
          if (success[0]) assert.ok(!gone.has(success[0].path), "the newest SUCCESS");
          const ledgers = success.find((f) => f.commitId === lastSuccess);
          if (ledgers) assert.ok(!gone.has(ledgers.path), "the ledger's last SUCCESS");
          const wanted = new Set([...sorted.slice(0, keep), success[0], ledgers]);
          for (const f of listed)
            if (!wanted.has(f)) assert.ok(gone.has(f.path), `${f.path} was not pruned`);
          // Whatever order the listing came in.
          assert.deepEqual(
            new Set(statusFilesToPrune([...listed].reverse(), keep, lastSuccess)),
            gone,
          );
        },
      ),
      { numRuns: 500 },
    );
  });

  it("orders by the store's time first, the name's time only between equal store times", () => {
    const behind = file(commits[0]!, "SUCCESS", T0 - 600_000, T0 + 1000);
    const ahead = file(commits[1]!, "SUCCESS", T0 + 600_000, T0);
    const tieOlder = file(commits[2]!, "FAILURE", T0 + 1, T0 + 1000);
    assert.deepEqual(
      [ahead, behind, tieOlder].sort(newestFirst).map((f) => f.commitId[0]),
      ["c", "a", "b"],
    );
  });
});

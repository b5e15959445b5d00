import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { ledgerAfterCliExport } from "../../../src/cli/cli-lane.ts";
import {
  MAX_ATTEMPTS,
  MAX_FAILED,
  beginAttempt,
  completeExport,
  completeFailure,
  completeSuccess,
  emptyLedger,
  markRebuilt,
  parseLedger,
  planCover,
  prefixAfterReconcile,
  staleCover,
} from "../../../src/ledger/ledger.ts";
import type { Ledger } from "../../../src/ledger/ledger.ts";

const t0 = new Date("2026-11-25T10:00:00Z");
const later = (s: number) => new Date(t0.getTime() + s * 1000);
const backoffSeconds = (n: number) => 10 * 2 ** (n - 1);
const at = (ledger: Partial<Ledger>): Ledger => ({ ...emptyLedger("repo", "main"), ...ledger });
const fail = (path: string) => ({ path, reason: `${path} is gone` });

describe("lane ledger: the cover rule", () => {
  it("regression: any attempt ends a split run the ledger named; only the daemon names a new one", () => {
    const split = at({ work: { run: "r1", commit: "c1", key: "k" } });
    assert.equal(beginAttempt(split, "c1", t0).work, null, "a CLI export in between ends it");
    assert.equal(beginAttempt(split, "c2", t0).work, null);
  });

  it("once a split run is named, the ledger asks for its records to go through every later transition", () => {
    // Transitions of a lane's ledger in any order: attempts by the daemon (split or not) and by
    // the CLI, completions with either status, a rebuilt base. Only the lane's sweep, which this
    // does not model, clears the ask.
    const commit = fc.constantFrom("c1", "c2", "c10", "c1a");
    const op = fc.oneof(
      fc.record({ kind: fc.constant("attempt" as const), to: commit, split: fc.boolean() }),
      fc.record({ kind: fc.constant("cli" as const), to: commit }),
      fc.record({
        kind: fc.constant("complete" as const),
        to: commit,
        ok: fc.boolean(),
        undone: fc.boolean(),
      }),
      fc.record({ kind: fc.constant("rebuilt" as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 12 }), (ops) => {
        let ledger = at({ base: "c0" });
        let named = false;
        for (const o of ops) {
          if (o.kind === "attempt") {
            ledger = beginAttempt(ledger, o.to, t0);
            if (o.split) {
              // What LaneSync records for a split attempt.
              ledger = { ...ledger, work: { run: "r", commit: o.to, key: "k" }, workRecords: true };
              named = true;
            }
          } else if (o.kind === "cli") {
            ledger = ledgerAfterCliExport(
              ledger,
              beginAttempt(ledger, o.to, t0),
              o.to,
              { kind: "sync" },
              { status: "SUCCESS", unfinished: [], listing: undefined },
              { now: t0, backoffSeconds },
            );
          } else if (o.kind === "complete") {
            ledger = completeExport(
              ledger,
              o.to,
              { status: o.ok ? "SUCCESS" : "FAILURE", unfinished: o.undone ? undefined : [] },
              { now: t0, retried: false, backoffSeconds },
            );
          } else {
            ledger = markRebuilt(ledger, "rebuilt from status files");
          }
          assert.equal(ledger.workRecords === true, named, JSON.stringify(ops));
          assert.equal(
            parseLedger(JSON.stringify(ledger), "ledger").workRecords,
            ledger.workRecords,
          );
        }
      }),
    );
  });

  it("with no base, asks for a reconciling full export", () => {
    assert.equal(planCover(emptyLedger("repo", "main"), "c1", t0).kind, "reconcile");
  });

  it("after a SUCCESS, a new HEAD is covered by the diff from the exported commit alone", () => {
    const ledger = completeSuccess(beginAttempt(at({ base: "c0" }), "c1", t0), "c1", t0);
    assert.deepEqual(planCover(ledger, "c2", t0), {
      kind: "diff",
      from: ["c1"],
      retry: [],
      carry: [],
    });
  });

  it("a commit already exported with SUCCESS needs nothing", () => {
    const ledger = completeSuccess(at({ base: "c0" }), "c1", t0);
    assert.deepEqual(planCover(ledger, "c1", t0), { kind: "current" });
  });

  it("an unfinished attempt is covered by its own diff to HEAD, even after HEAD moved back", () => {
    // c1 exported; an export to c2 started and died; then the branch was reset to c1.
    const ledger = beginAttempt(at({ base: "c1", lastSuccess: "c1" }), "c2", t0);
    assert.deepEqual(planCover(ledger, "c1", t0), {
      kind: "diff",
      from: ["c2"],
      retry: [],
      carry: [],
    });
    // Reverted instead: HEAD is a new commit c3 whose tree equals c1's.
    assert.deepEqual(planCover(ledger, "c3", t0), {
      kind: "diff",
      from: ["c1", "c2"],
      retry: [],
      carry: [],
    });
  });

  it("an attempt at HEAD itself adds no diff: the diff from the base covers what it wrote", () => {
    const ledger = beginAttempt(at({ base: "c1", lastSuccess: "c1" }), "c2", t0);
    assert.deepEqual(planCover(ledger, "c2", t0), {
      kind: "diff",
      from: ["c1"],
      retry: [],
      carry: [],
    });
  });

  it("every attempt since the base stays covered until one export completes", () => {
    let ledger = at({ base: "c1", lastSuccess: "c1" });
    for (const c of ["c2", "c3", "c2", "c4"]) ledger = beginAttempt(ledger, c, t0);
    assert.deepEqual(ledger.attempts, ["c2", "c3", "c4"]);
    const plan = planCover(ledger, "c5", t0);
    assert.equal(plan.kind, "diff");
    assert.deepEqual(plan.kind === "diff" && plan.from, ["c1", "c2", "c3", "c4"]);
    assert.deepEqual(completeSuccess(ledger, "c5", t0).attempts, []);
  });

  it("too many unfinished attempts make a full listing cheaper than their diffs", () => {
    let ledger = at({ base: "c0" });
    for (let i = 0; i <= MAX_ATTEMPTS; i++) ledger = beginAttempt(ledger, `c${i + 1}`, t0);
    assert.equal(planCover(ledger, "c99", t0).kind, "reconcile");
  });

  it("after a FAILURE, the attempt is the base and only the failed paths are retried", () => {
    const begun = beginAttempt(at({ base: "c1", lastSuccess: "c1" }), "c2", t0);
    const failed = completeFailure(begun, "c2", [fail("b/x"), fail("a/y")], {
      now: t0,
      retried: false,
      backoffSeconds,
    });
    assert.equal(failed.base, "c2");
    assert.equal(failed.lastSuccess, "c1", "a FAILURE is no SUCCESS");
    assert.deepEqual(failed.attempts, []);
    assert.deepEqual(
      failed.failed.map((f) => f.path),
      ["a/y", "b/x"],
      "kept in path order",
    );
    // HEAD unchanged: before the back-off ends there is nothing to do; after it, only the failed paths.
    assert.deepEqual(planCover(failed, "c2", later(5)), { kind: "wait", until: later(10) });
    assert.deepEqual(planCover(failed, "c2", later(10)), {
      kind: "diff",
      from: [],
      retry: failed.failed,
      carry: [],
    });
  });

  it("a new commit during the back-off is exported at once, the failed paths carried along", () => {
    const failed = completeFailure(at({ base: "c1" }), "c2", [fail("x")], {
      now: t0,
      retried: false,
      backoffSeconds,
    });
    assert.deepEqual(planCover(failed, "c3", later(1)), {
      kind: "diff",
      from: ["c2"],
      retry: [],
      carry: failed.failed,
    });
  });

  it("failing again after a retry backs off longer; carrying them does not", () => {
    const opts = (now: Date, retried: boolean) => ({ now, retried, backoffSeconds });
    const first = completeFailure(at({ base: "c1" }), "c2", [fail("x")], opts(t0, false));
    assert.deepEqual(first.retry, { count: 1, notBefore: later(10).toISOString() });
    const carried = completeFailure(first, "c3", [fail("x")], opts(later(2), false));
    assert.deepEqual(carried.retry, first.retry);
    const again = completeFailure(carried, "c3", [fail("x")], opts(later(11), true));
    assert.deepEqual(again.retry, { count: 2, notBefore: later(31).toISOString() });
    assert.equal(completeSuccess(again, "c3", later(40)).retry, null);
  });

  it("a FAILURE whose undone paths cannot be listed leaves the attempt unfinished", () => {
    const begun = beginAttempt(at({ base: "c1", lastSuccess: "c1" }), "c2", t0);
    const opts = { now: t0, retried: false, backoffSeconds };
    for (const unfinished of [
      undefined,
      Array.from({ length: MAX_FAILED + 1 }, (_, i) => fail(`p${i}`)),
    ]) {
      const after = completeFailure(begun, "c2", unfinished, opts);
      assert.equal(after.base, "c1");
      assert.deepEqual(after.attempts, ["c2"]);
      assert.deepEqual(planCover(after, "c3", t0), {
        kind: "diff",
        from: ["c1", "c2"],
        retry: [],
        carry: [],
      });
    }
  });

  it("every write bumps seq", () => {
    const a = emptyLedger("repo", "main");
    const b = beginAttempt(a, "c1", t0);
    const c = completeSuccess(b, "c1", t0);
    assert.ok(a.seq < b.seq && b.seq < c.seq);
  });

  it("reads back what it writes and names what is wrong in a damaged record", () => {
    const ledger = completeFailure(at({ base: "c1" }), "c2", [fail("x")], {
      now: t0,
      retried: false,
      backoffSeconds,
    });
    assert.deepEqual(parseLedger(JSON.stringify(ledger), "test"), ledger);
    assert.throws(() => parseLedger("{", "s3://b/_lakefs_mirror/ledger.json"), {
      code: "LM_LEDGER",
      message: /ledger\.json is not JSON/,
    });
    assert.throws(() => parseLedger(JSON.stringify({ ...ledger, format: 2 }), "x"), /format 2/);
    assert.throws(
      () => parseLedger(JSON.stringify({ ...ledger, attempts: ["not a commit!"] }), "x"),
      /attempts/,
    );
    assert.throws(
      () => parseLedger(JSON.stringify({ ...ledger, failed: [{ path: 1 }] }), "x"),
      /failed/,
    );
  });
});

describe("lane ledger: what proves a base", () => {
  it("a base rebuilt without this lane's ledger is checked by a guarded reconcile before any diff starts from it", () => {
    // Rebuilt from status files: the newest SUCCESS may be a whole export that deleted nothing.
    const rebuilt = markRebuilt(at({ base: "c2", lastSuccess: "c2" }), "rebuilt from status files");
    const plan = planCover(rebuilt, "c2", t0);
    assert.equal(plan.kind, "reconcile");
    assert.match(
      plan.kind === "reconcile" ? plan.reason : "",
      /c2 is not proven \(rebuilt from status files\)/,
    );
    assert.equal(planCover(rebuilt, "c3", t0).kind, "reconcile");
    // A prefix once found empty is not known to be empty of others' keys any more: guarded.
    assert.equal(markRebuilt(at({ base: "c2", prefix: "empty" }), "x").prefix, "owned");
    assert.equal(markRebuilt(at({ base: "c2", prefix: "foreign" }), "x").prefix, "foreign");
    // The reconcile proves it, whether it succeeds or fails path by path; a refusal does not.
    const opts = { now: t0, retried: true, backoffSeconds };
    const begun = beginAttempt(rebuilt, "c2", t0);
    assert.equal(completeSuccess(begun, "c2", t0).rebuilt, null);
    assert.equal(completeFailure(begun, "c2", [fail("x")], opts).rebuilt, null);
    assert.equal(
      completeFailure(begun, "c2", undefined, opts).rebuilt,
      "rebuilt from status files",
    );
  });

  it("what may be stale beside a commit: the diffs from the base and every attempt, and the failed paths", () => {
    const failed = completeFailure(at({ base: "c1" }), "c2", [fail("x")], {
      now: t0,
      retried: false,
      backoffSeconds,
    });
    const ledger = beginAttempt(failed, "c3", t0);
    assert.deepEqual(staleCover(ledger, "c4"), { from: ["c2", "c3"], failed: ledger.failed });
    assert.deepEqual(staleCover(ledger, "c3"), { from: ["c2"], failed: ledger.failed });
    assert.ok("reconcile" in staleCover(emptyLedger("repo", "main"), "c1"));
  });

  it("a foreign prefix becomes owned only on a listing walked to its end that found nothing foreign", () => {
    assert.equal(prefixAfterReconcile("foreign", undefined), "foreign");
    assert.equal(prefixAfterReconcile("foreign", { kept: 2 }), "foreign");
    assert.equal(prefixAfterReconcile("foreign", { kept: 0 }), "owned");
    assert.equal(prefixAfterReconcile("empty", undefined), "empty");
    assert.equal(prefixAfterReconcile("owned", { kept: 5 }), "owned");
  });

  it("reads a ledger of an older version, which has neither rebuilt nor epoch", () => {
    const { rebuilt: _r, epoch: _e, ...old } = completeSuccess(at({ base: "c0" }), "c1", t0);
    assert.equal(parseLedger(JSON.stringify(old), "x").base, "c1");
    assert.throws(() => parseLedger(JSON.stringify({ ...old, epoch: "one" }), "x"), /epoch/);
    assert.throws(() => parseLedger(JSON.stringify({ ...old, rebuilt: 3 }), "x"), /rebuilt/);
  });
});

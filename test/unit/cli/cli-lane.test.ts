import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ledgerAfterCliExport } from "../../../src/cli/cli-lane.ts";
import { beginAttempt, completeFailure, emptyLedger } from "../../../src/ledger/ledger.ts";
import type { Ledger } from "../../../src/ledger/ledger.ts";

const now = new Date("2026-11-25T10:00:00Z");
const options = { now, backoffSeconds: () => 10 };
const at = (l: Partial<Ledger>): Ledger => ({ ...emptyLedger("repo", "main"), ...l });
const ok = { status: "SUCCESS" as const, unfinished: [], listing: undefined };

describe("a one-off export's record in a lane's ledger", () => {
  const held = at({ base: "c1", lastSuccess: "c1", seq: 4 });

  it("a diff from exactly the commit the destination holds becomes the base", () => {
    const attempt = beginAttempt(held, "c2", now);
    const after = ledgerAfterCliExport(
      held,
      attempt,
      "c2",
      { kind: "diff", from: "c1" },
      ok,
      options,
    );
    assert.equal(after.base, "c2");
    assert.deepEqual(after.attempts, []);
  });

  it("a diff from any other commit, or from a base with attempts or failed paths, stays an attempt", () => {
    const withFailed = completeFailure(held, "c1", [{ path: "x", reason: "gone" }], {
      ...options,
      retried: false,
    });
    for (const before of [held, beginAttempt(held, "c9", now), withFailed]) {
      const from = before === held ? "c0" : "c1";
      const attempt = beginAttempt(before, "c2", now);
      const after = ledgerAfterCliExport(
        before,
        attempt,
        "c2",
        { kind: "diff", from },
        ok,
        options,
      );
      assert.equal(after, attempt);
      assert.ok(after.attempts.includes("c2"));
    }
  });

  it("a whole export becomes the base only when it also deleted what the ledger says may be stale", () => {
    const attempt = beginAttempt(held, "c2", now);
    const stale = { from: ["c1"], failed: [] };
    assert.equal(
      ledgerAfterCliExport(held, attempt, "c2", { kind: "whole", stale }, ok, options).base,
      "c2",
    );
    assert.equal(
      ledgerAfterCliExport(held, attempt, "c2", { kind: "whole", stale: undefined }, ok, options),
      attempt,
    );
  });

  it("a FAILURE that gave up stays an attempt; one with its failed paths listed records them", () => {
    const attempt = beginAttempt(held, "c2", now);
    const run = { kind: "sync" as const };
    const gaveUp = { status: "FAILURE" as const, unfinished: undefined, listing: undefined };
    const after = ledgerAfterCliExport(held, attempt, "c2", run, gaveUp, options);
    assert.equal(after.base, "c1");
    assert.ok(after.attempts.includes("c2"));
    const listed = { ...gaveUp, unfinished: [{ path: "p", reason: "503" }] };
    const failed = ledgerAfterCliExport(held, attempt, "c2", run, listed, options);
    assert.equal(failed.base, "c2");
    assert.deepEqual(failed.failed, [{ path: "p", reason: "503" }]);
  });

  it("a --sync that walked a foreign prefix whole and found nothing foreign makes it the lane's own", () => {
    const foreign = at({ base: "c1", prefix: "foreign" });
    const attempt = beginAttempt(foreign, "c2", now);
    const walked = { ...ok, listing: { keys: 3, extra: 0, kept: 0 } };
    assert.equal(
      ledgerAfterCliExport(foreign, attempt, "c2", { kind: "sync" }, walked, options).prefix,
      "owned",
    );
    assert.equal(
      ledgerAfterCliExport(foreign, attempt, "c2", { kind: "sync" }, ok, options).prefix,
      "foreign",
    );
  });
});

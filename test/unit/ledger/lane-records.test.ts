import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { liveRecordLane, nestedRecordRoot, recordLane } from "../../../src/ledger/lane-records.ts";

describe("lane records", () => {
  it("a lane's records below a destination's root are its ledger and its lease under _lakefs_mirror/", () => {
    assert.equal(nestedRecordRoot("sub/_lakefs_mirror/ledger.json"), "sub/");
    assert.equal(nestedRecordRoot("a/b/_lakefs_mirror/lease.json"), "a/b/");
    // The root's own records, other names, and look-alikes are not a lane below.
    assert.equal(nestedRecordRoot("_lakefs_mirror/ledger.json"), undefined);
    assert.equal(nestedRecordRoot("sub/_lakefs_mirror/notes.json"), undefined);
    assert.equal(nestedRecordRoot("sub/x_lakefs_mirror/ledger.json"), undefined);
  });

  it("a lease names a lane only until it expires; a ledger always; anything else never", () => {
    const lane = { format: 1, repository: "r", branch: "main" };
    const lease = (expiresAt: string) => JSON.stringify({ ...lane, expiresAt });
    const now = Date.parse("2026-11-25T10:00:00Z");
    assert.deepEqual(
      liveRecordLane("x/_lakefs_mirror/lease.json", lease("2026-11-25T10:00:01Z"), now),
      {
        repository: "r",
        branch: "main",
      },
    );
    assert.equal(
      liveRecordLane("x/_lakefs_mirror/lease.json", lease("2026-11-25T09:59:59Z"), now),
      undefined,
    );
    assert.deepEqual(liveRecordLane("x/_lakefs_mirror/ledger.json", JSON.stringify(lane), now), {
      repository: "r",
      branch: "main",
    });
    assert.equal(recordLane("not json"), undefined);
    assert.equal(recordLane(JSON.stringify({ repository: "r", branch: "b" })), undefined);
  });
});

import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { CheckpointStore } from "../../../src/daemon/checkpoint.ts";

const dir = () => join(mkdtempSync(join(tmpdir(), "lakefs-mirror-store-")), "checkpoint");
const event = (commitId: string, receivedAt: string) => ({
  commitId,
  eventType: "post-commit",
  source: "webhook" as const,
  receivedAt,
});

describe("checkpoint store", () => {
  it("keeps ledgers, pending events and its identity across a reopen", async () => {
    const path = dir();
    const a = new CheckpointStore(path);
    await a.open();
    const identity = await a.identity();
    await a.recordPending("lane-1", event("c1", "2026-11-25T10:00:00Z"));
    await a.putLedger("lane-1", '{"seq":1}');
    await a.close();
    const b = new CheckpointStore(path);
    await b.open();
    assert.equal(await b.identity(), identity);
    assert.equal(await b.ledger("lane-1"), '{"seq":1}');
    assert.deepEqual([...(await b.allPending()).keys()], ["lane-1"]);
    await b.close();
  });

  it("clears a pending event only when an export that started after it completed", async () => {
    const s = new CheckpointStore(dir());
    await s.open();
    await s.recordPending("lane", event("c2", "2026-11-25T10:00:05Z"));
    await s.putLedger("lane", "{}", new Date("2026-11-25T10:00:04Z"));
    assert.ok(await s.pending("lane"), "the export started before the event: still pending");
    await s.putLedger("lane", "{}", new Date("2026-11-25T10:00:06Z"));
    assert.equal(await s.pending("lane"), undefined);
    await s.close();
  });

  it("refuses a second process on the same path, and use after close, with coded errors", async () => {
    const path = dir();
    const a = new CheckpointStore(path);
    await Promise.all([a.open(), a.open()]);
    await assert.rejects(new CheckpointStore(path).open(), {
      code: "LM_CHECKPOINT",
      message: /locked by another process/,
    });
    await Promise.all([a.close(), a.close()]);
    assert.equal(a.status, "closed");
    await assert.rejects(a.ledger("x"), {
      code: "LM_CLOSED",
      message: /checkpoint store is closed/,
    });
    await assert.rejects(a.open(), { code: "LM_CLOSED" });
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { measureLag, observeLag } from "../../../src/daemon/lag.ts";
import { Scheduler } from "../../../src/daemon/scheduler.ts";
import pino from "pino";
import type { LakefsClient } from "../../../src/lakefs/client.ts";
import type { Commit } from "../../../src/lakefs/types.ts";

const now = Date.now() / 1000;

/** lakeFS's commit log of a branch (newest first, in pages), as data: the one call lag reads. */
function commitLog(ids: string[], ageSeconds: (i: number) => number, pageSize = 2) {
  const commits: Commit[] = ids.map((id, i) => ({
    id,
    parents: [],
    committer: "t",
    message: id,
    creation_date: now - ageSeconds(i),
    meta_range_id: "",
  }));
  return {
    async *logCommits() {
      for (let i = 0; i < commits.length; i += pageSize)
        yield await Promise.resolve(commits.slice(i, i + pageSize));
    },
  } as unknown as LakefsClient;
}

describe("lag measurement", () => {
  it("counts the commits above the mirrored one, aged by the oldest of them", async () => {
    // HEAD c5, made 10 s ago; c3, the oldest unexported, 50 s ago; c2 is mirrored.
    const log = commitLog(["c5", "c4", "c3", "c2", "c1"], (i) => 10 + i * 20);
    const lag = await measureLag(log, "repo", "c2", "c5");
    assert.equal(lag.commitsBehind, 3);
    assert.ok(Math.abs(lag.lagSeconds - 50) < 2, String(lag.lagSeconds));
  });

  it("is zero when the mirror holds HEAD, without reading the log", async () => {
    const lag = await measureLag({} as LakefsClient, "repo", "c9", "c9");
    assert.deepEqual(lag, { commitsBehind: 0, lagSeconds: 0 });
  });

  it("after a hard reset away from the mirrored commit, counts one move with no age", async () => {
    const log = commitLog(["c2", "c1"], () => 1000);
    assert.deepEqual(await measureLag(log, "repo", "gone", "c2"), {
      commitsBehind: 1,
      lagSeconds: 0,
    });
    assert.deepEqual(await measureLag(log, "repo", undefined, "c2"), {
      commitsBehind: 1,
      lagSeconds: 0,
    });
  });

  it("where history cannot age the lag (a reset), counts it from when the lane was first seen behind, and clears it once caught up", async (t) => {
    t.mock.timers.enable({ apis: ["Date"], now: 1_000_000 });
    const scheduler = new Scheduler({
      maxParallelLanes: 1,
      retryBaseSeconds: 1,
      retryMaxSeconds: 1,
      run: () => Promise.resolve("done" as const),
      logger: pino({ level: "silent" }),
    });
    const lane = scheduler.lane({ repository: "repo", branch: "main", destination: "s3://b/" });
    const log = commitLog(["c2", "c1"], () => 1000);
    const first = await observeLag(log, lane, "gone", "c2");
    assert.deepEqual(first, { commitsBehind: 1, lagSeconds: 0 });
    t.mock.timers.tick(45_000);
    const later = await observeLag(log, lane, "gone", "c2");
    assert.equal(later.commitsBehind, 1);
    assert.equal(later.lagSeconds, 45, "at least as long as it has been seen behind");
    assert.equal(lane.lagSeconds, 45);
    assert.equal(lane.headCommit, "c2");
    await observeLag(log, lane, "c2", "c2");
    assert.deepEqual([lane.commitsBehind, lane.lagSeconds, lane.behindSince], [0, 0, undefined]);
  });
});

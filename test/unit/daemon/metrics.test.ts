import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pino from "pino";
import { Metrics } from "../../../src/daemon/metrics.ts";
import { Scheduler } from "../../../src/daemon/scheduler.ts";
import type { LaneProgress } from "../../../src/daemon/scheduler.ts";

describe("metrics", () => {
  it("shows each lane's stall and seconds without progress when scraped, and drops lanes gone since", async () => {
    const scheduler = new Scheduler({
      maxParallelLanes: 1,
      retryBaseSeconds: 1,
      retryMaxSeconds: 1,
      run: () => Promise.resolve("done"),
      logger: pino({ level: "silent" }),
    });
    const hung = scheduler.lane({ repository: "r", branch: "hung", destination: "s3://b/hung/" });
    const fine = scheduler.lane({ repository: "r", branch: "fine", destination: "s3://b/fine/" });
    const metrics = new Metrics();
    let progress: LaneProgress[] = [
      { lane: hung, secondsWithoutProgress: 312.5, stalled: true },
      { lane: fine, secondsWithoutProgress: 0, stalled: false },
    ];
    metrics.watchProgress(() => progress);
    const sample = (text: string, name: string, branch: string) =>
      new RegExp(
        `^${name}\\{repository="r",branch="${branch}",destination="s3://b/${branch}/"\\} (\\S+)$`,
        "m",
      ).exec(text)?.[1];

    const first = await metrics.registry.metrics();
    assert.equal(sample(first, "lakefs_mirror_lane_stalled", "hung"), "1");
    assert.equal(sample(first, "lakefs_mirror_lane_no_progress_seconds", "hung"), "312.5");
    assert.equal(sample(first, "lakefs_mirror_lane_stalled", "fine"), "0");
    assert.equal(sample(first, "lakefs_mirror_lane_no_progress_seconds", "fine"), "0");

    // Read at every scrape: the hung lane moved again, the other one left this daemon.
    progress = [{ lane: hung, secondsWithoutProgress: 1, stalled: false }];
    const second = await metrics.registry.metrics();
    assert.equal(sample(second, "lakefs_mirror_lane_stalled", "hung"), "0");
    assert.equal(sample(second, "lakefs_mirror_lane_no_progress_seconds", "hung"), "1");
    assert.equal(sample(second, "lakefs_mirror_lane_stalled", "fine"), undefined);
    await scheduler.close(0);
  });
});

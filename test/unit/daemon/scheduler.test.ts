import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pino from "pino";
import { Scheduler } from "../../../src/daemon/scheduler.ts";
import type { Lane } from "../../../src/daemon/scheduler.ts";

const logger = pino({ level: "silent" });
const key = (branch: string) => ({ repository: "repo", branch, destination: `s3://b/${branch}/` });

/** A lane runner the test releases by hand: stands in for an export, which is not under test here. */
function gatedRunner() {
  const runs: string[] = [];
  let release: (() => void)[] = [];
  return {
    runs,
    run: (lane: Lane) => {
      runs.push(lane.branch);
      return new Promise<"done">((resolve) => release.push(() => resolve("done")));
    },
    releaseAll() {
      const r = release;
      release = [];
      r.forEach((f) => f());
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

describe("scheduler", () => {
  it("coalesces events for a busy lane into one more run", async () => {
    const gate = gatedRunner();
    const s = new Scheduler({
      maxParallelLanes: 2,
      retryBaseSeconds: 1,
      retryMaxSeconds: 1,
      run: gate.run,
      logger,
    });
    const lane = s.lane(key("main"));
    const first = s.notify(lane);
    await tick();
    const later = [s.notify(lane), s.notify(lane), s.notify(lane)];
    const covered = s.covered(lane, later.at(-1)!);
    gate.releaseAll();
    await tick();
    await tick();
    assert.deepEqual(
      gate.runs,
      ["main", "main"],
      "one run for the first event, one for the three that came during it",
    );
    assert.equal(lane.covered, first);
    gate.releaseAll();
    await covered;
    assert.equal(lane.state, "idle");
    await s.close(0);
  });

  it("runs at most maxParallelLanes lanes at once", async () => {
    const gate = gatedRunner();
    const s = new Scheduler({
      maxParallelLanes: 2,
      retryBaseSeconds: 1,
      retryMaxSeconds: 1,
      run: gate.run,
      logger,
    });
    for (const b of ["a", "b", "c"]) s.notify(s.lane(key(b)));
    await tick();
    assert.equal(s.running, 2);
    assert.equal(s.lanes.get(s.lane(key("c")).id)?.state, "queued");
    gate.releaseAll();
    await tick();
    await tick();
    assert.deepEqual(gate.runs, ["a", "b", "c"]);
    gate.releaseAll();
    await s.close(0);
  });

  it("backs off after a failed export and retries", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    let calls = 0;
    const s = new Scheduler({
      maxParallelLanes: 1,
      retryBaseSeconds: 5,
      retryMaxSeconds: 60,
      logger,
      // Injected fault: the first export fails.
      run: () =>
        ++calls === 1
          ? Promise.reject(new Error("lakeFS unreachable"))
          : Promise.resolve("done" as const),
    });
    const lane = s.lane(key("main"));
    const seq = s.notify(lane);
    await tick();
    assert.equal(lane.state, "backoff");
    assert.equal(lane.lastError, "lakeFS unreachable");
    t.mock.timers.tick(5_000);
    await s.covered(lane, seq);
    assert.equal(calls, 2);
    assert.equal(lane.lastError, undefined);
    await s.close(0);
  });
});

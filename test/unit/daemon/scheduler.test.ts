import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pino from "pino";
import { Scheduler } from "../../../src/daemon/scheduler.ts";
import type { LaneOutcome } from "../../../src/daemon/scheduler.ts";
import type { Lane } from "../../../src/daemon/lane.ts";

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

  it("keeps the error a run reports until a run leaves the lane current", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    // Made when each run ends: the timers are mocked, the clock is not.
    const outcomes: (() => LaneOutcome)[] = [
      () => ({ retryAt: new Date(Date.now() + 1_000), error: "1 failed: a.parquet" }),
      // A run that only waits for the failing path's back-off says nothing new.
      () => ({ retryAt: new Date(Date.now() + 1_000) }),
      () => "done",
    ];
    const s = new Scheduler({
      maxParallelLanes: 1,
      retryBaseSeconds: 1,
      retryMaxSeconds: 1,
      logger,
      run: () => Promise.resolve(outcomes.shift()!()),
    });
    const lane = s.lane(key("main"));
    s.notify(lane);
    await tick();
    assert.equal(lane.state, "idle");
    assert.equal(lane.lastError, "1 failed: a.parquet");
    t.mock.timers.tick(1_000);
    await tick();
    assert.equal(outcomes.length, 1, "the second run came at its retry time");
    assert.equal(lane.lastError, "1 failed: a.parquet");
    t.mock.timers.tick(1_000);
    await tick();
    assert.equal(outcomes.length, 0);
    assert.equal(lane.lastError, undefined);
    assert.equal(lane.failures, 0);
    await s.close(0);
  });

  it("a lane whose branch was deleted and created again during its run runs again, and covers nothing new before it does", async () => {
    const outcomes: ("ended" | "done")[] = ["ended", "done"];
    let release: (() => void) | undefined;
    const runs: number[] = [];
    const s = new Scheduler({
      maxParallelLanes: 1,
      retryBaseSeconds: 1,
      retryMaxSeconds: 1,
      logger,
      run: (lane) => {
        runs.push(lane.requested);
        const outcome = outcomes.shift() ?? "done";
        return new Promise((resolve) => (release = () => resolve(outcome)));
      },
    });
    const lane = s.lane(key("tmp"));
    const deleted = s.notify(lane);
    await tick();
    // The branch is created again while the run that finds it gone is still running.
    const created = s.notify(lane);
    let createdCovered = false;
    void s.covered(lane, created).then(() => (createdCovered = true));
    const deletedCovered = s.covered(lane, deleted);
    release!();
    await deletedCovered;
    await tick();
    assert.equal(createdCovered, false, "the re-created branch's event waits for its own export");
    assert.equal(runs.length, 2, "a second run for the re-created branch");
    release!();
    await tick();
    await tick();
    assert.equal(createdCovered, true);
    assert.equal(s.lanes.get(lane.id)?.state, "idle");
  });

  it("an ended lane leaves the scheduler, and a later event makes a new lane", async () => {
    let release: (() => void) | undefined;
    const ended: string[] = [];
    const s = new Scheduler({
      maxParallelLanes: 1,
      retryBaseSeconds: 1,
      retryMaxSeconds: 1,
      logger,
      run: () => new Promise((resolve) => (release = () => resolve("ended"))),
      onEnded: (l) => ended.push(l.branch),
    });
    const lane = s.lane(key("gone"));
    const seq = s.notify(lane);
    await tick();
    release!();
    await s.covered(lane, seq);
    await tick();
    assert.equal(s.lanes.size, 0);
    assert.deepEqual(ended, ["gone"]);
    const again = s.lane(key("gone"));
    assert.notEqual(again, lane);
    assert.equal(again.covered, 0, "nothing of the new lane is covered yet");
  });
});

describe("scheduler: exports without progress", () => {
  /** The scheduler's log lines, to see what it said and how often. */
  function capture() {
    type Line = { level: number; msg: string; secondsWithoutProgress?: number };
    const lines: Line[] = [];
    const log = pino(
      { level: "info" },
      { write: (l: string) => lines.push(JSON.parse(l) as Line) },
    );
    return { lines, log, said: (msg: string) => lines.filter((l) => l.msg === msg).length };
  }

  it("shows a lane whose export makes no progress as stalled after stallSeconds, once in the log, and not once a task ends", async (t) => {
    t.mock.timers.enable({ apis: ["setInterval", "setTimeout", "Date"], now: 1_000_000 });
    const { log, lines, said } = capture();
    const gate = gatedRunner();
    const s = new Scheduler({
      maxParallelLanes: 1,
      retryBaseSeconds: 1,
      retryMaxSeconds: 1,
      stallSeconds: 10,
      run: gate.run,
      logger: log,
    });
    const lane = s.lane(key("main"));
    s.notify(lane);
    await tick();
    assert.equal(lane.state, "exporting");
    // Starting is progress.
    assert.equal(lane.lastProgressAt?.getTime(), 1_000_000);
    t.mock.timers.tick(9_000);
    assert.deepEqual(s.progressOf(lane), { secondsWithoutProgress: 9, stalled: false });
    t.mock.timers.tick(1_000);
    assert.deepEqual(s.progressOf(lane), { secondsWithoutProgress: 10, stalled: true });
    assert.deepEqual(s.progress(), [{ lane, secondsWithoutProgress: 10, stalled: true }]);
    t.mock.timers.tick(20_000);
    assert.equal(said("lane export is making no progress"), 1, JSON.stringify(lines));
    assert.ok(lines[0]!.secondsWithoutProgress! >= 10);

    // A task of the export ended (what the exporter's onProgress tells the scheduler).
    s.progressed(lane);
    assert.deepEqual(s.progressOf(lane), { secondsWithoutProgress: 0, stalled: false });
    t.mock.timers.tick(3_000);
    assert.equal(said("lane export is making progress again"), 1);
    assert.equal(s.progressOf(lane).stalled, false);

    // A lane that is not exporting is never stalled, however long ago its last progress was.
    gate.releaseAll();
    await tick();
    await tick();
    assert.equal(lane.state, "idle");
    // A late progress report of a run that ended is not progress of the lane.
    const last = lane.lastProgressAt?.getTime();
    t.mock.timers.tick(5_000);
    s.progressed(lane);
    assert.equal(lane.lastProgressAt?.getTime(), last);
    t.mock.timers.tick(60_000);
    assert.deepEqual(s.progressOf(lane), { secondsWithoutProgress: 0, stalled: false });
    assert.equal(said("lane export is making no progress"), 1);
    await s.close(0);
  });

  it("refuses a stall time that is not positive", () => {
    const make = (stallSeconds: number) =>
      new Scheduler({
        maxParallelLanes: 1,
        retryBaseSeconds: 1,
        retryMaxSeconds: 1,
        stallSeconds,
        run: () => Promise.resolve("done"),
        logger,
      });
    assert.throws(() => make(0), /stallSeconds must be > 0, got 0/);
    assert.throws(() => make(Number.NaN), /stallSeconds must be > 0/);
  });
});

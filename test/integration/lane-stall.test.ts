import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../../src/config.ts";
import { Daemon } from "../../src/daemon/daemon.ts";
import type { LaneStatus } from "../../src/daemon/daemon.ts";
import {
  commitEvent,
  daemonEnv,
  laneStatus,
  postWebhook,
  waitFor,
  waitForExported,
  writeDaemonConfig,
} from "../helpers/daemon.ts";
import { startFaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
import { commitObjects, readKey, silentLogger } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

/** A lane's sample of a lane gauge, from the daemon's /metrics. */
async function laneGauge(url: string, name: string, branch: string): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text
    .split("\n")
    .find((l) => l.startsWith(`${name}{`) && l.includes(`branch="${branch}"`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

describe("a lane whose export makes no progress", () => {
  let stack: Stack;
  const closers: (() => Promise<unknown>)[] = [];
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    for (const c of closers.reverse()) await c();
    await stack.close();
  });

  it("shows as stalled in /status and the metrics while its writes hang, and clears once a task ends again", async () => {
    const repo = await createRepo(stack, "stall");
    const bucket = await createBucket(stack, "stall");
    const objects = [
      ...Array.from({ length: 8 }, (_, i) => ({ path: `a-${i}.txt`, content: `a ${i}` })),
      { path: "stall-one.txt", content: "one" },
      { path: "stall-two.txt", content: "two" },
    ];
    const head = await commitObjects(stack, repo, "main", objects);

    // Injected fault: S3 requests that name `stalling` get no answer, retries included, until
    // the test names another key. Everything else (lease, ledger, listings) passes.
    let stalling = "/stall-one.txt";
    const s3 = await startFaultInjectingProxy(stack.env.AWS_ENDPOINT_URL, {
      flavor: "s3",
      rates: { stall: 1 },
      eligible: (_method, url) => stalling !== "" && url.split("?")[0]!.endsWith(stalling),
    });
    closers.push(() => s3.close());
    const { file } = writeDaemonConfig(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      extra: {
        // One copy at a time, in path order: a-*, then stall-one, then stall-two.
        export: { concurrency: 1 },
        scheduler: {
          maxParallelLanes: 1,
          retryBaseSeconds: 1,
          retryMaxSeconds: 2,
          stallSeconds: 2,
        },
        s3: { idleTimeoutMs: 4000, maxAttempts: 1 },
        retry: { retries: 20, minTimeoutMs: 20, maxTimeoutMs: 200, maxRetryTimeMs: 120_000 },
        shutdown: { graceSeconds: 1 },
      },
    });
    const config = loadConfig({
      env: { ...daemonEnv(stack), AWS_ENDPOINT_URL: s3.url, LOG_LEVEL: "silent" },
      file,
    });
    const daemon = new Daemon(config, silentLogger);
    closers.push(() => daemon.close());
    await daemon.start();
    const url = daemon.http.address;
    const res = await postWebhook(url, commitEvent(repo, "main", head), {
      authorization: `Bearer ${stack.env.LAKEFSACTION_MIRROR_TOKEN}`,
    });
    assert.equal(res.status, 202);
    const lane = async (): Promise<LaneStatus | undefined> =>
      (await laneStatus(url)).find((l) => l.repository === repo && l.branch === "main");

    // The copy of stall-one hangs: no task ends for the stall time while the export runs.
    // (On a loaded machine the lane may also stall before it gets there: only a stall while
    // stall-one's copy hangs counts.)
    const stalled = await waitFor("the lane stalled", async () => {
      const l = await lane();
      return l?.stalled && s3.injected().stall >= 1 ? l : undefined;
    });
    assert.equal(stalled.state, "exporting");
    assert.ok(stalled.lastProgressAt !== null);
    assert.ok(Date.now() - Date.parse(stalled.lastProgressAt) >= 2000);
    assert.equal(await laneGauge(url, "lakefs_mirror_lane_stalled", "main"), 1);
    assert.ok((await laneGauge(url, "lakefs_mirror_lane_no_progress_seconds", "main"))! >= 2);

    // stall-one goes through on its next try; stall-two hangs next, so the export is still
    // running when its progress shows.
    const released = Date.now();
    stalling = "/stall-two.txt";
    await waitFor("stall-one copied", async () =>
      (await readKey(stack, bucket, "stall-one.txt")).toString() === "one" ? true : undefined,
    );
    const moving = await waitFor("the lane moving again", async () => {
      const l = await lane();
      return l && !l.stalled && Date.parse(l.lastProgressAt ?? "") >= released ? l : undefined;
    });
    assert.equal(moving.state, "exporting");
    assert.equal(await laneGauge(url, "lakefs_mirror_lane_stalled", "main"), 0);

    // stall-two hangs in turn; once it may pass, the export ends with SUCCESS.
    await waitFor(
      "the lane stalled on stall-two",
      async () => (await lane())?.stalled && s3.injected().stall >= 2,
    );
    stalling = "";
    const done = await waitForExported(url, repo, "main", head);
    assert.equal(done.stalled, false);
    assert.equal(await laneGauge(url, "lakefs_mirror_lane_stalled", "main"), 0);
    assert.equal(await laneGauge(url, "lakefs_mirror_lane_no_progress_seconds", "main"), 0);
    assert.equal((await readKey(stack, bucket, "stall-two.txt")).toString(), "two");
    assert.ok(s3.injected().stall >= 2, JSON.stringify(s3.injected()));
  });
});

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { laneStatus, startDaemon, waitFor } from "../helpers/daemon.ts";
import { commitObjects } from "../helpers/mirror.ts";
import { startScriptedProxy } from "../helpers/scripted-proxy.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Replication lag as /status and the metrics show it while lanes wait and export. */
describe("replication lag", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await stack.close();
  });

  it("a lane waiting behind a long export, and the long export itself, show their lag growing instead of the value from their last run", async (t) => {
    const repo = await createRepo(stack, "lag");
    const slow = await createBucket(stack, "lag-slow");
    const waiting = await createBucket(stack, "lag-waiting");
    await stack.lakefs.createBranch(repo, "other", "main");
    await commitObjects(
      stack,
      repo,
      "main",
      Array.from({ length: 12 }, (_, i) => ({ path: `data/${i}.txt`, content: `m${i}` })),
    );
    const behind = await commitObjects(stack, repo, "other", [{ path: "o.txt", content: "o" }]);
    // Every data copy into the slow bucket takes a second: the main lane exports for a while,
    // one copy at a time, and holds the only slot.
    const s3 = await startScriptedProxy(stack.env.AWS_ENDPOINT_URL, (method, path) =>
      method === "PUT" && path.startsWith(`/${slow}/data/`) ? { delayMs: 1000 } : undefined,
    );
    t.after(() => s3.close());
    const { daemon, url } = await startDaemon(stack, {
      mirrors: [
        { repository: repo, branches: ["main"], destination: `s3://${slow}/` },
        { repository: repo, branches: ["other"], destination: `s3://${waiting}/` },
      ],
      reconcileIntervalSeconds: 1,
      env: { AWS_ENDPOINT_URL: s3.url },
      extra: {
        scheduler: { maxParallelLanes: 1, retryBaseSeconds: 1, retryMaxSeconds: 2 },
        export: { concurrency: 1 },
      },
    });
    t.after(() => daemon.close());
    const lanes = async () => {
      const all = await laneStatus(url);
      return {
        main: all.find((l) => l.branch === "main"),
        other: all.find((l) => l.branch === "other"),
      };
    };
    // The main lane took the slot (it was matched first) and the other one waits.
    const first = await waitFor(
      "main exporting, other queued behind it with its lag known",
      async () => {
        const { main, other } = await lanes();
        return main?.state === "exporting" && other?.state === "queued" && other.commitsBehind > 0
          ? { main, other }
          : undefined;
      },
      30_000,
    );
    // What /status shows over the next seconds (reported in the test's diagnostics).
    const t0 = Date.now();
    for (let i = 0; i < 3; i++) {
      await sleep(1000);
      const { main, other } = await lanes();
      t.diagnostic(
        `+${((Date.now() - t0) / 1000).toFixed(1)} s: main ${main?.state} ${main?.commitsBehind} behind, ` +
          `lag ${main?.lagSeconds} s; other ${other?.state} ${other?.commitsBehind} behind, lag ${other?.lagSeconds} s`,
      );
    }
    const later = await lanes();
    assert.ok(later.main?.state === "exporting", "the long export is still running");
    assert.ok(later.other?.state === "queued", "the other lane still waits");
    const other = later.other;
    assert.equal(other.headCommit, behind);
    assert.ok(other.commitsBehind >= 1, `other: ${other.commitsBehind} commits behind`);
    assert.ok(
      other.lagSeconds > first.other.lagSeconds + 1,
      `the waiting lane's lag grows: ${first.other.lagSeconds} then ${other.lagSeconds}`,
    );
    assert.ok(
      later.main.lagSeconds > first.main.lagSeconds + 1,
      `the exporting lane's lag grows: ${first.main.lagSeconds} then ${later.main.lagSeconds}`,
    );
    // The metrics say the same.
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const sample = new RegExp(
      `^lakefs_mirror_lane_lag_seconds\\{[^}]*branch="other"[^}]*\\} (\\S+)$`,
      "m",
    ).exec(metrics);
    assert.ok(Number(sample?.[1]) > 1, `lag metric of the waiting lane: ${sample?.[1]}`);
  });
});

import assert from "node:assert/strict";
import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cliSummary, runCli } from "../helpers/cli.ts";
import { startFaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
import { assertMirrorEqual, gatewayPut } from "../helpers/mirror.ts";
import { TaskPool } from "../../src/export/pool.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

interface LimitLine {
  msg: string;
  store: string;
  limit: number | null;
  inFlight: number;
  cause: string;
  time: string;
}

/**
 * A 503 storm in front of MinIO (the fault-injecting proxy answers S3's SlowDown to a share of
 * the object writes while the storm lasts): the export lowers how many writes it has in flight
 * to that bucket, raises it again once writes succeed, and still ends in a SUCCESS with the
 * mirror equal to the commit. The proxy counts the writes in flight it sees, so the fall is
 * measured at the store's side, not only in our log.
 */
describe("writes at the rate the store accepts: AIMD under a SlowDown storm", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(() => stack.close());

  it("a storm on the first writes: in-flight writes fall, grow back, and the export converges", async (t) => {
    const repo = await createRepo(stack, "aimd");
    const bucket = await createBucket(stack, "aimd");
    const objects = Array.from({ length: 900 }, (_, i) => ({
      path: `p/${i % 7}/obj-${i}.bin`,
      content: Buffer.from(`object ${i} `.repeat(1 + (i % 13))),
    }));
    const pool = new TaskPool(16);
    for (const o of objects) await pool.submit(() => gatewayPut(stack, repo, "main", o));
    await pool.drain();
    const commit = (await stack.lakefs.commit(repo, "main", { message: "900 objects" })).id;

    // The storm: half of the first 300 object writes are refused with SlowDown.
    let writes = 0;
    let inFlight = 0;
    const peaks: { during: number; after: number } = { during: 0, after: 0 };
    const isWrite = (method: string, url: string) =>
      method === "PUT" && url.includes("/obj-") && !url.includes("uploadId");
    const proxy = await startFaultInjectingProxy(stack.env.AWS_ENDPOINT_URL, {
      flavor: "s3",
      rates: { slowdown: 0.5 },
      seed: 7,
      eligible: (method, url) => isWrite(method, url) && writes < 300,
      onRequest: (method, url) => {
        if (!isWrite(method, url)) return undefined;
        const storm = writes++ < 300;
        inFlight++;
        if (storm) peaks.during = Math.max(peaks.during, inFlight);
        else if (writes > 360) peaks.after = Math.max(peaks.after, inFlight);
        return () => inFlight--;
      },
    });
    t.after(() => proxy.close());
    const dir = mkdtempSync(join(tmpdir(), "aimd-"));
    const config = join(dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({
        // Every SlowDown reaches the export (no SDK retry hides it); retries quick but many.
        s3: { maxAttempts: 1 },
        retry: { retries: 12, minTimeoutMs: 20, maxTimeoutMs: 200, maxRetryTimeMs: 30_000 },
        export: { concurrency: 32, copyMode: "stream" },
      }),
    );
    const run = await runCli(
      stack,
      ["export", repo, `s3://${bucket}/`, `--commit_id=${commit}`, `--config=${config}`],
      // Debug: each step up of the limit is a debug line.
      { AWS_ENDPOINT_URL: proxy.url, LOG_LEVEL: "debug" },
    );
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(cliSummary(run).status, "SUCCESS", run.stdout);
    await assertMirrorEqual(stack, repo, commit, bucket);
    assert.ok(proxy.injected().slowdown >= 50, `${proxy.injected().slowdown} SlowDowns`);

    const changes = run.stdout
      .split("\n")
      .filter((l) => l.includes('"store"') && l.includes('"cause"'))
      .map((l) => JSON.parse(l) as LimitLine);
    const lowest = Math.min(...changes.map((c) => c.limit ?? Infinity));
    t.diagnostic(
      `in flight at the store: peak ${peaks.during} during the storm, ${peaks.after} after; ` +
        `${changes.length} changes of the limit: first ${changes
          .slice(0, 6)
          .map((c) => c.limit ?? "none")
          .join(" → ")}, lowest ${lowest}, last ${changes
          .slice(-4)
          .map((c) => c.limit ?? "none")
          .join(" → ")}`,
    );
    assert.ok(
      changes.some((c) => c.cause === "throttled"),
      "the limit fell",
    );
    assert.ok(lowest <= 4, `the limit only fell to ${lowest}`);
    assert.ok(
      changes.some((c) => c.cause === "grew"),
      "the limit grew back",
    );
    assert.ok(
      peaks.after > lowest,
      `after the storm ${peaks.after} in flight, lowest limit ${lowest}`,
    );
  });
});

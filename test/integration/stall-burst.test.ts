import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../../src/config.ts";
import { Daemon } from "../../src/daemon/daemon.ts";
import { TaskPool } from "../../src/export/pool.ts";
import {
  commitEvent,
  daemonEnv,
  postWebhook,
  waitForExported,
  writeDaemonConfig,
} from "../helpers/daemon.ts";
import { startFaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
import type { FaultRates } from "../helpers/fault-injecting-proxy.ts";
import { assertMirrorEqual, gatewayPut, silentLogger } from "../helpers/mirror.ts";
import type { SeedObject } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

/** The rates of issue 16 item 5: what a bad day of S3 looks like, and half of it on lakeFS. */
const s3Rates: FaultRates = { slowdown: 0.15, reset: 0.04, cut: 0.03, stall: 0.02 };
const lakefsRates: FaultRates = { slowdown: 0.075, reset: 0.02, cut: 0.015, stall: 0.01 };
const BURSTS = 3;
const BOUND_MS = 60_000;

describe("a burst of changes under sustained faults", () => {
  let stack: Stack;
  const closers: (() => Promise<unknown>)[] = [];
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    for (const c of closers.reverse()) await c();
    await stack.close();
  });

  const object = (i: number, version: string): SeedObject => ({
    path: `events/day=${i % 7}/part-${i}.json`,
    content: JSON.stringify({ i, version, pad: randomBytes(100 + (i % 13) * 40).toString("hex") }),
    contentType: "application/json",
    metadata: { version },
  });

  async function commit(repo: string, objects: SeedObject[], deletes: string[], message: string) {
    const pool = new TaskPool(16);
    const failures: unknown[] = [];
    for (const o of objects) {
      await pool.submit(() =>
        gatewayPut(stack, repo, "main", o).catch((err: unknown) => void failures.push(err)),
      );
    }
    await pool.drain();
    if (failures.length > 0) throw failures[0];
    for (const p of deletes) await stack.lakefs.deleteObject(repo, "main", p);
    return (await stack.lakefs.commit(repo, "main", { message })).id;
  }

  it("a burst of about 100 changed objects with 503s, resets, cut bodies and stalls on S3 and lakeFS reaches SUCCESS within 60 s instead of waiting out a two-minute idle timeout per stalled request", async () => {
    const repo = await createRepo(stack, "burst");
    const bucket = await createBucket(stack, "burst");
    const s3 = await startFaultInjectingProxy(stack.env.AWS_ENDPOINT_URL, {
      flavor: "s3",
      seed: 16,
    });
    closers.push(() => s3.close());
    const lakefs = await startFaultInjectingProxy(stack.env.LAKEFS_ENDPOINT, {
      flavor: "lakefs",
      seed: 61,
    });
    closers.push(() => lakefs.close());

    // Every request deadline, retry policy and export setting at its product default; only the
    // scheduler's back-off after a failed export is the product's too (5 s doubling), and the
    // reconciler stays at its 60 s: the webhook is what starts each export.
    const { file } = writeDaemonConfig(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      reconcileIntervalSeconds: 60,
      extra: {
        scheduler: { maxParallelLanes: 4, retryBaseSeconds: 5, retryMaxSeconds: 300 },
        export: { concurrency: 32 },
      },
    });
    const config = loadConfig({
      env: {
        ...daemonEnv(stack),
        LAKEFS_ENDPOINT: lakefs.url,
        AWS_ENDPOINT_URL: s3.url,
        LOG_LEVEL: "silent",
      },
      file,
    });
    const daemon = new Daemon(config, silentLogger);
    closers.push(() => daemon.close());
    await daemon.start();
    const url = daemon.http.address;
    const notify = async (commitId: string) => {
      const res = await postWebhook(url, commitEvent(repo, "main", commitId), {
        authorization: `Bearer ${stack.env.LAKEFSACTION_MIRROR_TOKEN}`,
      });
      assert.equal(res.status, 202);
    };

    // The lane's first export, without faults: 200 objects.
    const base = await commit(
      repo,
      Array.from({ length: 200 }, (_, i) => object(i, "v0")),
      [],
      "base",
    );
    await notify(base);
    await waitForExported(url, repo, "main", base, 120_000);

    s3.setRates(s3Rates);
    lakefs.setRates(lakefsRates);
    const seconds: number[] = [];
    let head = base;
    for (let burst = 1; burst <= BURSTS; burst++) {
      // 100 changes: 70 overwrites, 20 new paths, 10 deletes.
      const start = burst * 70;
      head = await commit(
        repo,
        [
          ...Array.from({ length: 70 }, (_, i) => object((start + i) % 200, `v${burst}`)),
          ...Array.from({ length: 20 }, (_, i) => object(1000 * burst + i, `v${burst}`)),
        ],
        Array.from({ length: 10 }, (_, i) => object((start + 100 + i) % 200, "").path),
        `burst ${burst}`,
      );
      const started = Date.now();
      await notify(head);
      try {
        await waitForExported(url, repo, "main", head, BOUND_MS);
      } finally {
        seconds.push((Date.now() - started) / 1000);
        console.log(
          `burst ${burst}: commit to SUCCESS ${seconds.at(-1)!.toFixed(1)} s; injected so far: s3 ${JSON.stringify(s3.injected())}, lakefs ${JSON.stringify(lakefs.injected())}`,
        );
      }
    }
    s3.setRates({});
    lakefs.setRates({});
    await assertMirrorEqual(stack, repo, head, bucket);
    assert.ok(s3.injected().stall >= 1, `S3 stalls injected: ${s3.injected().stall}`);
    for (const [i, s] of seconds.entries())
      assert.ok(s * 1000 < BOUND_MS, `burst ${i + 1} took ${s} s`);
  });
});

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { loadConfig } from "../../src/config.ts";
import type { CopyMode } from "../../src/export/copier.ts";
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
import type { Fault, FaultInjectingProxy, FaultRates } from "../helpers/fault-injecting-proxy.ts";
import {
  assertMirrorEqual,
  commitPaths,
  gatewayPut,
  headKey,
  listKeys,
  silentLogger,
  statusKeys,
} from "../helpers/mirror.ts";
import type { SeedObject } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const MiB = 1024 * 1024;
const faults: readonly Fault[] = ["slowdown", "reset", "cut", "stall"];
/** Dense enough that every kind hits many times in a run, sparse enough that retries get through. */
const rates: FaultRates = { slowdown: 0.05, reset: 0.03, cut: 0.03, stall: 0.02 };

/** One metric's samples by the value of one label, from Prometheus text. */
function samplesBy(metrics: string, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  const re = new RegExp(`^${name}\\{${label}="([^"]*)"\\} (\\S+)$`, "gm");
  for (const m of metrics.matchAll(re)) out[m[1]!] = Number(m[2]);
  return out;
}

describe("faults in front of S3 and lakeFS", () => {
  let stack: Stack;
  const closers: (() => Promise<unknown>)[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  before(async () => {
    stack = await connectStack();
    process.on("unhandledRejection", onUnhandled);
  });
  after(async () => {
    for (const c of closers.reverse()) await c();
    process.off("unhandledRejection", onUnhandled);
    await stack.close();
  });

  const auth = () => ({ authorization: `Bearer ${stack.env.LAKEFSACTION_MIRROR_TOKEN}` });

  /**
   * A daemon in this process whose lakeFS and S3 endpoints are the proxies (env overrides the
   * config file, so the config is built here rather than by startDaemon), with timeouts short
   * enough that a stalled request costs seconds.
   */
  async function daemonBehind(
    proxies: { lakefs: FaultInjectingProxy; s3: FaultInjectingProxy },
    repo: string,
    bucket: string,
    copyMode: CopyMode,
  ): Promise<{ daemon: Daemon; url: string }> {
    const { file } = writeDaemonConfig(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      reconcileIntervalSeconds: 1,
      extra: {
        s3: { idleTimeoutMs: 1500, connectTimeoutMs: 1000, maxAttempts: 2 },
        lakefs: { connectTimeoutMs: 1000, headersTimeoutMs: 1500, bodyTimeoutMs: 1500 },
        retry: { retries: 4, minTimeoutMs: 20, maxTimeoutMs: 200, maxRetryTimeMs: 5000 },
        scheduler: { maxParallelLanes: 4, retryBaseSeconds: 1, retryMaxSeconds: 2 },
        shutdown: { graceSeconds: 5 },
        export: {
          concurrency: 8,
          copyMode,
          // Small thresholds so that the large object goes up in parts: UploadPartCopy when
          // copied server-side, a streamed multipart upload otherwise.
          multipartThresholdBytes: 6 * MiB,
          multipartPartSizeBytes: 5 * MiB,
          copyMultipartThresholdBytes: 6 * MiB,
          copyPartSizeBytes: 5 * MiB,
        },
      },
    });
    const config = loadConfig({
      env: {
        ...daemonEnv(stack),
        LAKEFS_ENDPOINT: proxies.lakefs.url,
        AWS_ENDPOINT_URL: proxies.s3.url,
        LOG_LEVEL: "silent",
      },
      file,
    });
    assert.equal(config.lakefs.endpoint, proxies.lakefs.url);
    assert.equal(config.s3.endpoint, proxies.s3.url);
    const daemon = new Daemon(config, silentLogger);
    closers.push(() => daemon.close());
    await daemon.start();
    return { daemon, url: daemon.http.address };
  }

  /** Writes objects through lakeFS's S3 gateway (not proxied), deletes, and commits. */
  async function commit(
    repo: string,
    objects: SeedObject[],
    deletes: string[],
    message: string,
  ): Promise<string> {
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

  const small = (i: number, version: string): SeedObject => ({
    path: `data/part-${String(i).padStart(4, "0")}.json`,
    content: JSON.stringify({ i, version, pad: randomBytes(64 + (i % 7) * 50).toString("hex") }),
    contentType: "application/json",
    metadata: { version, index: String(i) },
  });

  it("with 503s, resets, cut bodies and stalls in front of both S3 and lakeFS, the daemon converges byte for byte and stays up", async () => {
    const repo = await createRepo(stack, "faults");
    const bucketAuto = await createBucket(stack, "faults-auto");
    const bucketStream = await createBucket(stack, "faults-stream");
    const s3Proxy = await startFaultInjectingProxy(stack.env.AWS_ENDPOINT_URL, {
      flavor: "s3",
      rates,
      seed: 7,
    });
    closers.push(() => s3Proxy.close());
    const lakefsProxy = await startFaultInjectingProxy(stack.env.LAKEFS_ENDPOINT, {
      flavor: "lakefs",
      rates,
      seed: 11,
    });
    closers.push(() => lakefsProxy.close());
    const proxies = { lakefs: lakefsProxy, s3: s3Proxy };

    // Two daemons on the same branch: one copies server-side (CopyObject, UploadPartCopy), the
    // other streams every object through lakeFS (PutObject, multipart upload).
    const daemons = [
      {
        mode: "auto",
        bucket: bucketAuto,
        ...(await daemonBehind(proxies, repo, bucketAuto, "auto")),
      },
      {
        mode: "stream",
        bucket: bucketStream,
        ...(await daemonBehind(proxies, repo, bucketStream, "stream")),
      },
    ];
    const notify = async (commitId: string) => {
      for (const d of daemons) {
        const res = await postWebhook(d.url, commitEvent(repo, "main", commitId), auth());
        assert.equal(res.status, 202);
      }
    };

    // Commit 1: 240 small objects and one large one.
    const big = randomBytes(11 * MiB + 321);
    const c1 = await commit(
      repo,
      [
        ...Array.from({ length: 240 }, (_, i) => small(i, "v1")),
        {
          path: "big/blob.bin",
          content: big,
          contentType: "application/octet-stream",
          metadata: { kind: "large" },
        },
      ],
      [],
      "240 small objects and a large one",
    );
    await notify(c1);
    await sleep(1500);

    // Commit 2: overwrites, new paths, deletes.
    const c2 = await commit(
      repo,
      [
        ...Array.from({ length: 60 }, (_, i) => small(i * 3, "v2")),
        ...Array.from({ length: 50 }, (_, i) => ({
          path: `logs/2024/day-${String(i).padStart(2, "0")}.txt`,
          content: `log line ${i}\n`.repeat(20 + i),
          contentType: "text/plain",
        })),
      ],
      Array.from({ length: 40 }, (_, i) => small(200 + i, "").path),
      "overwrite, add and delete",
    );
    await notify(c2);
    await sleep(1000);

    // Commit 3: metadata and Content-Type changes on unchanged bytes, more deletes, a marker.
    const c3 = await commit(
      repo,
      [
        ...Array.from({ length: 30 }, (_, i) => ({
          path: `logs/2024/day-${String(i).padStart(2, "0")}.txt`,
          content: `log line ${i}\n`.repeat(20 + i),
          contentType: "text/x-log",
          metadata: { retention: "30d", "reviewed-by": `user-${i}` },
        })),
        { path: "data/_SUCCESS", content: "" },
      ],
      [
        ...Array.from({ length: 20 }, (_, i) => small(100 + i, "").path),
        ...Array.from(
          { length: 5 },
          (_, i) => `logs/2024/day-${String(45 + i).padStart(2, "0")}.txt`,
        ),
      ],
      "metadata changes, deletes and a marker",
    );
    await notify(c3);

    // Commit 4 arrives without a webhook: the reconciler has to find it.
    const c4 = await commit(
      repo,
      [
        ...Array.from({ length: 40 }, (_, i) => small(i * 5 + 1, "v4")),
        { path: "nested/a/b/c/deep.bin", content: randomBytes(4096), metadata: { depth: "4" } },
      ],
      Array.from({ length: 10 }, (_, i) => `logs/2024/day-${String(30 + i).padStart(2, "0")}.txt`),
      "overwrite again, no webhook",
    );
    await sleep(1000);

    // Commit 5 (HEAD): deletes something that was just added, overwrites the large object.
    const big2 = randomBytes(11 * MiB + 777);
    const head = await commit(
      repo,
      [
        {
          path: "big/blob.bin",
          content: big2,
          contentType: "application/x-blob",
          metadata: { kind: "large", rev: "2" },
        },
        ...Array.from({ length: 20 }, (_, i) => small(i * 7 + 2, "v5")),
      ],
      [small(1, "").path, "nested/a/b/c/deep.bin"],
      "HEAD",
    );
    await notify(head);
    assert.equal(new Set([c1, c2, c3, c4, head]).size, 5);

    // Faults stay on until both lanes report SUCCESS for HEAD.
    await Promise.all(daemons.map((d) => waitForExported(d.url, repo, "main", head, 90_000)));
    const counts = { s3: s3Proxy.injected(), lakefs: lakefsProxy.injected() };
    s3Proxy.setRates({});
    lakefsProxy.setRates({});
    console.log(
      `injected faults: ${JSON.stringify(counts)}; forwarded: s3 ${s3Proxy.forwarded()}, lakefs ${lakefsProxy.forwarded()}`,
    );

    // The expectation comes from lakeFS (listing, bytes) and its S3 gateway (metadata).
    const expected = [...(await commitPaths(stack, repo, head))].sort(([a], [b]) =>
      a < b ? -1 : 1,
    );
    assert.ok(expected.length > 200, `HEAD holds ${expected.length} objects`);
    for (const d of daemons) {
      await assertMirrorEqual(stack, repo, head, d.bucket);
      const keys = await listKeys(stack, d.bucket);
      const status = new Set(statusKeys(keys.keys()));
      const mirrored = [...keys]
        .filter(([k]) => !status.has(k) && !k.startsWith("_lakefs_mirror/"))
        .sort(([a], [b]) => (a < b ? -1 : 1));
      assert.deepEqual(
        mirrored,
        expected,
        `${d.mode}: destination keys and sizes equal HEAD's paths and sizes in lakeFS`,
      );
      assert.ok(
        [...status].some((k) => k.startsWith(`EXPORT_${head}_`) && k.endsWith("_SUCCESS")),
        `${d.mode}: a SUCCESS status file for HEAD`,
      );
      // The large object went up in 5 MiB parts, through the faults.
      assert.match((await headKey(stack, d.bucket, "big/blob.bin")).ETag ?? "", /-3"$/);

      assert.equal((await fetch(`${d.url}/healthz`)).status, 200, `${d.mode}: /healthz`);
      assert.equal((await fetch(`${d.url}/readyz`)).status, 200, `${d.mode}: /readyz`);
      const metrics = await (await fetch(`${d.url}/metrics`)).text();
      const exportsByResult = samplesBy(metrics, "lakefs_mirror_exports_total", "result");
      const bytesByMethod = samplesBy(metrics, "lakefs_mirror_bytes_total", "method");
      const objectsByOp = samplesBy(metrics, "lakefs_mirror_objects_total", "op");
      console.log(
        `${d.mode}: exports_total ${JSON.stringify(exportsByResult)}, objects_total ${JSON.stringify(objectsByOp)}, bytes_total ${JSON.stringify(bytesByMethod)}`,
      );
      const method = d.mode === "auto" ? "server-side" : "stream";
      assert.ok((bytesByMethod[method] ?? 0) >= big.length, `${d.mode}: copied ${method}`);
    }

    for (const [proxy, injected] of Object.entries(counts)) {
      for (const fault of faults) {
        assert.ok(
          injected[fault] >= 3,
          `${proxy} proxy injected ${fault} ${injected[fault]} times`,
        );
      }
    }
    assert.deepEqual(unhandled, [], "no unhandled rejection");
  });
});

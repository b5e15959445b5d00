import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Exporter } from "../../src/export/exporter.ts";
import { LakefsClient } from "../../src/lakefs/client.ts";
import { createS3Client } from "../../src/s3/client.ts";
import { S3Destination } from "../../src/s3/destination.ts";
import { startFaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
import { assertMirrorEqual, commitObjects, headKey, silentLogger } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const MiB = 1024 * 1024;

/** Regressions found by injecting one fault at a time in front of the real servers. */
describe("single injected faults", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await stack.close();
  });

  it("a streamed upload whose lakeFS body is cut fails at once and is retried, instead of waiting for bytes that never come", async () => {
    const repo = await createRepo(stack, "cutbody");
    const bucket = await createBucket(stack);
    const commit = await commitObjects(stack, repo, "main", [
      { path: "small.bin", content: randomBytes(3000) },
    ]);
    // Only the first read of the object's bytes is cut; the retry reads it whole.
    let reads = 0;
    const proxy = await startFaultInjectingProxy(stack.env.LAKEFS_ENDPOINT, {
      flavor: "lakefs",
      rates: { cut: 1 },
      eligible: (method, url) => method === "GET" && url.includes("/objects?") && reads++ === 0,
    });
    const lakefs = new LakefsClient({
      endpoint: proxy.url,
      accessKeyId: stack.env.LAKEFS_ACCESS_KEY_ID,
      secretAccessKey: stack.env.LAKEFS_SECRET_ACCESS_KEY,
    });
    try {
      const started = Date.now();
      // S3's idle timeout stays at its default (two minutes): only the fix makes this quick.
      const result = await new Exporter({
        lakefs,
        repository: repo,
        destination: new S3Destination(stack.s3, { bucket, prefix: "" }),
        logger: silentLogger,
        copyMode: "stream",
        retry: { retries: 2, minTimeoutMs: 10, maxTimeoutMs: 20 },
      }).exportAllFromCommit(commit);
      const seconds = (Date.now() - started) / 1000;
      assert.equal(result.status, "SUCCESS", result.failureLines.join("\n"));
      assert.equal(proxy.injected().cut, 1);
      assert.ok(seconds < 20, `took ${seconds} s: the upload waited for the cut body`);
      await assertMirrorEqual(stack, repo, commit, bucket);
    } finally {
      await lakefs.close();
      await proxy.close();
    }
  });

  it("a lost answer to CompleteMultipartUpload redoes the copy server-side, never streams it or fails it", async () => {
    const repo = await createRepo(stack, "lostcomplete");
    const bucket = await createBucket(stack);
    const commit = await commitObjects(stack, repo, "main", [
      { path: "big.bin", content: randomBytes(11 * MiB) },
    ]);
    // The first CompleteMultipartUpload (POST ?uploadId=…) reaches S3, its answer does not.
    let completes = 0;
    const proxy = await startFaultInjectingProxy(stack.env.AWS_ENDPOINT_URL, {
      flavor: "s3",
      rates: { cut: 1 },
      eligible: (method, url) =>
        method === "POST" && url.includes("uploadId=") && completes++ === 0,
    });
    const s3 = createS3Client({
      endpoint: proxy.url,
      region: stack.env.AWS_REGION,
      credentials: {
        accessKeyId: stack.env.AWS_ACCESS_KEY_ID,
        secretAccessKey: stack.env.AWS_SECRET_ACCESS_KEY,
      },
    });
    try {
      const result = await new Exporter({
        lakefs: stack.lakefs,
        repository: repo,
        destination: new S3Destination(
          s3,
          { bucket, prefix: "" },
          { copyMultipartThresholdBytes: 6 * MiB, copyPartSizeBytes: 5 * MiB },
        ),
        logger: silentLogger,
        retry: { retries: 2, minTimeoutMs: 10, maxTimeoutMs: 20 },
      }).exportAllFromCommit(commit);
      assert.equal(result.status, "SUCCESS", result.failureLines.join("\n"));
      assert.equal(proxy.injected().cut, 1);
      assert.equal(result.serverSideCopies, 1);
      assert.equal(result.bytesStreamed, 0, "the copy fell back to streaming");
      assert.match((await headKey(stack, bucket, "big.bin")).ETag ?? "", /-3"$/);
      await assertMirrorEqual(stack, repo, commit, bucket);
    } finally {
      s3.destroy();
      await proxy.close();
    }
  });
});

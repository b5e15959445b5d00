import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cliSummary, runCli } from "../helpers/cli.ts";
import type { CliRun } from "../helpers/cli.ts";
import { startFaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
import type { FaultInjectingProxyOptions } from "../helpers/fault-injecting-proxy.ts";
import { assertMirrorEqual, gatewayPut, headKey, readKey } from "../helpers/mirror.ts";
import { startPrivateLakefs } from "../helpers/private-lakefs.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const MiB = 1024 * 1024;
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** The object's byte range a GET of lakeFS's object endpoint asked for, if it is one. */
function objectRead(method: string, url: string, headers: Record<string, unknown>) {
  if (method !== "GET" || !/\/objects\?/.test(url)) return undefined;
  return typeof headers.range === "string" ? headers.range : "whole";
}

/**
 * A proxy in front of a lakeFS that notes each object read (its Range, or "whole") and each
 * pre-signing stat; `faults` as the fault-injecting proxy takes them.
 */
async function watchedLakefs(
  endpoint: string,
  faults: Pick<FaultInjectingProxyOptions, "rates" | "eligible"> = {},
  onRead?: (range: string) => (() => void) | undefined,
) {
  const reads: string[] = [];
  let presigns = 0;
  const proxy = await startFaultInjectingProxy(endpoint, {
    flavor: "lakefs",
    ...faults,
    onRequest: (method, url, headers) => {
      if (method === "GET" && url.includes("/objects/stat?") && url.includes("presign=true"))
        presigns++;
      const range = objectRead(method, url, headers);
      if (range === undefined) return undefined;
      reads.push(range);
      return onRead?.(range);
    },
  });
  return { proxy, reads, presigns: () => presigns };
}

/** `export <repo> s3://<bucket>/ --commit_id=<commit> --copy-mode=stream <flags>` via `lakefs`. */
function streamExport(
  stack: Stack,
  repo: string,
  commit: string,
  bucket: string,
  lakefs: string,
  flags: string[],
): Promise<CliRun> {
  return runCli(
    stack,
    ["export", repo, `s3://${bucket}/`, `--commit_id=${commit}`, "--copy-mode=stream", ...flags],
    { LAKEFS_ENDPOINT: lakefs },
  );
}

/** A private lakeFS on the stack's MinIO (or `s3Endpoint`), with `s3Lines` added to its S3 blockstore. */
function lakefsOnMinio(stack: Stack, s3Lines: string[], s3Endpoint = stack.env.AWS_ENDPOINT_URL) {
  return startPrivateLakefs(
    stack,
    [
      "blockstore:",
      "  type: s3",
      "  s3:",
      `    endpoint: ${s3Endpoint}`,
      "    force_path_style: true",
      "    region: us-east-1",
      ...s3Lines.map((l) => `    ${l}`),
      "    credentials:",
      `      access_key_id: ${stack.env.AWS_ACCESS_KEY_ID}`,
      `      secret_access_key: ${stack.env.AWS_SECRET_ACCESS_KEY}`,
    ].join("\n"),
  );
}

/**
 * Streamed copies of large objects read them by ranges in parallel, from lakeFS or, with
 * pre-signed reads, straight from the repository's store. Bytes are checked against what was
 * uploaded through the gateway (a SHA-256 of the upload, read back from MinIO), not against
 * our own mapping; what passes through lakeFS is counted by a proxy in front of it.
 */
describe("streamed copies read large objects by parallel ranges", () => {
  let stack: Stack;
  let repo: string;
  let commit: string;
  const big = randomBytes(40 * MiB + 12_345);
  const small = Array.from({ length: 5 }, (_, i) => ({
    path: `small/${i}.json`,
    content: Buffer.from(JSON.stringify({ i, pad: "x".repeat(100 * i) })),
  }));
  let config: string;

  before(async () => {
    stack = await connectStack();
    repo = await createRepo(stack, "ranged");
    // As boto3 would: a PutObject through the gateway with a content type and user metadata.
    await gatewayPut(stack, repo, "main", {
      path: "tables/t/part-00000.parquet",
      content: big,
      contentType: "application/vnd.apache.parquet",
      metadata: { writer: "boto3" },
    });
    for (const o of small) await gatewayPut(stack, repo, "main", o);
    commit = (await stack.lakefs.commit(repo, "main", { message: "a big file" })).id;
    const dir = mkdtempSync(join(tmpdir(), "ranged-"));
    config = join(dir, "config.json");
    // 8 ranges of 5 MiB and a last short one; lakeFS reads retried quickly.
    writeFileSync(
      config,
      JSON.stringify({
        export: { multipartThresholdBytes: 8 * MiB, multipartPartSizeBytes: 5 * MiB },
        retry: { minTimeoutMs: 20, maxTimeoutMs: 200 },
      }),
    );
  });
  after(() => stack.close());

  async function assertMirrored(bucket: string, run: CliRun) {
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(cliSummary(run).status, "SUCCESS", run.stdout);
    const key = "tables/t/part-00000.parquet";
    assert.equal(sha(await readKey(stack, bucket, key)), sha(big));
    const head = await headKey(stack, bucket, key);
    assert.equal(head.ContentType, "application/vnd.apache.parquet");
    assert.deepEqual(head.Metadata, { writer: "boto3" });
    for (const o of small) assert.ok((await readKey(stack, bucket, o.path)).equals(o.content));
    await assertMirrorEqual(stack, repo, commit, bucket);
  }

  it("through lakeFS: ranges read in parallel, and a body cut mid-range reads only that range again", async (t) => {
    const bucket = await createBucket(stack, "ranged");
    let inFlight = 0;
    let peak = 0;
    let cutOne: string | undefined;
    let next: string | undefined;
    // The first range after the first is cut (lakeFS sends half its body, then the connection
    // closes). `eligible` runs right after `onRequest`, which saw the request's Range.
    const { proxy, reads } = await watchedLakefs(
      stack.env.LAKEFS_ENDPOINT,
      {
        rates: { cut: 1 },
        eligible: () => {
          const range = next;
          next = undefined;
          if (cutOne !== undefined || range === undefined || !range.startsWith("bytes="))
            return false;
          if (range.startsWith("bytes=0-")) return false;
          cutOne = range;
          return true;
        },
      },
      (range) => {
        next = range;
        inFlight++;
        peak = Math.max(peak, inFlight);
        return () => inFlight--;
      },
    );
    t.after(() => proxy.close());
    const run = await streamExport(stack, repo, commit, bucket, proxy.url, [`--config=${config}`]);
    await assertMirrored(bucket, run);
    const ranged = reads.filter((r) => r.startsWith("bytes="));
    t.diagnostic(
      `${ranged.length} ranged reads, ${peak} object reads at once, cut ${cutOne}, ${proxy.answeredBytes()} bytes from lakeFS for ${big.length + small.reduce((n, o) => n + o.content.length, 0)}`,
    );
    assert.equal(proxy.injected().cut, 1);
    assert.ok(cutOne);
    // Nine ranges, the cut one read twice; every other range once.
    assert.equal(ranged.length, 10);
    assert.equal(new Set(ranged).size, 9);
    assert.equal(ranged.filter((r) => r === cutOne).length, 2);
    assert.equal(reads.filter((r) => r === "whole").length, small.length);
    assert.ok(peak >= 2, `object reads never overlapped (peak ${peak})`);
    // Only the cut range came twice: at most one extra range's bytes, no second whole read.
    assert.ok(proxy.answeredBytes() < big.length + 6 * MiB, `${proxy.answeredBytes()} bytes`);
  });

  it("pre-signed: the bytes skip lakeFS (a proxy in front of it counts them)", async (t) => {
    const bucket = await createBucket(stack, "presigned");
    const { proxy, reads } = await watchedLakefs(stack.env.LAKEFS_ENDPOINT);
    t.after(() => proxy.close());
    const run = await streamExport(stack, repo, commit, bucket, proxy.url, [
      "--presigned-reads",
      `--config=${config}`,
    ]);
    await assertMirrored(bucket, run);
    t.diagnostic(`${proxy.answeredBytes()} bytes from lakeFS (its JSON answers) for ${big.length}`);
    assert.deepEqual(reads, [], "no object was read through lakeFS");
    assert.ok(proxy.answeredBytes() < 256 * 1024, `${proxy.answeredBytes()} bytes through lakeFS`);
    assert.doesNotMatch(run.stdout, /does not pre-sign/);
  });

  it("pre-signed reads where lakeFS does not sign (disable_pre_signed): read through lakeFS, said once", async (t) => {
    const own = await lakefsOnMinio(stack, ["disable_pre_signed: true"]);
    t.after(() => own.stop());
    const s = own.stack;
    const name = await createRepo(s, "nopresign");
    const body = randomBytes(12 * MiB + 7);
    await gatewayPut(s, name, "main", { path: "big.bin", content: body });
    await gatewayPut(s, name, "main", { path: "a.txt", content: "a" });
    const c = (await s.lakefs.commit(name, "main", { message: "two" })).id;
    const bucket = await createBucket(s, "nopresign");
    const { proxy, reads } = await watchedLakefs(s.env.LAKEFS_ENDPOINT);
    t.after(() => proxy.close());
    const run = await streamExport(s, name, c, bucket, proxy.url, [
      "--presigned-reads",
      `--config=${config}`,
    ]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(cliSummary(run).status, "SUCCESS", run.stdout);
    assert.equal(sha(await readKey(s, bucket, "big.bin")), sha(body));
    assert.equal((await readKey(s, bucket, "a.txt")).toString(), "a");
    assert.equal(run.stdout.match(/does not pre-sign/g)?.length, 1, run.stdout);
    // Read through lakeFS instead: three ranges of the big one, the small one whole.
    assert.equal(reads.filter((r) => r.startsWith("bytes=")).length, 3);
    assert.equal(reads.filter((r) => r === "whole").length, 1);
    assert.ok(proxy.answeredBytes() >= body.length);
  });

  it("pre-signing that fails with 5xx (after lakeFS's retries): that object is read through lakeFS, the export succeeds", async (t) => {
    const bucket = await createBucket(stack, "presign503");
    // Every pre-signing stat of the big file is answered 503; the small files' are not.
    const { proxy, reads, presigns } = await watchedLakefs(stack.env.LAKEFS_ENDPOINT, {
      rates: { slowdown: 1 },
      eligible: (method, url) => url.includes("presign=true") && url.includes("part-00000"),
    });
    t.after(() => proxy.close());
    const run = await streamExport(stack, repo, commit, bucket, proxy.url, [
      "--presigned-reads",
      `--config=${config}`,
    ]);
    await assertMirrored(bucket, run);
    assert.ok(proxy.injected().slowdown >= 2, `${proxy.injected().slowdown} 503s`);
    assert.match(run.stdout, /failed to pre-sign a read/);
    // The big file through lakeFS, by its nine ranges; the small ones pre-signed, not read here.
    assert.equal(reads.filter((r) => r.startsWith("bytes=")).length, 9);
    assert.equal(reads.filter((r) => r === "whole").length, 0);
    assert.ok(presigns() > small.length);
  });

  it("pre-signed URLs that expire while a large object is read are signed again", async (t) => {
    // lakeFS signs for 2 s here; its store is behind a proxy that holds each body to 4 MB/s, so
    // reading the object two ranges at a time outlives the first URL.
    const slowStore = await startFaultInjectingProxy(stack.env.AWS_ENDPOINT_URL, { flavor: "s3" });
    t.after(() => slowStore.close());
    const own = await lakefsOnMinio(stack, ["pre_signed_expiry: 2s"], slowStore.url);
    t.after(() => own.stop());
    const s = own.stack;
    const name = await createRepo(s, "shortsign");
    const body = randomBytes(25 * MiB + 3);
    await gatewayPut(s, name, "main", { path: "big.bin", content: body });
    const c = (await s.lakefs.commit(name, "main", { message: "one" })).id;
    const bucket = await createBucket(s, "shortsign");
    const { proxy, reads, presigns } = await watchedLakefs(s.env.LAKEFS_ENDPOINT);
    t.after(() => proxy.close());
    slowStore.setThrottle(4e6);
    const run = await streamExport(s, name, c, bucket, proxy.url, [
      "--presigned-reads",
      "--parallel-reads=2",
      `--config=${config}`,
    ]);
    slowStore.setThrottle(undefined);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(cliSummary(run).status, "SUCCESS", run.stdout);
    assert.equal(sha(await readKey(s, bucket, "big.bin")), sha(body));
    assert.deepEqual(reads, [], "no object was read through lakeFS");
    t.diagnostic(`${presigns()} pre-signing stats for 6 ranges of one object`);
    assert.ok(presigns() >= 2, `${presigns()} pre-signing stat(s): the URL was never renewed`);
  });
});

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cliSummary, runCli } from "../helpers/cli.ts";
import type { CliRun } from "../helpers/cli.ts";
import { startFaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
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
    const reads: string[] = [];
    let inFlight = 0;
    let peak = 0;
    let cutOne: string | undefined;
    let next: string | undefined;
    const proxy = await startFaultInjectingProxy(stack.env.LAKEFS_ENDPOINT, {
      flavor: "lakefs",
      rates: { cut: 1 },
      // The first range after the first is cut (lakeFS sends half its body, then the
      // connection closes).
      onRequest: (method, url, headers) => {
        const range = objectRead(method, url, headers);
        next = range;
        if (range === undefined) return undefined;
        reads.push(range);
        inFlight++;
        peak = Math.max(peak, inFlight);
        return () => inFlight--;
      },
      eligible: () => {
        if (cutOne !== undefined || next === undefined || !next.startsWith("bytes=")) return false;
        if (next.startsWith("bytes=0-")) return false;
        cutOne = next;
        return true;
      },
    });
    t.after(() => proxy.close());
    const run = await runCli(
      stack,
      [
        "export",
        repo,
        `s3://${bucket}/`,
        `--commit_id=${commit}`,
        "--copy-mode=stream",
        `--config=${config}`,
      ],
      { LAKEFS_ENDPOINT: proxy.url },
    );
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
    const reads: string[] = [];
    const proxy = await startFaultInjectingProxy(stack.env.LAKEFS_ENDPOINT, {
      flavor: "lakefs",
      onRequest: (method, url, headers) => {
        const range = objectRead(method, url, headers);
        if (range !== undefined) reads.push(range);
        return undefined;
      },
    });
    t.after(() => proxy.close());
    const run = await runCli(
      stack,
      [
        "export",
        repo,
        `s3://${bucket}/`,
        `--commit_id=${commit}`,
        "--copy-mode=stream",
        "--presigned-reads",
        `--config=${config}`,
      ],
      { LAKEFS_ENDPOINT: proxy.url },
    );
    await assertMirrored(bucket, run);
    t.diagnostic(`${proxy.answeredBytes()} bytes from lakeFS (its JSON answers) for ${big.length}`);
    assert.deepEqual(reads, [], "no object was read through lakeFS");
    assert.ok(proxy.answeredBytes() < 256 * 1024, `${proxy.answeredBytes()} bytes through lakeFS`);
    assert.doesNotMatch(run.stdout, /does not pre-sign/);
  });

  it("pre-signed reads where lakeFS does not sign (disable_pre_signed): read through lakeFS, said once", async (t) => {
    const own = await startPrivateLakefs(
      stack,
      [
        "blockstore:",
        "  type: s3",
        "  s3:",
        `    endpoint: ${stack.env.AWS_ENDPOINT_URL}`,
        "    force_path_style: true",
        "    region: us-east-1",
        "    disable_pre_signed: true",
        "    credentials:",
        `      access_key_id: ${stack.env.AWS_ACCESS_KEY_ID}`,
        `      secret_access_key: ${stack.env.AWS_SECRET_ACCESS_KEY}`,
      ].join("\n"),
    );
    t.after(() => own.stop());
    const s = own.stack;
    const name = await createRepo(s, "nopresign");
    const body = randomBytes(12 * MiB + 7);
    await gatewayPut(s, name, "main", { path: "big.bin", content: body });
    await gatewayPut(s, name, "main", { path: "a.txt", content: "a" });
    const c = (await s.lakefs.commit(name, "main", { message: "two" })).id;
    const bucket = await createBucket(s, "nopresign");
    const reads: string[] = [];
    const proxy = await startFaultInjectingProxy(s.env.LAKEFS_ENDPOINT, {
      flavor: "lakefs",
      onRequest: (method, url, headers) => {
        const range = objectRead(method, url, headers);
        if (range !== undefined) reads.push(range);
        return undefined;
      },
    });
    t.after(() => proxy.close());
    const run = await runCli(
      s,
      [
        "export",
        name,
        `s3://${bucket}/`,
        `--commit_id=${c}`,
        "--copy-mode=stream",
        "--presigned-reads",
        `--config=${config}`,
      ],
      { LAKEFS_ENDPOINT: proxy.url },
    );
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
});

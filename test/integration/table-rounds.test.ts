import assert from "node:assert/strict";
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { TaskPool } from "../../src/export/pool.ts";
import { Exporter } from "../../src/export/exporter.ts";
import type { ExporterOptions } from "../../src/export/exporter.ts";
import { createS3Client } from "../../src/s3/client.ts";
import { S3Destination } from "../../src/s3/destination.ts";
import {
  assertMirrorEqual,
  commitObjects,
  gatewayPut,
  listKeys,
  makeExporter,
  readKey,
  silentLogger,
  statusKeys,
} from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

/**
 * The round presets for table formats, on the real stack: the order in which keys are written
 * (and deleted) at the destination, as S3 receives the requests.
 */
describe("round presets for table formats", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await stack.close();
  });

  /** Exports the diff c1..c2 and returns the writes in the order S3 got them ("-" for deletes). */
  async function exportRecording(
    repo: string,
    bucket: string,
    c1: string,
    c2: string,
    rounds: ExporterOptions["rounds"],
  ): Promise<string[]> {
    const s3 = createS3Client({
      endpoint: stack.env.AWS_ENDPOINT_URL,
      region: stack.env.AWS_REGION,
      credentials: {
        accessKeyId: stack.env.AWS_ACCESS_KEY_ID,
        secretAccessKey: stack.env.AWS_SECRET_ACCESS_KEY,
      },
    });
    const writes: string[] = [];
    s3.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { Key?: string; Delete?: { Objects?: { Key?: string }[] } };
        if (context.commandName === "DeleteObjectsCommand")
          for (const o of input.Delete?.Objects ?? []) writes.push(`-${o.Key}`);
        else if (context.commandName !== "HeadObjectCommand" && input.Key) writes.push(input.Key);
        return next(args);
      },
      { step: "initialize", name: "recordWriteOrder" },
    );
    try {
      const exporter = new Exporter({
        lakefs: stack.lakefs,
        repository: repo,
        destination: new S3Destination(s3, { bucket, prefix: "" }),
        logger: silentLogger,
        concurrency: 8,
        rounds,
        // The files here stand in for a table's by name only: the order is under test, not
        // the path rewrite (test/integration/iceberg-export.test.ts runs that on real tables).
        icebergRewrite: false,
      });
      assert.equal((await exporter.exportAllFromCommit(c1)).status, "SUCCESS");
      writes.length = 0;
      const result = await exporter.exportDiff(c1, c2);
      assert.equal(result.status, "SUCCESS", result.failureLines.join("\n"));
      return writes.filter((k) => !/^EXPORT_/.test(k));
    } finally {
      s3.destroy();
    }
  }

  /** Asserts every key of `before` is written before every key of `later`. */
  function ordered(
    writes: string[],
    before: (k: string) => boolean,
    later: (k: string) => boolean,
  ) {
    const lastBefore = Math.max(...writes.map((k, i) => (before(k) ? i : -1)));
    const firstLater = writes.findIndex(later);
    assert.ok(lastBefore >= 0 && firstLater >= 0, writes.join("\n"));
    assert.ok(lastBefore < firstLater, `out of order:\n${writes.join("\n")}`);
  }

  it("delta: data, then the _delta_log entries, then _last_checkpoint, then deletes", async () => {
    const repo = await createRepo(stack, "delta");
    const bucket = await createBucket(stack);
    const log = "sales/_delta_log";
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "sales/part-00000-old.snappy.parquet", content: "old" },
      { path: `${log}/00000000000000000000.json`, content: '{"add":{"path":"part-00000-old"}}' },
    ]);
    const data = Array.from({ length: 12 }, (_, i) => ({
      path: `sales/date=2026-11-2${i % 3}/part-0000${i}-new.snappy.parquet`,
      content: `rows ${i}`,
    }));
    const c2 = await commitObjects(
      stack,
      repo,
      "main",
      [
        ...data,
        { path: `${log}/00000000000000000001.json`, content: '{"remove":{},"add":{}}' },
        { path: `${log}/00000000000000000001.checkpoint.parquet`, content: "checkpoint" },
        { path: `${log}/_last_checkpoint`, content: '{"version":1}' },
      ],
      ["sales/part-00000-old.snappy.parquet"],
    );
    const writes = await exportRecording(repo, bucket, c1, c2, "delta");
    const isData = (k: string) => k.endsWith("-new.snappy.parquet");
    const isLog = (k: string) => k.startsWith(`${log}/0`);
    ordered(writes, isData, isLog);
    ordered(writes, isLog, (k) => k === `${log}/_last_checkpoint`);
    ordered(
      writes,
      (k) => !k.startsWith("-"),
      (k) => k.startsWith("-"),
    );
    assert.ok(writes.includes("-sales/part-00000-old.snappy.parquet"));
    await assertMirrorEqual(stack, repo, c2, bucket);
  });

  it("iceberg: data, then manifests, then table metadata, then version-hint.text, then deletes", async () => {
    const repo = await createRepo(stack, "iceberg");
    const bucket = await createBucket(stack);
    const t = "warehouse/db/events";
    const c1 = await commitObjects(stack, repo, "main", [
      { path: `${t}/data/00000-0-old.parquet`, content: "old" },
      { path: `${t}/metadata/v1.metadata.json`, content: "{}" },
      { path: `${t}/metadata/version-hint.text`, content: "1" },
    ]);
    const c2 = await commitObjects(
      stack,
      repo,
      "main",
      [
        ...Array.from({ length: 10 }, (_, i) => ({
          path: `${t}/data/ts_day=2026-11-25/0000${i}-1-new.parquet`,
          content: `rows ${i}`,
        })),
        { path: `${t}/metadata/a1b2-m0.avro`, content: "manifest" },
        { path: `${t}/metadata/snap-2-1-a1b2.avro`, content: "manifest list" },
        { path: `${t}/metadata/v2.metadata.json`, content: '{"current-snapshot-id":2}' },
        { path: `${t}/metadata/version-hint.text`, content: "2" },
      ],
      [`${t}/data/00000-0-old.parquet`],
    );
    const writes = await exportRecording(repo, bucket, c1, c2, "iceberg");
    const isData = (k: string) => k.includes("/data/") && !k.startsWith("-");
    const isManifest = (k: string) => k.endsWith(".avro");
    ordered(writes, isData, isManifest);
    ordered(writes, isManifest, (k) => k.endsWith("v2.metadata.json"));
    // The manifest list after the manifest it lists (it records the manifest's size).
    ordered(
      writes,
      (k) => k.endsWith("a1b2-m0.avro"),
      (k) => k.endsWith("snap-2-1-a1b2.avro"),
    );
    ordered(
      writes,
      (k) => k.endsWith("v2.metadata.json"),
      (k) => k.endsWith("version-hint.text"),
    );
    ordered(
      writes,
      (k) => !k.startsWith("-"),
      (k) => k.startsWith("-"),
    );
    await assertMirrorEqual(stack, repo, c2, bucket);
  });

  it("spark: _SUCCESS markers last, deletes in their round", async () => {
    const repo = await createRepo(stack, "spark");
    const bucket = await createBucket(stack);
    const c1 = await commitObjects(stack, repo, "main", [{ path: "job/old.csv", content: "old" }]);
    const c2 = await commitObjects(
      stack,
      repo,
      "main",
      [
        ...Array.from({ length: 6 }, (_, i) => ({ path: `job/part-${i}.csv`, content: `${i}` })),
        { path: "job/_SUCCESS", content: "" },
      ],
      ["job/old.csv"],
    );
    const writes = await exportRecording(repo, bucket, c1, c2, "spark");
    ordered(
      writes,
      (k) => k.startsWith("job/part-"),
      (k) => k === "job/_SUCCESS",
    );
    ordered(
      writes,
      (k) => k === "-job/old.csv",
      (k) => k === "job/_SUCCESS",
    );
    await assertMirrorEqual(stack, repo, c2, bucket);
  });

  it("a data file still backing off from an earlier failure holds back its directory's _SUCCESS (item 10)", async () => {
    const repo = await createRepo(stack, "carry");
    const bucket = await createBucket(stack);
    const exporter = makeExporter(stack, repo, bucket, "");
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "job/part-0.csv", content: "old" },
    ]);
    assert.equal((await exporter.exportAllFromCommit(c1)).status, "SUCCESS");
    // part-0's change failed to export and backs off; the next export does not try it again.
    const c2 = await commitObjects(stack, repo, "main", [
      { path: "job/part-0.csv", content: "new" },
    ]);
    const c3 = await commitObjects(stack, repo, "main", [
      { path: "job/part-1.csv", content: "1" },
      { path: "job/_SUCCESS", content: "" },
    ]);
    const result = await exporter.exportCover([c2], c3, {
      carry: [{ path: "job/part-0.csv", op: "copy", reason: "503 SlowDown" }],
    });
    assert.equal(result.status, "FAILURE");
    const keys = await listKeys(stack, bucket);
    assert.ok(!keys.has("job/_SUCCESS"), `_SUCCESS was written over a stale part-0.csv`);
    assert.ok(keys.has("job/part-1.csv"));
    assert.equal((await readKey(stack, bucket, "job/part-0.csv")).toString(), "old");
    assert.deepEqual(result.unfinished?.map((f) => f.path).sort(), [
      "job/_SUCCESS",
      "job/part-0.csv",
    ]);
  });

  it("an export with more deletes than fit in memory deletes them all and leaves no spill files (item 6)", async () => {
    const repo = await createRepo(stack, "spill");
    const bucket = await createBucket(stack);
    const empty = (await stack.lakefs.getBranch(repo, "main")).commit_id;
    const n = 600;
    const pool = new TaskPool(16);
    for (let i = 0; i < n; i++)
      await pool.submit(() =>
        gatewayPut(stack, repo, "main", {
          path: `t/part=${i % 9}/f-${i}.parquet`,
          content: `${i}`,
        }),
      );
    await pool.drain();
    const full = (await stack.lakefs.commit(repo, "main", { message: "many files" })).id;
    const spill = mkdtempSync(join(tmpdir(), "lakefs-mirror-spill-test-"));
    const files = () => readdirSync(spill, { recursive: true }).length;
    let spilled = 0;
    const exporter = makeExporter(stack, repo, bucket, "", {
      rounds: "delta",
      deferredInMemory: 20,
      spillDirectory: spill,
      onProgress: () => {
        spilled = Math.max(spilled, files());
      },
    });
    assert.equal((await exporter.exportAllFromCommit(full)).status, "SUCCESS");
    assert.equal(files(), 0);
    // The diff back to the repository's empty first commit removes every file: a VACUUM's or a
    // hard reset's worth of deletes, all of them waiting for the (here absent) copies.
    const result = await exporter.exportDiff(full, empty);
    assert.equal(result.status, "SUCCESS", result.failureLines.join("\n"));
    assert.equal(result.deleted, n);
    assert.ok(spilled > 0, "the deletes went through spill files");
    assert.equal(files(), 0, "the spill files are gone");
    const left = [...(await listKeys(stack, bucket)).keys()];
    assert.deepEqual(left, statusKeys(left));
  });
});

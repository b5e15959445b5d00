import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { SUCCESS_TEXT } from "../../src/export/status-file.ts";
import { Exporter } from "../../src/export/exporter.ts";
import { createS3Client } from "../../src/s3/client.ts";
import { S3Destination } from "../../src/s3/destination.ts";
import { lakefsGateway } from "../../src/s3/gateway.ts";
import { verifyMirror } from "../../src/verify/verify.ts";
import {
  assertMirrorEqual,
  commitObjects,
  commitPaths,
  destroyPhysicalObject,
  headKey,
  listKeys,
  makeExporter,
  mirrorDifferences,
  readKey,
  silentLogger,
  statusKeys,
} from "../helpers/mirror.ts";
import { startRefusingS3Proxy } from "../helpers/refusing-s3-proxy.ts";
import type { SeedObject } from "../helpers/mirror.ts";
import { Places, STORE_NAMES } from "../helpers/places.ts";
import type { Place } from "../helpers/places.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const MiB = 1024 * 1024;

/** Paths with every kind of character lakeFS allows that S3 clients tend to get wrong. */
const trickyObjects: SeedObject[] = [
  { path: "plain.txt", content: "plain", contentType: "text/plain", metadata: { owner: "team-a" } },
  { path: "with space/file name.csv", content: "a,b\n1,2\n", contentType: "text/csv" },
  { path: "unicode/日本語/ü-ß-é.json", content: '{"k":"v"}', contentType: "application/json" },
  { path: "percent/100%/a%20b%2F.txt", content: "percent" },
  { path: "plus/a+b+c.txt", content: "plus" },
  { path: ".hidden/.dotfile", content: "dot" },
  { path: "deep/a/b/c/d/e/f/g/h/i/j/leaf.bin", content: randomBytes(1000) },
  { path: "empty/zero-bytes", content: "" },
  { path: "tables/t1/part-0.parquet", content: randomBytes(2048) },
  { path: "tables/t1/_SUCCESS", content: "" },
  { path: "_SUCCESS", content: "" },
];

describe("exporter", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await stack.close();
  });

  async function assertMirrorEquals(repo: string, ref: string, bucket: string, prefix: string) {
    const commitId = await assertMirrorEqual(stack, repo, ref, bucket, prefix);
    // And an independent listing of both sides agrees on paths and sizes.
    const mirrored = await listKeys(stack, bucket, prefix);
    for (const k of statusKeys(mirrored.keys())) mirrored.delete(k);
    assert.deepEqual(
      [...mirrored.entries()].sort(),
      [...(await commitPaths(stack, repo, commitId)).entries()].sort(),
    );
  }

  it("verify finds an object the gateway took as a multipart upload equal to its copy, though their ETags differ", async () => {
    // pyarrow (pyiceberg) and boto3's upload_file send objects as multipart uploads: lakeFS
    // keeps the store's multipart ETag, an MD5 of part MD5s, as the checksum; a copy gets the
    // MD5 of its bytes. Regression: verify took two unequal MD5-looking strings for a difference.
    const repo = await createRepo(stack, "multi");
    const bucket = await createBucket(stack);
    const body = randomBytes(3000);
    const up = await stack.gateway.send(
      new CreateMultipartUploadCommand({ Bucket: repo, Key: "main/one-part.parquet" }),
    );
    const part = await stack.gateway.send(
      new UploadPartCommand({
        Bucket: repo,
        Key: "main/one-part.parquet",
        UploadId: up.UploadId,
        PartNumber: 1,
        Body: body,
      }),
    );
    await stack.gateway.send(
      new CompleteMultipartUploadCommand({
        Bucket: repo,
        Key: "main/one-part.parquet",
        UploadId: up.UploadId,
        MultipartUpload: { Parts: [{ ETag: part.ETag, PartNumber: 1 }] },
      }),
    );
    const commit = (await stack.lakefs.commit(repo, "main", { message: "multipart" })).id;
    const result = await makeExporter(stack, repo, bucket, "").exportAllFromCommit(commit);
    assert.equal(result.status, "SUCCESS");
    const stats = await stack.lakefs.statObject(repo, commit, "one-part.parquet");
    const copy = await headKey(stack, bucket, "one-part.parquet");
    assert.notEqual(copy.ETag?.replaceAll('"', ""), stats.checksum, "the ETags differ");
    assert.deepEqual(await readKey(stack, bucket, "one-part.parquet"), body);
    await assertMirrorEquals(repo, commit, bucket, "");
    // And a real difference is still found, by the bytes.
    await stack.s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: "one-part.parquet", Body: randomBytes(3000) }),
    );
    assert.deepEqual(
      (await mirrorDifferences(stack, repo, commit, bucket, "")).map((d) => [d.kind, d.path]),
      [["content", "one-part.parquet"]],
    );
  });

  it("writes _SUCCESS files after all other data, and the status file last", async () => {
    const repo = await createRepo(stack, "rounds");
    const bucket = await createBucket(stack);
    const objects: SeedObject[] = [];
    for (let t = 0; t < 4; t++) {
      for (let p = 0; p < 10; p++)
        objects.push({ path: `tables/t${t}/part-${p}`, content: `t${t}p${p}` });
      objects.push({ path: `tables/t${t}/_SUCCESS`, content: "" });
    }
    const commit = await commitObjects(stack, repo, "main", objects);
    // Observe the order of the real write requests the S3 server receives.
    const writes: string[] = [];
    stack.s3.middlewareStack.add(
      (next, context) => async (args) => {
        const out = await next(args);
        const key = (args.input as { Key?: string }).Key;
        if (context.commandName !== "HeadObjectCommand" && key?.startsWith("r/"))
          writes.push(key.slice(2));
        return out;
      },
      { step: "initialize", name: "recordWriteOrder" },
    );
    try {
      const result = await makeExporter(stack, repo, bucket, "r/", {
        concurrency: 16,
        lean: false,
      }).exportAllFromCommit(commit);
      assert.equal(result.status, "SUCCESS");
    } finally {
      stack.s3.middlewareStack.remove("recordWriteOrder");
    }
    const lastData = Math.max(
      ...writes.map((k, i) => (k.endsWith("/part-0") || k.includes("/part-") ? i : -1)),
    );
    const firstSuccess = writes.findIndex(
      (k) => k.endsWith("_SUCCESS") && !k.startsWith("EXPORT_"),
    );
    assert.equal(writes.length, objects.length + 1);
    assert.ok(
      firstSuccess > lastData,
      `a _SUCCESS was written at ${firstSuccess}, before data at ${lastData}`,
    );
    assert.match(writes.at(-1)!, /^EXPORT_.*_SUCCESS$/);
  });

  it("a failure in round 1 writes no _SUCCESS file and a FAILURE file that names the object", async () => {
    const repo = await createRepo(stack, "fail");
    const bucket = await createBucket(stack);
    const commit = await commitObjects(stack, repo, "main", [
      { path: "data/ok.csv", content: "fine" },
      { path: "data/vanished.csv", content: "will vanish" },
      { path: "data/_SUCCESS", content: "" },
    ]);
    await destroyPhysicalObject(stack, repo, commit, "data/vanished.csv");

    const result = await makeExporter(stack, repo, bucket, "x/").exportAllFromCommit(commit);
    assert.equal(result.status, "FAILURE");
    assert.equal(result.failed, 1);
    const keys = await listKeys(stack, bucket, "x/");
    assert.equal(keys.has("data/ok.csv"), true);
    assert.equal(keys.has("data/vanished.csv"), false);
    assert.equal(keys.has("data/_SUCCESS"), false, "round 2 must not run after a failed round 1");
    const statuses = statusKeys(keys.keys());
    assert.equal(statuses.length, 1);
    assert.match(statuses[0]!, new RegExp(`^EXPORT_${commit}_.*_FAILURE$`));
    const text = (await readKey(stack, bucket, `x/${statuses[0]}`)).toString("utf8");
    assert.equal(text.trimEnd().split("\n").length, 1);
    assert.match(text, /^copy "data\/vanished\.csv": /);
  });

  it("streams through lakeFS when asked, multipart above the threshold, byte for byte", async () => {
    const repo = await createRepo(stack, "stream");
    const bucket = await createBucket(stack);
    const big = randomBytes(12 * MiB + 123);
    const commit = await commitObjects(stack, repo, "main", [
      {
        path: "big.bin",
        content: big,
        contentType: "application/x-test",
        metadata: { size: "big" },
      },
      { path: "small.txt", content: "small" },
    ]);
    const result = await makeExporter(stack, repo, bucket, "s/", {
      copyMode: "stream",
      sizes: { multipartThresholdBytes: 8 * MiB, multipartPartSizeBytes: 5 * MiB },
    }).exportAllFromCommit(commit);
    assert.equal(result.status, "SUCCESS");
    assert.equal(result.streamedCopies, 2);
    assert.equal(result.bytesStreamed, big.length + 5);
    const head = await headKey(stack, bucket, "s/big.bin");
    assert.match(head.ETag ?? "", /-3"$/, "a 3-part multipart upload");
    assert.equal(head.ContentType, "application/x-test");
    assert.deepEqual(head.Metadata, { size: "big" });
    assert.deepEqual(await readKey(stack, bucket, "s/big.bin"), big);
    await assertMirrorEquals(repo, commit, bucket, "s/");
  });

  it("copies large objects server-side in parts (UploadPartCopy) above the copy threshold", async () => {
    const repo = await createRepo(stack, "partcopy");
    const bucket = await createBucket(stack);
    const big = randomBytes(11 * MiB);
    const commit = await commitObjects(stack, repo, "main", [
      { path: "p/big.bin", content: big, metadata: { k: "v" } },
    ]);
    const result = await makeExporter(stack, repo, bucket, "", {
      copyMode: "server-side",
      sizes: { copyMultipartThresholdBytes: 6 * MiB, copyPartSizeBytes: 5 * MiB },
    }).exportAllFromCommit(commit);
    assert.equal(result.status, "SUCCESS");
    assert.equal(result.serverSideCopies, 1);
    assert.equal(result.bytesStreamed, 0);
    const head = await headKey(stack, bucket, "p/big.bin");
    assert.match(head.ETag ?? "", /-3"$/);
    assert.deepEqual(head.Metadata, { k: "v" });
    assert.deepEqual(await readKey(stack, bucket, "p/big.bin"), big);
  });

  it("auto mode streams when the source bucket refuses server-side copies, and remembers it", async () => {
    const repo = await createRepo(stack, "fallback");
    const bucket = await createBucket(stack);
    const objects = Array.from({ length: 5 }, (_, i) => ({
      path: `f/${i}.txt`,
      content: `object ${i}`,
    }));
    const commit = await commitObjects(stack, repo, "main", objects);
    const proxy = await startRefusingS3Proxy(stack.env.AWS_ENDPOINT_URL);
    const s3 = createS3Client({
      endpoint: proxy.url,
      region: stack.env.AWS_REGION,
      maxAttempts: 1,
      credentials: {
        accessKeyId: stack.env.AWS_ACCESS_KEY_ID,
        secretAccessKey: stack.env.AWS_SECRET_ACCESS_KEY,
      },
    });
    try {
      const result = await new Exporter({
        lakefs: stack.lakefs,
        repository: repo,
        destination: new S3Destination(s3, { bucket, prefix: "" }),
        logger: silentLogger,
        concurrency: 1,
      }).exportAllFromCommit(commit);
      assert.equal(result.status, "SUCCESS");
      assert.equal(result.streamedCopies, 5);
      assert.equal(proxy.refused(), 1, "after the first refusal, no more copies are tried");
      await assertMirrorEquals(repo, commit, bucket, "");
    } finally {
      s3.destroy();
      await proxy.close();
    }
  });
  it("writes nothing, not even a status file, before writesAfter settles; its rejection ends the export", async () => {
    const repo = await createRepo(stack, "gate");
    const bucket = await createBucket(stack);
    const c1 = await commitObjects(stack, repo, "main", [{ path: "a.txt", content: "one" }]);
    // A copy, a later-round _SUCCESS file and a delete: every kind of write an export makes.
    await stack.lakefs.deleteObject(repo, "main", "a.txt");
    const c2 = await commitObjects(stack, repo, "main", [
      { path: "b.txt", content: "two" },
      { path: "c/d.txt", content: "three" },
      { path: "c/_SUCCESS", content: "" },
    ]);
    const exporter = (prefix: string) => makeExporter(stack, repo, bucket, prefix);
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let settled = false;
    const running = exporter("gated/").exportCover([c1], c2, { writesAfter: gate });
    void running.finally(() => (settled = true)).catch(() => undefined);
    try {
      await new Promise((r) => setTimeout(r, 700));
      assert.equal(settled, false);
      assert.equal((await listKeys(stack, bucket, "gated/")).size, 0);
    } finally {
      open();
    }
    const result = await running;
    assert.equal(result.status, "SUCCESS");
    assert.equal(result.copied, 3);
    assert.equal(result.deleted, 1);
    assert.equal((await readKey(stack, bucket, "gated/c/d.txt")).toString(), "three");

    // Rejected: nothing at a new prefix, for the diff and for an empty one (its status file).
    for (const from of [c1, c2]) {
      await assert.rejects(
        exporter("refused/").exportCover([from], c2, {
          writesAfter: Promise.reject(new Error("the attempt was not recorded")),
        }),
        /the attempt was not recorded/,
      );
    }
    assert.equal((await listKeys(stack, bucket, "refused/")).size, 0);
  });
});

// The three modes on each store of the stack, each store read with its own client library.
for (const store of STORE_NAMES) {
  describe(`exporter on ${store}`, () => {
    let stack: Stack;
    let places: Places;
    before(async () => {
      stack = await connectStack();
      places = new Places(stack);
    });
    after(async () => {
      await places.close();
      await stack.close();
    });

    const exporterAt = (repo: string, place: Place) =>
      new Exporter({
        lakefs: stack.lakefs,
        repository: repo,
        destination: place.destination(),
        logger: silentLogger,
        concurrency: 8,
        retry: { retries: 1, minTimeoutMs: 10, maxTimeoutMs: 20 },
      });

    /** The keys of a place without its status files, with their sizes. */
    async function mirrored(place: Place): Promise<[string, number][]> {
      const keys = await place.keys();
      for (const k of statusKeys(keys.keys())) keys.delete(k);
      return [...keys.entries()].sort();
    }

    async function assertPlaceEquals(repo: string, ref: string, place: Place) {
      const r = await verifyMirror({
        lakefs: stack.lakefs,
        repository: repo,
        ref,
        destination: place.destination(),
        gateway: lakefsGateway(stack.gateway),
      });
      assert.deepEqual(r.differences, []);
      // And an independent listing of both sides agrees on paths and sizes.
      assert.deepEqual(
        await mirrored(place),
        [...(await commitPaths(stack, repo, r.commitId)).entries()].sort(),
      );
    }

    it("exports a whole branch: every path, byte, Content-Type and metadata, then a SUCCESS file", async () => {
      const repo = await createRepo(stack, "full");
      const place = await places.place(store, "mirror/");
      const commit = await commitObjects(stack, repo, "main", trickyObjects);
      // Staged but uncommitted data must not be exported.
      await stack.lakefs.uploadObject(repo, "main", "staged-only.txt", "not committed");

      const result = await exporterAt(repo, place).exportAllFromBranch("main");
      assert.equal(result.status, "SUCCESS");
      assert.equal(result.commitId, commit);
      assert.equal(result.copied, trickyObjects.length);
      assert.equal(result.failed, 0);
      // The stack's lakeFS keeps its data on MinIO: copies into MinIO never pass through
      // lakeFS; into the other stores every object is streamed.
      if (store === "s3") assert.equal(result.serverSideCopies, trickyObjects.length);
      else assert.equal(result.streamedCopies, trickyObjects.length);

      for (const o of trickyObjects)
        assert.deepEqual(await place.read(o.path), Buffer.from(o.content), o.path);
      const head = await place.head("plain.txt");
      assert.equal(head?.contentType, "text/plain");
      assert.deepEqual(head.metadata, { owner: "team-a" });
      assert.equal(
        (await place.head("unicode/日本語/ü-ß-é.json"))?.contentType,
        "application/json",
      );

      const keys = await place.keys();
      assert.equal(keys.has("staged-only.txt"), false);
      const statuses = statusKeys(keys.keys());
      assert.equal(statuses.length, 1);
      assert.match(
        statuses[0]!,
        new RegExp(
          `^EXPORT_${commit}_\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z_SUCCESS$`,
        ),
      );
      assert.equal((await place.read(statuses[0]!))?.toString("utf8"), SUCCESS_TEXT);
      await assertPlaceEquals(repo, commit, place);
    });

    it("exports a diff: copies added and changed objects, deletes removed ones, touches nothing else", async () => {
      const repo = await createRepo(stack, "diff");
      const place = await places.place(store, "m/");
      const c1 = await commitObjects(stack, repo, "main", [
        { path: "keep.txt", content: "keep" },
        { path: "same-size.txt", content: "AAAA" },
        { path: "meta-only.txt", content: "meta", contentType: "text/plain", metadata: { v: "1" } },
        { path: "gone/one.txt", content: "1" },
        { path: "gone/two.txt", content: "2" },
      ]);
      const exporter = exporterAt(repo, place);
      assert.equal((await exporter.exportAllFromCommit(c1)).status, "SUCCESS");
      // A key the export never wrote, under the same prefix.
      await place.put("foreign.txt", "mine");

      const c2 = await commitObjects(
        stack,
        repo,
        "main",
        [
          { path: "same-size.txt", content: "BBBB" },
          {
            path: "meta-only.txt",
            content: "meta",
            contentType: "text/markdown",
            metadata: { v: "2" },
          },
          { path: "new/added.txt", content: "added" },
        ],
        ["gone/one.txt", "gone/two.txt"],
      );
      const result = await exporter.exportFrom("main", c1);
      assert.equal(result.status, "SUCCESS");
      assert.equal(result.commitId, c2);
      assert.equal(result.fromCommitId, c1);
      assert.equal(result.copied, 3, "only what changed is copied");
      assert.equal(result.deleted, 2);

      assert.equal((await place.read("same-size.txt"))?.toString(), "BBBB");
      const meta = await place.head("meta-only.txt");
      assert.equal(meta?.contentType, "text/markdown");
      assert.deepEqual(meta.metadata, { v: "2" });
      const keys = await place.keys();
      assert.equal(keys.has("gone/one.txt"), false);
      assert.equal(keys.has("gone/two.txt"), false);
      assert.equal((await place.read("foreign.txt"))?.toString(), "mine");
      assert.equal(statusKeys(keys.keys()).filter((k) => k.includes(c2)).length, 1);

      const verified = await verifyMirror({
        lakefs: stack.lakefs,
        repository: repo,
        ref: c2,
        destination: place.destination(),
        gateway: lakefsGateway(stack.gateway),
      });
      assert.deepEqual(verified.differences, [{ kind: "extra", path: "foreign.txt" }]);
    });

    it("a whole-commit export never deletes, and re-running an export changes nothing", async () => {
      const repo = await createRepo(stack, "commit");
      const place = await places.place(store, "");
      const c1 = await commitObjects(stack, repo, "main", [
        { path: "a.txt", content: "a" },
        { path: "b.txt", content: "b" },
      ]);
      await commitObjects(stack, repo, "main", [], ["b.txt"]);
      const c3 = await commitObjects(stack, repo, "main", [{ path: "c.txt", content: "c" }]);
      const exporter = exporterAt(repo, place);
      assert.equal((await exporter.exportAllFromCommit(c1)).status, "SUCCESS");
      const again = await exporter.exportAllFromCommit(c3);
      assert.equal(again.status, "SUCCESS");
      assert.equal((await place.keys()).has("b.txt"), true, "full exports copy, they never delete");

      // A whole export copies every object again (as the Spark exporter does), and the same.
      const before = await mirrored(place);
      const rerun = await exporter.exportAllFromCommit(c3);
      assert.equal(rerun.status, "SUCCESS");
      assert.deepEqual(await mirrored(place), before);
      assert.equal((await place.read("c.txt"))?.toString(), "c");
    });
  });
}

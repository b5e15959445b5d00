// The stack's Azure Blob Storage (Azurite) and Google Cloud Storage (fake-gcs-server) answer
// the requests the product's Azure and GCS destinations make, through the same client libraries:
// metadata, listing in key order, conditional creates and replaces, batched deletes and
// server-side copies on Azure; resumable uploads, rewrites and generation preconditions on GCS.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { BlobSASPermissions, RestError } from "@azure/storage-blob";
import type { BlobServiceClient, ContainerClient } from "@azure/storage-blob";
import type { Bucket, Storage } from "@google-cloud/storage";
import { stackEnv, uniqueName } from "../helpers/stack.ts";
import type { StackEnv } from "../helpers/stack.ts";
import { azureBlobService, gcsStorage } from "../helpers/stores.ts";

/** The status and service error code a rejected Azure call carries. */
async function azureRefusal(call: Promise<unknown>): Promise<[number | undefined, string]> {
  try {
    await call;
  } catch (err) {
    if (err instanceof RestError) return [err.statusCode, String(err.code)];
    throw err;
  }
  assert.fail("the call succeeded, but was expected to be refused");
}

/** The HTTP status a rejected GCS call carries. */
async function gcsRefusal(call: Promise<unknown>): Promise<number> {
  try {
    await call;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === "number") return code;
    throw err;
  }
  assert.fail("the call succeeded, but was expected to be refused");
}

const md5 = (b: Buffer) => createHash("md5").update(b).digest("base64");

/** One request of GCS's resumable upload protocol to a session URL. */
const putChunk = (uri: string, range: string, bytes?: Buffer) =>
  fetch(uri, { method: "PUT", headers: { "content-range": range }, body: bytes });

describe("Azurite, the stack's Azure Blob Storage", () => {
  let env: StackEnv;
  let service: BlobServiceClient;
  let container: ContainerClient;
  before(async () => {
    env = await stackEnv();
    service = azureBlobService(env);
    container = service.getContainerClient(uniqueName("stores"));
    await container.create();
  });
  after(async () => {
    await container?.deleteIfExists();
  });

  it("is the emulator named by the stack's environment, on loopback", async () => {
    assert.match(env.AZURITE_BLOB_ENDPOINT, /^http:\/\/127\.0\.0\.1:\d+\/devstoreaccount1$/);
    assert.equal(service.url.replace(/\/$/, ""), env.AZURITE_BLOB_ENDPOINT);
    const props = await container.getProperties();
    assert.ok(props.etag, "the new container has an ETag");
  });

  it("keeps a blob's content, Content-Type and metadata", async () => {
    const body = Buffer.from("hello Azure");
    const blob = container.getBlockBlobClient("a/hello.txt");
    await blob.uploadData(body, {
      blobHTTPHeaders: {
        blobContentType: "text/plain",
        blobContentMD5: createHash("md5").update(body).digest(),
      },
      metadata: { owner: "stores", lakefs_checksum: "abc123" },
    });
    const props = await blob.getProperties();
    assert.equal(props.contentType, "text/plain");
    assert.equal(props.contentLength, body.length);
    assert.deepEqual(props.metadata, { owner: "stores", lakefs_checksum: "abc123" });
    assert.equal(Buffer.from(props.contentMD5 ?? []).toString("base64"), md5(body));
    assert.deepEqual(await blob.downloadToBuffer(), body);
  });

  it("refuses metadata names that are no C# identifiers, as Azure does", async () => {
    const blob = container.getBlockBlobClient("a/bad-metadata");
    for (const name of ["my-key", "1st"])
      assert.deepEqual(
        await azureRefusal(blob.upload("x", 1, { metadata: { [name]: "v" } })),
        [400, "InvalidMetadata"],
        name,
      );
    assert.equal(await blob.exists(), false);
  });

  it("lists blobs under a prefix in key order, with their metadata", async () => {
    const names = ["list/b", "list/a/2", "list/a/10", "list/c.txt", "other/z"];
    for (const [i, name] of names.entries())
      await container.getBlockBlobClient(name).upload(`v${i}`, 2, { metadata: { n: String(i) } });
    const listed: [string, string | undefined][] = [];
    for await (const item of container.listBlobsFlat({ prefix: "list/", includeMetadata: true }))
      listed.push([item.name, item.metadata?.n]);
    assert.deepEqual(listed, [
      ["list/a/10", "2"],
      ["list/a/2", "1"],
      ["list/b", "0"],
      ["list/c.txt", "3"],
    ]);
  });

  it("refuses a create over an existing blob (If-None-Match: *) and a replace with a stale ETag", async () => {
    const blob = container.getBlockBlobClient("lease/holder");
    const first = await blob.upload("owner-1", 7, { conditions: { ifNoneMatch: "*" } });
    assert.deepEqual(
      await azureRefusal(blob.upload("owner-2", 7, { conditions: { ifNoneMatch: "*" } })),
      [409, "BlobAlreadyExists"],
    );
    assert.equal((await blob.downloadToBuffer()).toString(), "owner-1");

    const second = await blob.upload("owner-1 renewed", 15, {
      conditions: { ifMatch: first.etag },
    });
    assert.notEqual(second.etag, first.etag);
    assert.deepEqual(
      await azureRefusal(blob.upload("owner-3", 7, { conditions: { ifMatch: first.etag } })),
      [412, "ConditionNotMet"],
    );
    assert.equal((await blob.downloadToBuffer()).toString(), "owner-1 renewed");
  });

  it("deletes 255 blobs and reports a missing one in one batch of 256 (the batch API's limit)", async () => {
    const doomed = Array.from({ length: 255 }, (_, i) => `batch/${String(i).padStart(3, "0")}`);
    const pool = [...doomed, "batch/keep"];
    for (let i = 0; i < pool.length; i += 32)
      await Promise.all(
        pool.slice(i, i + 32).map((n) => container.getBlockBlobClient(n).upload("x", 1)),
      );
    const urls = [...doomed, "batch/never-written"].map((n) => container.getBlockBlobClient(n).url);
    const res = await container.getBlobBatchClient().deleteBlobs(urls, service.credential);
    assert.equal(res.subResponses.length, 256);
    assert.equal(res.subResponsesSucceededCount, 255);
    assert.equal(res.subResponsesFailedCount, 1);
    const failed = res.subResponses.filter((r) => r.status !== 202);
    assert.deepEqual(
      failed.map((r) => [r.status, r.errorCode, r._request.url]),
      [[404, "BlobNotFound", container.getBlockBlobClient("batch/never-written").url]],
    );
    const left: string[] = [];
    for await (const item of container.listBlobsFlat({ prefix: "batch/" })) left.push(item.name);
    assert.deepEqual(left, ["batch/keep"]);
  });

  it("copies server-side: Copy Blob From URL, and Put Block From URL with a SAS source", async () => {
    const body = randomBytes(64 * 1024);
    const src = container.getBlockBlobClient("copy/src.bin");
    await src.uploadData(body, { metadata: { origin: "src" } });

    const whole = container.getBlockBlobClient("copy/whole.bin");
    const copied = await whole.syncCopyFromURL(src.url);
    assert.equal(copied.copyStatus, "success");
    assert.deepEqual(await whole.downloadToBuffer(), body);
    assert.deepEqual((await whole.getProperties()).metadata, { origin: "src" });

    // Blocks from two ranges of the source, committed in reverse order.
    const sas = await src.generateSasUrl({
      permissions: BlobSASPermissions.parse("r"),
      expiresOn: new Date(Date.now() + 3_600_000),
    });
    const blocks = container.getBlockBlobClient("copy/blocks.bin");
    const ids = ["block-0", "block-1"].map((id) => Buffer.from(id).toString("base64"));
    const half = body.length / 2;
    await blocks.stageBlockFromURL(ids[0]!, sas, 0, half);
    await blocks.stageBlockFromURL(ids[1]!, sas, half, half);
    await blocks.commitBlockList([ids[1]!, ids[0]!]);
    assert.deepEqual(
      await blocks.downloadToBuffer(),
      Buffer.concat([body.subarray(half), body.subarray(0, half)]),
    );
  });
});

describe("fake-gcs-server, the stack's Google Cloud Storage", () => {
  let env: StackEnv;
  let storage: Storage;
  let bucket: Bucket;
  before(async () => {
    env = await stackEnv();
    storage = gcsStorage(env);
    [bucket] = await storage.createBucket(uniqueName("stores"));
  });
  after(async () => {
    await bucket?.deleteFiles({ force: true });
    await bucket?.delete({ ignoreNotFound: true });
  });

  it("is the emulator named by the stack's environment, on loopback", async () => {
    assert.match(env.GCS_ENDPOINT, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(env.STORAGE_EMULATOR_HOST, env.GCS_ENDPOINT);
    const [exists] = await bucket.exists();
    assert.equal(exists, true);
    const [missing] = await storage.bucket(uniqueName("absent")).exists();
    assert.equal(missing, false);
  });

  it("keeps an object's content, Content-Type and metadata, and lists in key order", async () => {
    const body = Buffer.from("hello GCS");
    await bucket.file("a/hello.txt").save(body, {
      resumable: false,
      contentType: "text/plain",
      metadata: { metadata: { owner: "stores", "lakefs-checksum": "abc123" } },
    });
    const [meta] = await bucket.file("a/hello.txt").getMetadata();
    assert.equal(meta.contentType, "text/plain");
    assert.equal(Number(meta.size), body.length);
    assert.equal(meta.md5Hash, md5(body));
    assert.deepEqual(meta.metadata, { owner: "stores", "lakefs-checksum": "abc123" });
    const [got] = await bucket.file("a/hello.txt").download();
    assert.deepEqual(got, body);

    for (const name of ["list/b", "list/a/2", "list/a/10", "list/c.txt", "other/z"])
      await bucket.file(name).save(name, { resumable: false });
    const [files] = await bucket.getFiles({ prefix: "list/" });
    assert.deepEqual(
      files.map((f) => f.name),
      ["list/a/10", "list/a/2", "list/b", "list/c.txt"],
    );
  });

  it("assembles a resumable upload sent in several chunks", async () => {
    // Chunks must be multiples of 256 KiB; 2.5 chunks make the client send three PUTs to the
    // session URL that fake-gcs-server handed out (its -external-url).
    const chunkSize = 256 * 1024;
    const body = randomBytes(chunkSize * 2 + chunkSize / 2);
    const file = bucket.file("resumable/big.bin");
    await file.save(body, {
      resumable: true,
      chunkSize,
      contentType: "application/octet-stream",
      metadata: { metadata: { mode: "resumable" } },
    });
    const [meta] = await file.getMetadata();
    assert.equal(Number(meta.size), body.length);
    assert.equal(meta.md5Hash, md5(body));
    assert.deepEqual(meta.metadata, { mode: "resumable" });
    const [got] = await file.download();
    assert.ok(got.equals(body), "the downloaded bytes are the uploaded ones");
  });

  it("takes a resumable session's chunks by Content-Range, answering 308 until the last", async () => {
    const chunk = 256 * 1024;
    const body = randomBytes(chunk + 1000);
    const file = bucket.file("resumable/chunked.bin");
    const [uri] = await file.createResumableUpload({
      metadata: { contentType: "application/octet-stream", metadata: { mode: "chunked" } },
    });
    assert.ok(uri.startsWith(`${env.GCS_ENDPOINT}/`), `the session URL ${uri} is the stack's`);
    const first = await putChunk(uri, `bytes 0-${chunk - 1}/*`, body.subarray(0, chunk));
    assert.equal(first.status, 308);
    assert.equal(first.headers.get("range"), `bytes=0-${chunk - 1}`);
    const [before] = await file.exists();
    assert.equal(before, false, "no object before the session's last chunk");
    const last = await putChunk(
      uri,
      `bytes ${chunk}-${body.length - 1}/${body.length}`,
      body.subarray(chunk),
    );
    assert.equal(last.status, 200, await last.text());

    const [meta] = await file.getMetadata();
    assert.equal(Number(meta.size), body.length);
    assert.equal(meta.md5Hash, md5(body));
    assert.deepEqual(meta.metadata, { mode: "chunked" });
  });

  it("cannot resume a cut session, unlike GCS (a known gap of the emulator)", async () => {
    // GCS answers a status query (`Content-Range: bytes */*`, no body) with 308 and the range
    // it holds, and keeps one copy of a chunk sent again from an offset it already has.
    // fake-gcs-server finalizes the object on the query and appends a re-sent chunk again, so
    // resuming after a cut body cannot be tested here. This test fails once it can.
    const chunk = 256 * 1024;
    const body = randomBytes(chunk);
    const queried = bucket.file("resumable/queried.bin");
    const [uri] = await queried.createResumableUpload();
    assert.equal((await putChunk(uri, `bytes 0-${chunk - 1}/*`, body)).status, 308);
    assert.equal((await putChunk(uri, "bytes */*")).status, 200);
    const [meta] = await queried.getMetadata();
    assert.equal(Number(meta.size), chunk, "the status query made the object");

    const resent = bucket.file("resumable/resent.bin");
    const [uri2] = await resent.createResumableUpload();
    assert.equal((await putChunk(uri2, `bytes 0-${chunk - 1}/*`, body)).status, 308);
    assert.equal((await putChunk(uri2, `bytes 0-${chunk - 1}/${chunk}`, body)).status, 200);
    const [meta2] = await resent.getMetadata();
    assert.equal(Number(meta2.size), 2 * chunk, "the chunk sent again was appended");
  });

  it("rewrites an object into another bucket, server-side, with its metadata", async () => {
    const [other] = await storage.createBucket(uniqueName("stores-dest"));
    try {
      const body = randomBytes(300 * 1024);
      const src = bucket.file("rewrite/src.bin");
      await src.save(body, {
        resumable: false,
        contentType: "application/x-parquet",
        metadata: { metadata: { origin: "src" } },
      });
      const [srcMeta] = await src.getMetadata();
      const [copy] = await src.copy(other.file("copied/dst.bin"));
      const [meta] = await copy.getMetadata();
      assert.equal(meta.bucket, other.name);
      assert.equal(meta.name, "copied/dst.bin");
      assert.equal(meta.md5Hash, md5(body));
      assert.equal(meta.contentType, "application/x-parquet");
      assert.deepEqual(meta.metadata, { origin: "src" });
      assert.notEqual(meta.generation, undefined);
      const [got] = await copy.download();
      assert.ok(got.equals(body));
      // The source is untouched.
      const [after] = await src.getMetadata();
      assert.equal(after.generation, srcMeta.generation);
    } finally {
      await other.deleteFiles({ force: true });
      await other.delete({ ignoreNotFound: true });
    }
  });

  it("creates only where nothing is (ifGenerationMatch=0) and replaces only the generation named", async () => {
    const file = bucket.file("lease/holder");
    await file.save("owner-1", { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
    const [first] = await file.getMetadata();
    assert.ok(Number(first.generation) > 0);
    assert.equal(
      await gcsRefusal(
        file.save("owner-2", { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } }),
      ),
      412,
    );
    // The same precondition carried by a resumable session is applied when it completes.
    assert.equal(
      await gcsRefusal(
        file.save("owner-2", { resumable: true, preconditionOpts: { ifGenerationMatch: 0 } }),
      ),
      412,
    );
    assert.equal((await file.download())[0].toString(), "owner-1");

    await file.save("owner-1 renewed", {
      resumable: false,
      preconditionOpts: { ifGenerationMatch: Number(first.generation) },
    });
    const [second] = await file.getMetadata();
    assert.notEqual(second.generation, first.generation);
    assert.equal(
      await gcsRefusal(
        file.save("owner-3", {
          resumable: false,
          preconditionOpts: { ifGenerationMatch: Number(first.generation) },
        }),
      ),
      412,
    );
    assert.equal((await file.download())[0].toString(), "owner-1 renewed");
  });

  it("ignores a rewrite's destination precondition, unlike GCS (a known gap of the emulator)", async () => {
    // GCS answers 412 to a rewrite with ifGenerationMatch=0 onto an existing object;
    // fake-gcs-server overwrites it. Code that fences a copy by the destination's generation
    // cannot be tested here. This test fails once the emulator honours the precondition.
    await bucket.file("gap/dst").save("existing", { resumable: false });
    await bucket.file("gap/src").save("source", { resumable: false });
    await bucket
      .file("gap/src")
      .copy(bucket.file("gap/dst"), { preconditionOpts: { ifGenerationMatch: 0 } });
    assert.equal((await bucket.file("gap/dst").download())[0].toString(), "source");
  });
});

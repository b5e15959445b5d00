import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { DestinationError } from "../../src/errors.ts";
import { createS3Client } from "../../src/s3/client.ts";
import { S3Destination } from "../../src/s3/destination.ts";
import { LeanS3 } from "../../src/s3/lean.ts";
import { connectStack, createBucket } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

// Keys a URL path must encode, and metadata S3 carries as it is.
const keys = [
  "plain/a.txt",
  "with space/and+plus.csv",
  "percent%41/x",
  "brackets!'()*/y",
  ".hidden/.dot",
  "ünïcödé/日本語/😀.bin",
  "tilde~/semi;colon=eq&amp",
];

describe("the lean request path and the SDK write and read the same", () => {
  let stack: Stack;
  let bucket: string;
  before(async () => {
    stack = await connectStack();
    bucket = await createBucket(stack, "lean");
    for (const [i, key] of keys.entries())
      await stack.s3.send(
        new PutObjectCommand({ Bucket: bucket, Key: `src/${key}`, Body: `object ${i} ${key}` }),
      );
  });
  after(() => stack.close());

  it("CopyObject and HeadObject give what the SDK's own requests give, key for key", async () => {
    const viaSdk = new S3Destination(stack.s3, { bucket, prefix: "sdk/" });
    const viaLean = new S3Destination(stack.s3, { bucket, prefix: "lean/" }, {}, stack.lean);
    const meta = { contentType: "text/csv; charset=utf-8", metadata: { owner: "team a", n: "1" } };
    for (const key of keys) {
      for (const d of [viaSdk, viaLean])
        await d.serverSideCopy(
          { scheme: "s3", container: bucket, key: `src/${key}` },
          key,
          10,
          meta,
        );
      const read = async (prefix: string) => {
        const head = await stack.s3.send(
          new HeadObjectCommand({ Bucket: bucket, Key: `${prefix}${key}` }),
        );
        const got = await stack.s3.send(
          new GetObjectCommand({ Bucket: bucket, Key: `${prefix}${key}` }),
        );
        const body = await got.Body!.transformToString();
        return { type: head.ContentType, meta: head.Metadata, etag: head.ETag, body };
      };
      assert.deepEqual(await read("lean/"), await read("sdk/"), key);
      // Reading back: the lean HEAD and the SDK's agree on every field.
      const sdkHead = await new S3Destination(stack.s3, { bucket, prefix: "lean/" }).head(key);
      assert.deepEqual(await viaLean.head(key), sdkHead, key);
    }
    assert.equal(await viaLean.head("no/such/key"), undefined);
  });

  it("S3's refusals carry the same code, status and retriability as through the SDK", async () => {
    const cases = [
      { source: { scheme: "s3", container: bucket, key: "src/missing" }, dest: bucket },
      { source: { scheme: "s3", container: "no-such-bucket-lean", key: "x" }, dest: bucket },
      {
        source: { scheme: "s3", container: bucket, key: `src/${keys[0]}` },
        dest: "no-such-bucket-lean",
      },
    ];
    const meta = { contentType: undefined, metadata: {} };
    for (const c of cases) {
      const failure = async (d: S3Destination) => {
        try {
          await d.serverSideCopy(c.source, "k", 1, meta);
        } catch (err) {
          assert.ok(err instanceof DestinationError);
          return {
            reason: err.reason,
            storeCode: err.storeCode,
            httpStatus: err.httpStatus,
            retriable: err.retriable,
          };
        }
        assert.fail("the copy succeeded");
      };
      const sdk = await failure(new S3Destination(stack.s3, { bucket: c.dest, prefix: "" }));
      const lean = await failure(
        new S3Destination(stack.s3, { bucket: c.dest, prefix: "" }, {}, stack.lean),
      );
      assert.deepEqual(lean, sdk, JSON.stringify(c));
      assert.equal(lean.retriable, false);
    }
  });

  it("signs with the client's own credential provider, and a wrong secret is refused as through the SDK", async () => {
    let calls = 0;
    const good = {
      accessKeyId: stack.env.AWS_ACCESS_KEY_ID,
      secretAccessKey: stack.env.AWS_SECRET_ACCESS_KEY,
    };
    const counted = createS3Client({
      endpoint: stack.env.AWS_ENDPOINT_URL,
      region: stack.env.AWS_REGION,
    });
    // A provider as roles give: short-lived credentials, so the client's memoizing wrapper
    // asks the provider again before each request.
    counted.config.credentials = () => {
      calls++;
      return Promise.resolve({ ...good, expiration: new Date(Date.now() + 1000) });
    };
    const lean = new LeanS3(counted, {
      maxSockets: 4,
      connectTimeoutMs: 2000,
      deadlines: { idleMs: 5000 },
    });
    const bad = createS3Client({
      endpoint: stack.env.AWS_ENDPOINT_URL,
      region: stack.env.AWS_REGION,
      credentials: { ...good, secretAccessKey: "wrong" },
      maxAttempts: 1,
    });
    const badLean = new LeanS3(bad, {
      maxSockets: 4,
      connectTimeoutMs: 2000,
      deadlines: { idleMs: 5000 },
    });
    try {
      const d = new S3Destination(counted, { bucket, prefix: "provider/" }, {}, lean);
      const meta = { contentType: undefined, metadata: {} };
      await d.serverSideCopy(
        { scheme: "s3", container: bucket, key: `src/${keys[0]}` },
        "a",
        1,
        meta,
      );
      await d.serverSideCopy(
        { scheme: "s3", container: bucket, key: `src/${keys[1]}` },
        "b",
        1,
        meta,
      );
      assert.ok(calls >= 2, `credential provider called ${calls} times`);
      const refused = async (dest: S3Destination) =>
        dest
          .serverSideCopy({ scheme: "s3", container: bucket, key: `src/${keys[0]}` }, "c", 1, meta)
          .then(
            () => assert.fail("a wrong secret was accepted"),
            (err: unknown) => {
              assert.ok(err instanceof DestinationError);
              return [err.storeCode, err.httpStatus, err.retriable];
            },
          );
      const viaLean = await refused(new S3Destination(bad, { bucket, prefix: "" }, {}, badLean));
      const viaSdk = await refused(new S3Destination(bad, { bucket, prefix: "" }));
      assert.deepEqual(viaLean, viaSdk);
      assert.equal(viaLean[0], "SignatureDoesNotMatch");
    } finally {
      counted.destroy();
      bad.destroy();
      await lean.close();
      await badLean.close();
    }
  });
});

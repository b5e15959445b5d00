import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import { createS3Client } from "../../src/s3/client.ts";
import { S3Destination } from "../../src/s3/destination.ts";
import { headKey, readKey } from "../helpers/mirror.ts";
import { connectStack, createBucket } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const MiB = 1024 * 1024;
const sizes = { multipartThresholdBytes: 6 * MiB, multipartPartSizeBytes: 5 * MiB };
const meta = { contentType: "application/octet-stream", metadata: {} };

/** A body handed over in 256 KiB chunks, as a lakeFS response arrives. */
function bodyOf(bytes: Buffer): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 256 * 1024) chunks.push(bytes.subarray(i, i + 256 * 1024));
  return Readable.from(chunks);
}

/** Streamed multipart uploads (putStream above its threshold) against the stack's MinIO. */
describe("streamed multipart uploads", () => {
  let stack: Stack;
  const clients: S3Client[] = [];
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await stack.close();
  });

  function ownClient(): S3Client {
    const s3 = createS3Client({
      endpoint: stack.env.AWS_ENDPOINT_URL,
      region: stack.env.AWS_REGION,
      credentials: {
        accessKeyId: stack.env.AWS_ACCESS_KEY_ID,
        secretAccessKey: stack.env.AWS_SECRET_ACCESS_KEY,
      },
    });
    clients.push(s3);
    return s3;
  }

  async function uploadsLeft(bucket: string): Promise<number> {
    const res = await stack.s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    return (res.Uploads ?? []).length;
  }

  it("stores the body byte for byte in parts of the configured size", async () => {
    const bucket = await createBucket(stack);
    const dest = new S3Destination(stack.s3, { bucket, prefix: "p/" }, sizes);
    const bytes = randomBytes(13 * MiB + 17);
    await dest.putStream("big.bin", bodyOf(bytes), bytes.length, meta);
    assert.deepEqual(await readKey(stack, bucket, "p/big.bin"), bytes);
    assert.match((await headKey(stack, bucket, "p/big.bin")).ETag ?? "", /-3"$/);
  });

  it("a body that ends before its size fails the upload instead of completing a short object", async () => {
    const bucket = await createBucket(stack);
    const dest = new S3Destination(stack.s3, { bucket, prefix: "" }, sizes);
    const bytes = randomBytes(11 * MiB);
    await assert.rejects(dest.putStream("short.bin", bodyOf(bytes), 12 * MiB, meta), {
      code: "LM_DESTINATION",
      message: /ended after 11534336 of 12582912 bytes/,
    });
    await assert.rejects(headKey(stack, bucket, "short.bin"), { name: "NotFound" });
    assert.equal(await uploadsLeft(bucket), 0);
  });

  it("an upload aborted while its parts are in flight has stopped them and aborted the upload when it returns", async () => {
    const bucket = await createBucket(stack);
    const s3 = ownClient();
    const ac = new AbortController();
    let partsSent = 0;
    s3.middlewareStack.add(
      (next, context) => async (args) => {
        // The caller gives up as the first part goes out.
        if (context.commandName === "UploadPartCommand" && ++partsSent === 1)
          ac.abort(new Error("shutting down"));
        return next(args);
      },
      { step: "initialize", name: "abortOnFirstPart" },
    );
    const dest = new S3Destination(s3, { bucket, prefix: "" }, sizes);
    const bytes = randomBytes(16 * MiB);
    await assert.rejects(dest.putStream("big.bin", bodyOf(bytes), bytes.length, meta, ac.signal));
    assert.equal(await uploadsLeft(bucket), 0, "the upload was still open after putStream ended");
    await assert.rejects(headKey(stack, bucket, "big.bin"), { name: "NotFound" });
  });
});

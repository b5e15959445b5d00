import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCopyCommand,
} from "@aws-sdk/client-s3";
import type { HttpRequest } from "@smithy/types";
import { requestPlan } from "../../../src/s3/deadline-handler.ts";

const GiB = 1024 ** 3;

/**
 * The request the SDK itself builds for a command: a handler that records what it is given
 * and sends nothing (no server is involved).
 */
async function built(send: (client: S3Client) => Promise<unknown>): Promise<HttpRequest> {
  let request: HttpRequest | undefined;
  const client = new S3Client({
    region: "us-east-1",
    endpoint: "http://127.0.0.1:9",
    forcePathStyle: true,
    credentials: { accessKeyId: "a", secretAccessKey: "b" },
    maxAttempts: 1,
    requestHandler: {
      handle: (r: HttpRequest) => {
        request = r;
        return Promise.reject(new Error("recorded"));
      },
    },
  });
  await send(client).catch(() => undefined);
  assert.ok(request, "the SDK built no request");
  return request;
}

describe("the S3 work a request announces", () => {
  it("UploadPartCopy: the bytes of its CopySourceRange, answered while S3 works", async () => {
    const r = await built((c) =>
      c.send(
        new UploadPartCopyCommand({
          Bucket: "b",
          Key: "k",
          UploadId: "u",
          PartNumber: 2,
          CopySource: "src/key",
          CopySourceRange: "bytes=536870912-1073741823",
        }),
      ),
    );
    assert.deepEqual(requestPlan(r, undefined), {
      work: { bytes: 512 * 1024 ** 2 },
      workInAnswer: true,
    });
  });

  it("CopyObject: the size its caller gives, else the largest CopyObject S3 takes", async () => {
    const r = await built((c) =>
      c.send(new CopyObjectCommand({ Bucket: "b", Key: "k", CopySource: "src/key" })),
    );
    assert.deepEqual(requestPlan(r, 12_345), { work: { bytes: 12_345 }, workInAnswer: true });
    assert.deepEqual(requestPlan(r, undefined), { work: { bytes: 5 * GiB }, workInAnswer: true });
  });

  it("DeleteObjects and CompleteMultipartUpload: one entry per key or part", async () => {
    const del = await built((c) =>
      c.send(
        new DeleteObjectsCommand({
          Bucket: "b",
          Delete: { Objects: Array.from({ length: 1000 }, (_, i) => ({ Key: `k/<Object>${i}` })) },
        }),
      ),
    );
    assert.deepEqual(requestPlan(del, undefined), { work: { entries: 1000 }, workInAnswer: true });
    const complete = await built((c) =>
      c.send(
        new CompleteMultipartUploadCommand({
          Bucket: "b",
          Key: "k",
          UploadId: "u",
          MultipartUpload: {
            Parts: Array.from({ length: 37 }, (_, i) => ({ PartNumber: i + 1, ETag: `"e${i}"` })),
          },
        }),
      ),
    );
    assert.deepEqual(requestPlan(complete, undefined), {
      work: { entries: 37 },
      workInAnswer: true,
    });
  });

  it("uploads: their bytes, stored after the last one arrives; reads and listings: none", async () => {
    const put = await built((c) =>
      c.send(new PutObjectCommand({ Bucket: "b", Key: "k", Body: "x".repeat(4096) })),
    );
    assert.deepEqual(requestPlan(put, undefined), { work: { bytes: 4096 }, workInAnswer: false });
    const reads: ((c: S3Client) => Promise<unknown>)[] = [
      (c) => c.send(new HeadObjectCommand({ Bucket: "b", Key: "k" })),
      (c) => c.send(new GetObjectCommand({ Bucket: "b", Key: "k" })),
      (c) => c.send(new ListObjectsV2Command({ Bucket: "b", Prefix: "p/" })),
    ];
    for (const read of reads)
      assert.deepEqual(requestPlan(await built(read), undefined), {
        work: { bytes: 0 },
        workInAnswer: false,
      });
  });
});

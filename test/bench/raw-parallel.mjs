// The benchmark's parallel baseline: each object read from lakeFS's object endpoint by ranged
// GETs and written as a multipart upload whose parts go up in parallel, with the parallelism
// lakefs-mirror's streamed copies use (PARTS ranges of PART_MIB read and sent at once per
// object), and none of its machinery (no retries, fence, rounds or status files). What a
// streamed export of large objects is held to.
// Usage: node bench/raw-parallel.mjs <repo> <commit> <bucket> <prefix> <path>:<size>...
import { Buffer } from "node:buffer";
import process from "node:process";
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { request } from "undici";

const [repo, commit, bucket, prefix, ...objects] = process.argv.slice(2);
const env = process.env;
const partBytes = Number(env.PART_MIB ?? 16) * 1024 * 1024;
const parallel = Number(env.PARTS ?? 4);
const auth =
  "Basic " +
  Buffer.from(`${env.LAKEFS_ACCESS_KEY_ID}:${env.LAKEFS_SECRET_ACCESS_KEY}`).toString("base64");
const s3 = new S3Client({
  endpoint: env.AWS_ENDPOINT_URL,
  region: env.AWS_REGION,
  forcePathStyle: true,
  requestChecksumCalculation: "WHEN_REQUIRED",
});

async function readRange(path, start, end) {
  const url = `${env.LAKEFS_ENDPOINT}/api/v1/repositories/${repo}/refs/${commit}/objects?path=${encodeURIComponent(path)}`;
  const res = await request(url, {
    headers: { authorization: auth, range: `bytes=${start}-${end - 1}` },
  });
  if (res.statusCode !== 206) throw new Error(`GET ${path} ${start}-${end}: ${res.statusCode}`);
  return Buffer.from(await res.body.arrayBuffer());
}

async function copy(path, size) {
  const Key = prefix + path;
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
  const count = Math.ceil(size / partBytes);
  const parts = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const n = next++;
      const start = n * partBytes;
      const body = await readRange(path, start, Math.min(size, start + partBytes));
      const { ETag } = await s3.send(
        new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: n + 1, Body: body }),
      );
      parts[n] = { PartNumber: n + 1, ETag };
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: bucket,
      Key,
      UploadId,
      MultipartUpload: { Parts: parts },
    }),
  );
}

await Promise.all(
  objects.map((o) => {
    const at = o.lastIndexOf(":");
    return copy(o.slice(0, at), Number(o.slice(at + 1)));
  }),
);
s3.destroy();

// The benchmark's baseline: a plain GET of each object from lakeFS's object endpoint piped into
// a plain S3 upload, with none of lakefs-mirror's machinery. What streamed exports are held to.
// Usage: node bench/raw-copy.mjs <repo> <commit> <bucket> <prefix> <path>...
import { Buffer } from "node:buffer";
import process from "node:process";
import { S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { request } from "undici";

const [repo, commit, bucket, prefix, ...paths] = process.argv.slice(2);
const env = process.env;
const auth =
  "Basic " +
  Buffer.from(`${env.LAKEFS_ACCESS_KEY_ID}:${env.LAKEFS_SECRET_ACCESS_KEY}`).toString("base64");
const s3 = new S3Client({
  endpoint: env.AWS_ENDPOINT_URL,
  region: env.AWS_REGION,
  forcePathStyle: true,
  requestChecksumCalculation: "WHEN_REQUIRED",
});

await Promise.all(
  paths.map(async (path) => {
    const url = `${env.LAKEFS_ENDPOINT}/api/v1/repositories/${repo}/refs/${commit}/objects?path=${encodeURIComponent(path)}`;
    const res = await request(url, { headers: { authorization: auth } });
    if (res.statusCode !== 200) throw new Error(`GET ${path}: ${res.statusCode}`);
    const upload = new Upload({
      client: s3,
      params: { Bucket: bucket, Key: prefix + path, Body: res.body },
      partSize: 16 * 1024 * 1024,
      queueSize: 4,
    });
    await upload.done();
  }),
);
s3.destroy();

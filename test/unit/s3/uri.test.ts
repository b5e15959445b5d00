import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parsePhysicalAddress, parseS3Uri } from "../../../src/s3/uri.ts";

describe("parseS3Uri", () => {
  it("treats the prefix as a directory, adding the trailing slash", () => {
    assert.deepEqual(parseS3Uri("s3://bucket/a/b"), { bucket: "bucket", prefix: "a/b/" });
    assert.deepEqual(parseS3Uri("s3://bucket/a/b/"), { bucket: "bucket", prefix: "a/b/" });
  });

  it("accepts a bucket root and the s3a scheme Spark users write", () => {
    assert.deepEqual(parseS3Uri("s3://bucket"), { bucket: "bucket", prefix: "" });
    assert.deepEqual(parseS3Uri("s3a://bucket/x/"), { bucket: "bucket", prefix: "x/" });
  });

  it("rejects other schemes and invalid bucket names with LM_USAGE", () => {
    assert.throws(() => parseS3Uri("gs://bucket/x"), { code: "LM_USAGE" });
    assert.throws(() => parseS3Uri("s3://Bad_Bucket/x"), {
      code: "LM_USAGE",
      message: /Bad_Bucket/,
    });
  });
});

describe("parsePhysicalAddress", () => {
  it("splits an s3:// address into bucket and key, keeping every character of the key", () => {
    assert.deepEqual(parsePhysicalAddress("s3://data/ns/data/g1/a b%+ü"), {
      bucket: "data",
      key: "ns/data/g1/a b%+ü",
    });
  });

  it("gives nothing for addresses that only lakeFS can read", () => {
    assert.equal(parsePhysicalAddress("local:///var/lib/lakefs/x"), undefined);
    assert.equal(parsePhysicalAddress("gs://bucket/x"), undefined);
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { normalizeLocation, parseStorageAddress } from "../../../src/destination/schemes.ts";
import { gcsBucketProblem, parseGcsAddress, parseGcsUri } from "../../../src/gcs/uri.ts";

describe("gs:// URIs", () => {
  it("parses a bucket and a prefix that always ends with a slash", () => {
    assert.deepEqual(parseGcsUri("gs://my-bucket"), { bucket: "my-bucket", prefix: "" });
    assert.deepEqual(parseGcsUri("gs://my-bucket/"), { bucket: "my-bucket", prefix: "" });
    assert.deepEqual(parseGcsUri("gs://my-bucket/a/b"), { bucket: "my-bucket", prefix: "a/b/" });
    assert.deepEqual(parseGcsUri("gs://b_1.x/ü %+/"), { bucket: "b_1.x", prefix: "ü %+/" });
    assert.equal(normalizeLocation("gs://my-bucket/x"), "gs://my-bucket/x/");
  });

  it("refuses malformed URIs and bucket names with the rule they break", () => {
    const cases: [string, RegExp][] = [
      ["gs://", /must look like gs:\/\/bucket\/prefix\//],
      ["gs:///x", /must look like/],
      ["gs://Bad/x", /lower-case letters/],
      ["gs://ab/x", /3 to 63 characters/],
      [`gs://${"a".repeat(64)}/x`, /3 to 63 characters/],
      ["gs://a..b/x", /dot-separated parts/],
      ["gs://192.168.1.10/x", /not an IP address/],
      ["gs://google-data/x", /no "goog" prefix/],
      ["gs://-abc/x", /starting and ending/],
      ["gs://ok-bucket/a\nb/", /line break/],
    ];
    for (const [uri, message] of cases)
      assert.throws(() => parseGcsUri(uri), { code: "LM_USAGE", message }, uri);
    assert.equal(gcsBucketProblem(`${"a".repeat(63)}.${"b".repeat(63)}`), undefined);
  });

  it("reads lakeFS physical addresses in GCS, and nothing else, as copy sources", () => {
    assert.deepEqual(parseGcsAddress("gs://lakefs-data/repo/data/gr/x"), {
      bucket: "lakefs-data",
      key: "repo/data/gr/x",
    });
    assert.deepEqual(parseStorageAddress("gs://lakefs-data/k ü"), {
      scheme: "gs",
      container: "lakefs-data",
      key: "k ü",
    });
    assert.equal(parseGcsAddress("gs://lakefs-data/"), undefined);
    assert.equal(parseGcsAddress("gs://NO/x"), undefined);
    assert.equal(parseStorageAddress("s3://b/x")?.scheme, "s3");
    assert.equal(parseStorageAddress("local://x/y"), undefined);
  });
});

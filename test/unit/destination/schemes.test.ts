import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  normalizeLocation,
  parseLocation,
  parseStorageAddress,
  withinLocation,
} from "../../../src/destination/schemes.ts";

describe("destination schemes", () => {
  it("parses a destination URI by its scheme into a location whose prefix is a directory", () => {
    assert.deepEqual(parseLocation("s3://bucket/a/b"), {
      scheme: "s3",
      container: "bucket",
      prefix: "a/b/",
    });
    assert.deepEqual(parseLocation("s3a://bucket"), {
      scheme: "s3",
      container: "bucket",
      prefix: "",
    });
    assert.equal(normalizeLocation("s3a://bucket/x"), "s3://bucket/x/");
  });

  it("refuses a URI no backend takes with LM_USAGE, naming the forms it would take", () => {
    assert.throws(() => parseLocation("ftp://host/x"), {
      code: "LM_USAGE",
      message: /s3:\/\/bucket\/prefix\//,
    });
    assert.throws(() => parseLocation("s3://Bad_Bucket/x"), { code: "LM_USAGE" });
  });

  it("reads physical addresses of known stores and nothing else", () => {
    assert.deepEqual(parseStorageAddress("s3a://data/ns/a b%+ü"), {
      scheme: "s3",
      container: "data",
      key: "ns/a b%+ü",
    });
    assert.equal(parseStorageAddress("local:///var/lib/lakefs/x"), undefined);
    assert.equal(parseStorageAddress("s3://bucket-only"), undefined);
  });

  it("places an address within a location by store, container and key prefix", () => {
    const ns = parseLocation("s3://data/ns");
    assert.equal(withinLocation(parseStorageAddress("s3://data/ns/x")!, ns), true);
    assert.equal(withinLocation(parseStorageAddress("s3://data/nsx/x")!, ns), false);
    assert.equal(withinLocation(parseStorageAddress("s3://other/ns/x")!, ns), false);
  });
});

import assert from "node:assert/strict";
import { gunzipSync, gzipSync } from "node:zlib";
import { describe, it } from "node:test";
import { PathMapper } from "../../../src/iceberg/path-map.ts";
import { rewriteTableMetadata } from "../../../src/iceberg/table-metadata.ts";

const mapper = new PathMapper({ repository: "r", destinationRoot: "s3://b/m/" });

// Format 2 table metadata as Iceberg's Java writer lays it out (TableMetadataParser), with
// every field that holds a location and some that only look like one.
const source = `{
  "format-version" : 2,
  "table-uuid" : "5d1c6a4e-3f0b-4e8a-9a7e-1c2b3d4e5f60",
  "location" : "s3://r/dev/wh/t",
  "last-sequence-number" : 3,
  "properties" : {
    "write.data.path" : "s3a://r/main/wh/t/data",
    "write.metadata.path" : "s3://r/main/wh/t/metadata",
    "write.object-storage.path" : "s3://r/main/wh/t/objects",
    "comment" : "copied from s3://elsewhere/t",
    "write.parquet.compression-codec" : "zstd"
  },
  "current-snapshot-id" : 9223372036854775807,
  "snapshots" : [ {
    "snapshot-id" : 9007199254740993,
    "manifest-list" : "s3://r/dev/wh/t/metadata/snap-9007199254740993-1-a.avro",
    "summary" : { "operation" : "append", "note" : "s3://elsewhere/x" }
  }, {
    "snapshot-id" : 9223372036854775807,
    "parent-snapshot-id" : 9007199254740993,
    "manifests" : [ "lakefs://r/main/wh/t/metadata/m0.avro", "s3://r/main/wh/t/metadata/m1.avro" ]
  } ],
  "statistics" : [ { "snapshot-id" : 9007199254740993, "statistics-path" : "s3://r/main/wh/t/metadata/s.stats", "file-size-in-bytes" : 10 } ],
  "partition-statistics" : [ { "snapshot-id" : 9007199254740993, "statistics-path" : "s3://r/main/wh/t/metadata/p.parquet", "file-size-in-bytes" : 11 } ],
  "metadata-log" : [ { "timestamp-ms" : 1, "metadata-file" : "s3://r/dev/wh/t/metadata/00000-x.metadata.json" } ]
}`;

describe("rewriteTableMetadata", () => {
  it("rewrites every location of the Iceberg spec and keeps every other byte", () => {
    const out = Buffer.from(rewriteTableMetadata("f", Buffer.from(source), mapper)).toString();
    const expected = source
      .replace('"s3://r/dev/wh/t"', '"s3://b/m/wh/t"')
      .replace("s3a://r/main/wh/t/data", "s3://b/m/wh/t/data")
      .replace('s3://r/main/wh/t/metadata"', 's3://b/m/wh/t/metadata"')
      .replace("s3://r/main/wh/t/objects", "s3://b/m/wh/t/objects")
      .replace("s3://r/dev/wh/t/metadata/snap-", "s3://b/m/wh/t/metadata/snap-")
      .replace("lakefs://r/main/wh/t/metadata/m0", "s3://b/m/wh/t/metadata/m0")
      .replace("s3://r/main/wh/t/metadata/m1", "s3://b/m/wh/t/metadata/m1")
      .replace("s3://r/main/wh/t/metadata/s.stats", "s3://b/m/wh/t/metadata/s.stats")
      .replace("s3://r/main/wh/t/metadata/p.parquet", "s3://b/m/wh/t/metadata/p.parquet")
      .replace("s3://r/dev/wh/t/metadata/00000", "s3://b/m/wh/t/metadata/00000");
    assert.equal(out, expected);
    assert.ok(!/"s3a?:\/\/r\/|lakefs:/.test(out), out);
  });

  it("reads and writes gzip-compressed metadata (write.metadata.compression-codec=gzip)", () => {
    const out = rewriteTableMetadata("f.gz.metadata.json", gzipSync(source), mapper);
    assert.equal(
      gunzipSync(out).toString(),
      Buffer.from(rewriteTableMetadata("f", Buffer.from(source), mapper)).toString(),
    );
  });

  it("fails on a location outside the repository, naming the file and the location", () => {
    const bad = source.replace('"s3://r/dev/wh/t"', '"s3://other-bucket/wh/t"');
    assert.throws(
      () => rewriteTableMetadata("wh/t/metadata/00003-x.metadata.json", Buffer.from(bad), mapper),
      {
        code: "LM_TABLE_REWRITE",
        file: "wh/t/metadata/00003-x.metadata.json",
        path: "s3://other-bucket/wh/t",
      },
    );
  });

  it("refuses a file that is not JSON or not UTF-8 instead of copying it half-rewritten", () => {
    assert.throws(
      () => rewriteTableMetadata("f", Buffer.from('{"location": "s3://r/main/t"'), mapper),
      {
        code: "LM_TABLE_REWRITE",
      },
    );
    assert.throws(() => rewriteTableMetadata("f", Buffer.from([0x7b, 0xff, 0x7d]), mapper), {
      code: "LM_TABLE_REWRITE",
    });
  });
});

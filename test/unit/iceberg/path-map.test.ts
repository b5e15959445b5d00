import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { PathMapper } from "../../../src/iceberg/path-map.ts";

const mapper = new PathMapper({
  repository: "sales",
  destinationRoot: "s3://mirror-bucket/export",
  gatewayHosts: ["lakefs.example.com", "127.0.0.1:8000"],
});

// Segments as lakeFS allows them in paths: spaces, '%', '+', unicode beyond the BMP, leading
// dots, non-padded numbers; never empty (a path names an object below the ref).
const segment = fc.oneof(
  fc.constantFrom("frames 9", "frames 10", "a%2Fb", "x+y", ".hidden", "😀", "é", "100%"),
  fc.string({ unit: "binary", minLength: 1, maxLength: 8 }).filter((s) => !s.includes("/")),
);
const repoPath = fc.array(segment, { minLength: 1, maxLength: 5 }).map((s) => s.join("/"));
const ref = fc.constantFrom(
  "main",
  "feature-1",
  "0123456789abcdef0123456789abcdef01234567",
  "v1.2",
  "main@",
);

describe("PathMapper", () => {
  it("maps every scheme and ref of the repository to the destination root", () => {
    for (const uri of [
      "s3://sales/main/wh/t/data/a.parquet",
      "s3a://sales/feature-1/wh/t/data/a.parquet",
      "lakefs://sales/9f4e0c1d2b3a/wh/t/data/a.parquet",
      "S3://sales/v1.0/wh/t/data/a.parquet",
      "http://127.0.0.1:8000/sales/main/wh/t/data/a.parquet",
      "https://sales.lakefs.example.com/main/wh/t/data/a.parquet",
    ]) {
      assert.equal(mapper.map(uri, "f"), "s3://mirror-bucket/export/wh/t/data/a.parquet", uri);
    }
  });

  it("keeps every character of the path after the ref", () => {
    fc.assert(
      fc.property(ref, repoPath, fc.constantFrom("s3", "s3a", "lakefs"), (r, p, scheme) => {
        assert.equal(
          mapper.map(`${scheme}://sales/${r}/${p}`, "f"),
          `s3://mirror-bucket/export/${p}`,
        );
        assert.equal(mapper.repositoryPath(`${scheme}://sales/${r}/${p}`), p);
      }),
    );
  });

  it("refuses paths outside the repository, naming the file and the path", () => {
    for (const uri of [
      "s3://sales-archive/main/a.parquet", // a repository whose name starts with this one's
      "s3://other/main/a.parquet",
      "s3://sales/main/", // the ref itself, no object
      "s3://sales/main", // no path at all
      "s3://sales//a.parquet", // an empty ref
      "gs://sales/main/a.parquet",
      "file:///tmp/sales/main/a.parquet",
      "wh/t/data/a.parquet",
      "http://elsewhere.example.com/sales/main/a.parquet",
      "https://other.lakefs.example.com/main/a.parquet",
      "http://127.0.0.1:8000/other/main/a.parquet",
    ]) {
      assert.throws(
        () => mapper.map(uri, "wh/t/metadata/00001.metadata.json"),
        (err: Error & { code?: string; file?: string; path?: string }) => {
          assert.equal(err.code, "LM_TABLE_REWRITE");
          assert.equal(err.file, "wh/t/metadata/00001.metadata.json");
          assert.equal(err.path, uri);
          assert.match(err.message, /00001\.metadata\.json/);
          return true;
        },
        uri,
      );
      assert.equal(mapper.tryMap(uri), undefined, uri);
    }
  });

  it("adds the trailing slash to the destination root and refuses a root that is no URI", () => {
    assert.equal(
      new PathMapper({ repository: "r", destinationRoot: "s3://b/p/" }).destinationRoot,
      "s3://b/p/",
    );
    assert.equal(
      new PathMapper({ repository: "r", destinationRoot: "s3://b" }).destinationRoot,
      "s3://b/",
    );
    assert.throws(
      () => new PathMapper({ repository: "r", destinationRoot: "bucket/prefix" }),
      TypeError,
    );
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PathMapper } from "../../../src/iceberg/path-map.ts";
import { metadataKindByName, planIcebergRewrite } from "../../../src/iceberg/plan.ts";

describe("metadataKindByName", () => {
  it("knows Iceberg's metadata files by their names", () => {
    assert.equal(metadataKindByName("wh/t/metadata/00003-8b7c.metadata.json"), "metadata");
    assert.equal(metadataKindByName("wh/t/metadata/v12.gz.metadata.json"), "metadata");
    assert.equal(metadataKindByName("wh/t/metadata/version-hint.text"), "version-hint");
    assert.equal(metadataKindByName("wh/t/metadata/snap-123-1-ab.avro"), "avro");
    assert.equal(metadataKindByName("wh/t/metadata/ab-m0.avro"), "avro");
    assert.equal(metadataKindByName("metadata/ab-m0.avro"), "avro");
    // An Avro data file is data, and a Parquet file is never known by its name alone.
    assert.equal(metadataKindByName("wh/t/data/part-0.avro"), undefined);
    assert.equal(metadataKindByName("wh/t/data/00000-0-deletes.parquet"), undefined);
    assert.equal(metadataKindByName("wh/t/metadata.json"), undefined);
  });
});

describe("planIcebergRewrite", () => {
  it("puts metadata after everything else and version hints last, and reports unreadable manifests", async () => {
    const mapper = new PathMapper({ repository: "r", destinationRoot: "s3://b/" });
    const plan = await planIcebergRewrite(
      [
        "t/data/a.parquet",
        "t/metadata/version-hint.text",
        "t/metadata/v2.metadata.json",
        "t/metadata/x-m0.avro",
      ],
      mapper,
      () => Promise.resolve(Buffer.from("not avro")),
    );
    assert.deepEqual(
      plan.stages.map((s) => [s.kind, s.paths]),
      [
        ["metadata", ["t/metadata/v2.metadata.json"]],
        ["version-hints", ["t/metadata/version-hint.text"]],
      ],
    );
    assert.equal(plan.failures.length, 1);
    assert.equal(plan.failures[0]!.file, "t/metadata/x-m0.avro");
    assert.equal(plan.kinds.has("t/data/a.parquet"), false);
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Rounds, roundPresets } from "../../../src/export/rounds.ts";

describe("export rounds", () => {
  it("put Spark _SUCCESS markers, at any depth, in the last round by default", () => {
    const rounds = new Rounds();
    assert.equal(rounds.of("_SUCCESS"), 1);
    assert.equal(rounds.of("tables/t1/date=2024/_SUCCESS"), 1);
    assert.equal(rounds.of("tables/t1/part-0000.parquet"), 0);
    assert.equal(rounds.of("tables/not_SUCCESS"), 0);
    assert.equal(rounds.of("tables/_SUCCESS/part-0"), 0);
  });

  it("follow configured rules, first match first, unmatched paths in round 0", () => {
    const rounds = new Rounds([
      { pattern: "\\.manifest$", round: 2 },
      { pattern: "^meta/", round: 1 },
    ]);
    assert.equal(rounds.of("meta/x.manifest"), 2);
    assert.equal(rounds.of("meta/x"), 1);
    assert.equal(rounds.of("data/x"), 0);
  });

  it("take a function from path to round, as the Spark exporter's custom filter", () => {
    const rounds = new Rounds((path) => (path.endsWith(".idx") ? 3 : 0));
    assert.equal(rounds.of("a/b.idx"), 3);
    assert.equal(rounds.of("a/b.bin"), 0);
    assert.throws(() => new Rounds(() => -1).of("x"), TypeError);
  });

  it("order Delta Lake's log after its data, and _last_checkpoint after the log", () => {
    const delta = new Rounds(roundPresets.delta.rules);
    const order = [
      "t/part-0001.snappy.parquet",
      "t/_delta_log/00000000000000000010.json",
      "t/_delta_log/00000000000000000010.checkpoint.parquet",
      "t/_delta_log/_last_checkpoint",
    ].map((p) => delta.of(p));
    assert.deepEqual(order, [0, 1, 1, 2]);
    assert.equal(roundPresets.delta.deletesLast, true);
  });

  it("order Iceberg's manifests after data, table metadata after them, version-hint.text last", () => {
    const iceberg = new Rounds(roundPresets.iceberg.rules);
    const order = [
      "db/t/data/00000-0-a.parquet",
      "db/t/metadata/snap-1-1-a.avro",
      "db/t/metadata/a-m0.avro",
      "db/t/metadata/v2.metadata.json",
      "db/t/metadata/version-hint.text",
    ].map((p) => iceberg.of(p));
    assert.deepEqual(order, [0, 1, 1, 2, 3]);
    assert.equal(roundPresets.iceberg.deletesLast, true);
    assert.equal(roundPresets.spark.deletesLast, false);
  });

  it("reject a pattern that is not a regular expression, naming it", () => {
    assert.throws(() => new Rounds([{ pattern: "(", round: 1 }]), {
      code: "LM_CONFIG",
      message: /"\("/,
    });
  });
});

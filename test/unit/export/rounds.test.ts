import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Rounds, comparePositions, roundPresets } from "../../../src/export/rounds.ts";

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

  it("order Delta Lake's log after its data, each version after the one before, _last_checkpoint after the log", () => {
    const delta = new Rounds(roundPresets.delta.rules);
    const log = "t/_delta_log";
    // Written in this order, each line after the one before has settled; files on one line
    // may be written together.
    const order = [
      [
        "t/part-0001.snappy.parquet",
        "t/deletion_vector-0c6c.bin",
        "t/_change_data/cdc-0.parquet",
        `${log}/_sidecars/3a0d65cd.parquet`,
      ],
      [`${log}/00000000000000000009.json`],
      [
        `${log}/00000000000000000009.checkpoint.parquet`,
        `${log}/00000000000000000009.crc`,
        `${log}/00000000000000000003.00000000000000000009.compacted.json`,
      ],
      [`${log}/00000000000000000010.json`, `${log}/_staged_commits/00000000000000000010.7d17.json`],
      [
        `${log}/00000000000000000010.checkpoint.0000000001.0000000002.parquet`,
        `${log}/00000000000000000010.checkpoint.0000000002.0000000002.parquet`,
        `${log}/00000000000000000010.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json`,
      ],
      [`${log}/99999999999999999999.json`],
      [`${log}/.s3-optimization-0`],
      [`${log}/_last_checkpoint`, "t/_SUCCESS"],
    ].map((line) => line.map((p) => delta.positionOf(p)));
    for (const [i, line] of order.entries()) {
      for (const p of line) assert.deepEqual(p, line[0], `line ${i}`);
      if (i > 0) assert.ok(comparePositions(order[i - 1]![0]!, line[0]!) < 0, `line ${i}`);
    }
    assert.equal(roundPresets.delta.deletesLast, true);
  });

  it("tell Delta versions apart beyond a double's exact range (20 digits)", () => {
    const delta = new Rounds(roundPresets.delta.rules);
    const a = delta.positionOf("_delta_log/99999999999999999998.json");
    const b = delta.positionOf("_delta_log/99999999999999999999.json");
    assert.equal(b.version, 99999999999999999999n);
    assert.ok(comparePositions(a, b) < 0);
    // A version not zero-padded is the same version as its padded name.
    assert.deepEqual(
      delta.positionOf("_delta_log/9.json"),
      delta.positionOf("_delta_log/00000000000000000009.json"),
    );
    assert.ok(
      comparePositions(
        delta.positionOf("_delta_log/9.json"),
        delta.positionOf("_delta_log/10.json"),
      ) < 0,
    );
  });

  it("order configured rules by their pattern's version group and step", () => {
    const rounds = new Rounds([
      { pattern: "^log/(?<version>\\d+)\\.idx$", round: 1, step: 1 },
      { pattern: "^log/(?<version>\\d+)\\.dat$", round: 1 },
      { pattern: "^log/", round: 1 },
    ]);
    const at = (p: string) => rounds.positionOf(p);
    assert.ok(comparePositions(at("log/2.dat"), at("log/2.idx")) < 0);
    assert.ok(comparePositions(at("log/2.idx"), at("log/10.dat")) < 0);
    assert.ok(comparePositions(at("log/10.idx"), at("log/readme")) < 0);
    assert.equal(rounds.of("log/10.idx"), 1);
    assert.throws(() => new Rounds([{ pattern: "x", round: 1, step: -1 }]), {
      code: "LM_CONFIG",
      message: /step for pattern "x"/,
    });
  });

  it("take positions from a round function, and refuse malformed ones", () => {
    const rounds = new Rounds((p) =>
      p.endsWith(".v") ? { round: 2, version: BigInt(p.length) } : 0,
    );
    assert.deepEqual(rounds.positionOf("ab.v"), { round: 2, version: 4n, step: 0 });
    assert.equal(rounds.of("ab.v"), 2);
    // Round 0 is written while the listing streams: version and step mean nothing there.
    assert.deepEqual(new Rounds(() => ({ round: 0, version: 3n, step: 1 })).positionOf("x"), {
      round: 0,
      version: undefined,
      step: 0,
    });
    assert.throws(
      () => new Rounds(() => ({ round: 1, version: 1 as unknown as bigint })).of("x"),
      TypeError,
    );
    assert.throws(() => new Rounds(() => ({ round: 1, step: 0.5 })).of("x"), TypeError);
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

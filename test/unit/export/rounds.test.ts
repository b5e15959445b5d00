import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Rounds } from "../../../src/export/rounds.ts";

describe("export rounds", () => {
  it("put Spark _SUCCESS markers, at any depth, in the last round by default", () => {
    const rounds = new Rounds();
    assert.deepEqual(rounds.order, [0, 1]);
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
    assert.deepEqual(rounds.order, [0, 1, 2]);
    assert.equal(rounds.of("meta/x.manifest"), 2);
    assert.equal(rounds.of("meta/x"), 1);
    assert.equal(rounds.of("data/x"), 0);
  });

  it("reject a pattern that is not a regular expression, naming it", () => {
    assert.throws(() => new Rounds([{ pattern: "(", round: 1 }]), {
      code: "LM_CONFIG",
      message: /"\("/,
    });
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatDeleteLimit, parseDeleteLimit } from "../../../src/export/reconcile.ts";

describe("max-deletes guard", () => {
  it("takes a count or a share of the keys under the prefix", () => {
    assert.deepEqual(parseDeleteLimit("1000"), { count: 1000 });
    assert.deepEqual(parseDeleteLimit("0"), { count: 0 });
    assert.deepEqual(parseDeleteLimit("25%"), { share: 0.25 });
    assert.deepEqual(parseDeleteLimit("2.5%"), { share: 0.025 });
    assert.equal(formatDeleteLimit(parseDeleteLimit("2.5%")), "2.5%");
  });

  it("names a value it cannot use", () => {
    for (const bad of ["", "ten", "-1", "150%", "1.5"])
      assert.throws(() => parseDeleteLimit(bad), { code: "LM_CONFIG", message: /max deletes/ });
  });
});

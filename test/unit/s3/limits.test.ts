import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { S3_LIMITS, partSizeFor } from "../../../src/s3/limits.ts";

const MiB = 1024 * 1024;

describe("S3 limits", () => {
  it("picks part sizes that keep any object within S3's 10,000 parts", () => {
    assert.equal(partSizeFor(100 * MiB, 16 * MiB), 16 * MiB);
    for (const size of [160 * 1024 * MiB, 1024 * 1024 * MiB, S3_LIMITS.maxObjectBytes]) {
      const part = partSizeFor(size, 16 * MiB);
      assert.ok(Math.ceil(size / part) <= S3_LIMITS.maxParts, `${size} in ${part}-byte parts`);
      assert.equal(part % MiB, 0);
    }
    assert.equal(partSizeFor(10 * MiB, 1), S3_LIMITS.minPartBytes, "never below S3's 5 MiB");
  });
});

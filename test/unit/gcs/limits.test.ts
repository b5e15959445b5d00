import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { GCS_LIMITS, assertStorable, chunkSizeFor, contentIdOf } from "../../../src/gcs/limits.ts";

const KiB = 1024;

describe("GCS limits", () => {
  it("sizes resumable chunks as the smallest multiple of 256 KiB at or above the configured size", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 * 1024 ** 3 }), (configured) => {
        const c = chunkSizeFor(configured);
        assert.equal(c % (256 * KiB), 0);
        assert.ok(c >= configured);
        assert.ok(c - configured < 256 * KiB);
      }),
    );
    assert.equal(chunkSizeFor(16 * 1024 * KiB), 16 * 1024 * KiB);
    assert.equal(chunkSizeFor(1), 256 * KiB);
  });

  it("refuses objects GCS cannot store before any byte is sent", () => {
    assert.throws(() => assertStorable("k", GCS_LIMITS.maxObjectBytes + 1, "k"), {
      code: "LM_OBJECT_REFUSED",
      message: /5 TiB/,
    });
    assert.throws(() => assertStorable("ü".repeat(513), 1, "p"), { message: /1,024 bytes/ });
    assert.throws(() => assertStorable("a\rb", 1, "p"), { message: /line break/ });
    assertStorable("ü".repeat(512), GCS_LIMITS.maxObjectBytes, "p");
  });

  it("takes the MD5 as the content id, in the hex lakeFS writes checksums in", () => {
    assert.equal(
      contentIdOf({ md5Hash: "XUFAKrxLKna5cZ2REBfFkg==", crc32c: "yZRlqg==" }),
      "5d41402abc4b2a76b9719d911017c592",
    );
    // A composite object has only a CRC32C, which no MD5 checksum can equal.
    assert.equal(contentIdOf({ crc32c: "yZRlqg==" }), "crc32c-c99465aa");
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { DestinationError } from "../../../src/errors.ts";
import { ListOrderCheck } from "../../../src/gcs/list-order.ts";

const utf8 = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Keys a page at a time, cut at the given positions. */
function pages(keys: string[], cuts: number[]): string[][] {
  const at = [...new Set(cuts.map((c) => c % (keys.length + 1)))].sort((a, b) => a - b);
  const out: string[][] = [];
  let from = 0;
  for (const c of [...at, keys.length]) {
    out.push(keys.slice(from, c));
    from = c;
  }
  return out;
}

const keys = fc.uniqueArray(fc.string({ unit: "grapheme", maxLength: 6 }), { maxLength: 30 });

describe("GCS listing order check", () => {
  it("accepts keys in UTF-8 byte order however they are paged", () => {
    fc.assert(
      fc.property(keys, fc.array(fc.nat()), (ks, cuts) => {
        const check = new ListOrderCheck("list");
        for (const page of pages([...ks].sort(utf8), cuts)) check.accept(page);
      }),
    );
  });

  it("refuses a listing with any two keys out of UTF-8 byte order, across pages too", () => {
    fc.assert(
      fc.property(
        keys.filter((k) => k.length >= 2),
        fc.nat(),
        fc.array(fc.nat()),
        (ks, i, cuts) => {
          const sorted = [...ks].sort(utf8);
          const j = i % (sorted.length - 1);
          [sorted[j], sorted[j + 1]] = [sorted[j + 1]!, sorted[j]!];
          const check = new ListOrderCheck("list gs://b/p/");
          assert.throws(
            () => {
              for (const page of pages(sorted, cuts)) check.accept(page);
            },
            (err: unknown) => err instanceof DestinationError && !err.retriable,
          );
        },
      ),
    );
  });

  it("orders U+FFFD before astral characters, as UTF-8 does and UTF-16 does not", () => {
    const check = new ListOrderCheck("list");
    check.accept(["a", "ｱ", "\uFFFD"]);
    check.accept(["😀"]);
    assert.throws(() => new ListOrderCheck("list").accept(["😀", "\uFFFD"]), DestinationError);
    assert.throws(() => new ListOrderCheck("list").accept(["a", "a"]), DestinationError);
  });
});

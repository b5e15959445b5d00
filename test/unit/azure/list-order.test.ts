import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Utf8Reorder, inUtf8Order } from "../../../src/azure/list-order.ts";
import { compareUtf8 } from "../../../src/export/order.ts";

const utf16 = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Keys over the units where UTF-8 and UTF-16 order disagree, and their neighbours. */
const key = fc.string({
  minLength: 1,
  maxLength: 5,
  unit: fc.constantFrom(
    "a",
    "/",
    "\uD7FF",
    "\uE000",
    "\uFF71",
    "\uFFFD",
    "\uFFFF",
    "😀",
    "𐀀",
    "\u{10FFFF}",
  ),
});

async function collect(pages: AsyncIterable<string[]>) {
  const out: string[][] = [];
  for await (const p of pages) out.push(p);
  return out;
}

function* paged(keys: string[], sizes: number[]) {
  let i = 0;
  let s = 0;
  while (i < keys.length) {
    const n = Math.max(1, sizes[s++ % sizes.length] ?? 1);
    yield keys.slice(i, i + n);
    i += n;
  }
}

describe("listing put in UTF-8 order", () => {
  it("a listing in UTF-16 order (Azurite's) comes out in UTF-8 order, pages no longer than asked", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(key, { maxLength: 40 }),
        fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 1, max: 6 }),
        async (keys, sizes, pageSize) => {
          const input = [...keys].sort(utf16);
          const pages = await collect(inUtf8Order(paged(input, sizes), (k) => k, pageSize, "t"));
          assert.deepEqual(pages.flat(), [...keys].sort(compareUtf8));
          assert.ok(pages.every((p) => p.length > 0 && p.length <= pageSize));
        },
      ),
      { numRuns: 500 },
    );
  });

  it("a listing already in UTF-8 order passes unchanged", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(key, { maxLength: 40 }), async (keys) => {
        const input = [...keys].sort(compareUtf8);
        const pages = await collect(inUtf8Order(paged(input, [3]), (k) => k, 3, "t"));
        assert.deepEqual(pages.flat(), input);
      }),
      { numRuns: 300 },
    );
  });

  it("holds back only keys a later one may still precede", () => {
    const r = new Utf8Reorder<string>((k) => k, "t");
    assert.deepEqual(r.push("a"), ["a"]);
    assert.deepEqual(r.push("b😀"), []);
    assert.deepEqual(r.push("b\uFFFD"), ["b\uFFFD"]);
    assert.equal(r.holding, 1);
    assert.deepEqual(r.push("c"), ["b😀", "c"]);
    assert.deepEqual(r.flush(), []);
  });

  it("fails on a listing in neither order, and on a key listed twice", () => {
    const r = new Utf8Reorder<string>((k) => k, "list x");
    r.push("b");
    assert.throws(() => r.push("a"), { code: "LM_DESTINATION", message: /list x.*"a" after "b"/ });
    const twice = new Utf8Reorder<string>((k) => k, "t");
    twice.push("x😀");
    assert.throws(() => twice.push("x😀"), { code: "LM_DESTINATION", message: /twice/ });
  });
});

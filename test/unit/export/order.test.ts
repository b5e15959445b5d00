import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compareUtf8, mergeSorted } from "../../../src/export/order.ts";

describe("path order", () => {
  it("sorts as the bytes of UTF-8 do, which is how lakeFS and S3 list", () => {
    // U+FF5E is one UTF-16 unit, U+1F600 two (surrogates that JavaScript's < puts first).
    const paths = ["b", "a/z", "a", "é", "\uff5e", "😀", "a-b", "A", "a/"];
    const byBytes = [...paths].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    assert.deepEqual([...paths].sort(compareUtf8), byBytes);
    assert.notDeepEqual([...paths].sort(), byBytes, "the default order would be wrong here");
  });

  it("merges sorted streams, grouping the items that share a key", async () => {
    async function* s(...keys: string[]) {
      for (const k of keys) yield await Promise.resolve(k);
    }
    const out: string[] = [];
    for await (const { key, items } of mergeSorted([s("a", "c", "d"), ["b", "c"], s()], (k) => k))
      out.push(`${key}:${items.map((i) => (i === undefined ? "-" : "x")).join("")}`);
    assert.deepEqual(out, ["a:x--", "b:-x-", "c:xx-", "d:x--"]);
  });
});

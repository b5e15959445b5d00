import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import type { ObjectStats } from "../../../src/lakefs/types.ts";
import { summed } from "../../../src/work/coordinator.ts";
import type { ItemRecord } from "../../../src/work/items.ts";
import { clip } from "../../../src/work/item-tasks.ts";
import { inRange, sharedPrefix, splitAt } from "../../../src/work/ranges.ts";
import type { KeyRange } from "../../../src/work/ranges.ts";
import { initialRanges } from "../../../src/work/split.ts";

/** The order lakeFS lists in, computed independently: UTF-8 bytes. */
const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
const sorted = (paths: Iterable<string>) => [...new Set(paths)].sort(byBytes);

/** Hostile segments: non-padded numbers, prefixes of one another, unicode, %, +, spaces. */
const segment = fc.oneof(
  fc.constantFrom(
    "a",
    "a.",
    "a0",
    "ab",
    "1",
    "10",
    "2",
    "%2F",
    "+",
    " ",
    "é",
    "😀",
    "\uffff",
    "\ue000",
    "_SUCCESS",
  ),
  fc.nat({ max: 120 }).map(String),
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 3 }).filter((s) => !s.includes("/")),
);
const path = fc
  .array(segment, { minLength: 1, maxLength: 4 })
  .chain((segs) => fc.boolean().map((dir) => segs.join("/") + (dir ? "/" : "")));
const keySet = fc.array(path, { maxLength: 120 }).map(sorted);

/**
 * lakeFS's listing with "/" as delimiter, from a plain sorted key set: the keys right below
 * `prefix` and the common prefixes of the rest, in byte order, the first `page` of them.
 */
function level(keys: readonly string[], prefix: string, page: number) {
  const entries = new Map<string, ObjectStats["path_type"]>();
  for (const k of keys) {
    if (!k.startsWith(prefix)) continue;
    const rest = k.slice(prefix.length);
    const cut = rest.indexOf("/");
    if (cut < 0) entries.set(k, "object");
    else entries.set(prefix + rest.slice(0, cut + 1), "common_prefix");
  }
  const all = sorted(entries.keys()).map(
    (p) => ({ path: p, path_type: entries.get(p)! }) as ObjectStats,
  );
  return Promise.resolve({ results: all.slice(0, page), hasMore: all.length > page });
}

/** Each key in exactly one of the ranges: the property every split must keep. */
function assertPartition(ranges: readonly KeyRange[], keys: readonly string[]) {
  assert.equal(ranges[0]?.from, "");
  assert.equal(ranges.at(-1)?.to, null);
  for (let i = 1; i < ranges.length; i++) {
    assert.equal(ranges[i]!.from, ranges[i - 1]!.to, "ranges are contiguous");
    assert.ok(byBytes(ranges[i - 1]!.from, ranges[i]!.from) < 0, "ranges ascend");
  }
  for (const k of keys)
    assert.equal(
      ranges.filter((r) => inRange(r, k)).length,
      1,
      `${JSON.stringify(k)} in one range`,
    );
}

describe("split export planning (properties)", () => {
  it("the initial ranges partition the key space, whatever the tree and the page size", async () => {
    await fc.assert(
      fc.asyncProperty(
        keySet,
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 5 }),
        async (keys, wanted, page) => {
          const ranges = await initialRanges((prefix) => level(keys, prefix, page), wanted);
          assert.ok(ranges.length <= wanted, `${ranges.length} ranges, at most ${wanted}`);
          assertPartition(ranges, keys);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("splitting at a path inside a range and handing the rest on keeps every key in one part", () => {
    fc.assert(
      fc.property(keySet, fc.nat(), fc.nat(), (keys, i, j) => {
        fc.pre(keys.length >= 2);
        const range: KeyRange = { from: keys[i % keys.length]!, to: null };
        const inside = keys.filter((k) => inRange(range, k));
        const at = inside[1 + (j % Math.max(1, inside.length - 1))];
        fc.pre(at !== undefined && at !== range.from);
        const [mine, rest] = splitAt(range, at);
        for (const k of keys)
          assert.equal(
            inRange(range, k),
            inRange(mine, k) !== inRange(rest, k) && (inRange(mine, k) || inRange(rest, k)),
            JSON.stringify(k),
          );
      }),
    );
  });

  it("a range's shared prefix starts every path inside it", () => {
    fc.assert(
      fc.property(keySet, path, path, (keys, a, b) => {
        const [lo, hi] = byBytes(a, b) <= 0 ? [a, b] : [b, a];
        fc.pre(lo !== hi);
        const range = { from: lo, to: hi };
        const shared = sharedPrefix(range);
        for (const k of keys) if (inRange(range, k)) assert.ok(k.startsWith(shared), k);
      }),
    );
  });

  it("clip keeps exactly the range's paths of a sorted listing, in any paging, empty pages too", async () => {
    await fc.assert(
      fc.asyncProperty(
        keySet,
        path,
        fc.option(path, { nil: null }),
        fc.array(fc.nat({ max: 4 }), { minLength: 1, maxLength: 10 }),
        async (keys, from, to, sizes) => {
          fc.pre(to === null || byBytes(from, to) < 0);
          const range = { from, to };
          async function* pages() {
            await Promise.resolve();
            let i = 0;
            for (let p = 0; i < keys.length; p++) {
              // Empty pages come between, but every other page moves on.
              const n = sizes[p % sizes.length]! + (p % 2);
              yield keys.slice(i, i + n);
              i += n;
            }
          }
          const got: string[] = [];
          for await (const page of clip(pages(), range, (k) => k)) got.push(...page);
          assert.deepEqual(
            got,
            keys.filter((k) => inRange(range, k)),
          );
        },
      ),
    );
  });

  it("the owner's sum of records counts every item and keeps failed paths only when all are known", () => {
    const progress = fc.record({
      copied: fc.nat(50),
      deleted: fc.nat(50),
      bytes: fc.nat(1000),
      bytesStreamed: fc.nat(1000),
      failed: fc.nat(3),
      serverSideCopies: fc.nat(50),
      streamedCopies: fc.nat(50),
      unchanged: fc.nat(50),
      kept: fc.nat(5),
    });
    const record = fc.record({
      progress,
      undone: fc.option(
        fc.array(
          path.map((p) => ({ path: p, reason: "x" })),
          { maxLength: 3 },
        ),
        {
          nil: null,
        },
      ),
    });
    fc.assert(
      fc.property(fc.array(record, { maxLength: 8 }), (rs) => {
        const records = rs.map((r) => ({ ...r, failures: [] }) as unknown as ItemRecord);
        const sum = summed(records);
        assert.equal(
          sum.progress.copied,
          rs.reduce((n, r) => n + r.progress.copied, 0),
        );
        assert.equal(
          sum.progress.failed,
          rs.reduce((n, r) => n + r.progress.failed, 0),
        );
        if (rs.some((r) => r.undone === null)) assert.equal(sum.undone, undefined);
        else
          assert.deepEqual(
            sum.undone,
            rs.flatMap((r) => r.undone ?? []),
          );
      }),
    );
  });
});

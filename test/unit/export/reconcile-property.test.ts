import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Reconciliation, defaultDeleteLimit } from "../../../src/export/reconcile.ts";
import type { DeleteLimit } from "../../../src/export/reconcile.ts";
import { isReservedPath } from "../../../src/export/reserved.ts";
import type { OurKey } from "../../../src/export/our-keys.ts";
import type { ExportTask } from "../../../src/export/task.ts";
import type { ObjectStats } from "../../../src/lakefs/types.ts";
import { prefixAfterReconcile } from "../../../src/ledger/ledger.ts";
import type { PrefixState } from "../../../src/ledger/ledger.ts";
import type { ListedObject } from "../../../src/destination/destination.ts";

/**
 * The reconcile merge and its delete guard against model listings: a commit's objects and a
 * destination's keys as sorted arrays, served in pages of hostile sizes (empty ones included),
 * with keys that prefix one another, non-padded numbers, unicode (astral code points too), `%`,
 * `+`, status files, the reserved prefix, and another lane's records below the root.
 */

const record = (expiresAt: string) =>
  JSON.stringify({ format: 1, repository: "other", branch: "dev", seq: 3, expiresAt });
/** What the nested names hold: a lane's live record, an expired lease, or no record at all. */
const NESTED_TEXT = {
  live: record("2999-01-01T00:00:00Z"),
  expired: record("2000-01-01T00:00:00Z"),
  other: "not a record",
};
const isLive = (path: string, kind: keyof typeof NESTED_TEXT) =>
  kind === "live" || (kind === "expired" && path.endsWith("ledger.json"));

const DATA = [
  "frames/1",
  "frames/10",
  "frames/9",
  "a",
  "a/b",
  "ab",
  "a b",
  "%",
  "%25",
  "+",
  "é",
  "\u{1F600}",
  "\u{1F600}/x",
  "\uFFFD",
  "x/_SUCCESS",
  "sub/data",
];
const RESERVED = [
  "_lakefs_mirror/ledger.json",
  "_lakefs_mirror/lease.json",
  "EXPORT_abc123_2026-01-01T00:00:00.000Z_SUCCESS",
  "EXPORT_abc123_2026-01-01T00:00:01Z_FAILURE",
];
/** A lane's ledger below the root, or an object under that name that is no lane's record. */
const NESTED = ["sub/_lakefs_mirror/ledger.json", "deep/er/_lakefs_mirror/lease.json"];

const utf8Order = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Splits a sorted list into pages whose sizes (0 included) the generator picks. */
function paged<T>(items: T[], sizes: number[]): T[][] {
  const pages: T[][] = [];
  let i = 0;
  for (const n of sizes) {
    if (i >= items.length) break;
    pages.push(items.slice(i, i + n));
    i += n;
  }
  if (i < items.length) pages.push(items.slice(i));
  return pages;
}

/** Pages served one at a time, each after a turn of the event loop, as a server's would be. */
async function* pages<T>(list: T[][]): AsyncGenerator<T[]> {
  for (const page of list) {
    await Promise.resolve();
    yield page;
  }
}

/** The keys the records name in path order (a stable sort: of a path named twice, the first). */
function ourKeys(w: World): OurKey[] {
  return [...(w.ours ?? [])]
    .sort((a, b) => utf8Order(a.path, b.path))
    .map(({ path, offsets }) =>
      offsets === undefined ? { path } : { path, sizes: offsets.map((o) => path.length + o) },
    );
}

/** Whether a key the commit lacks is deleted on a prefix that is not owned. */
function namedWithSize(w: World, d: ListedObject): boolean {
  const k = ourKeys(w).find((x) => x.path === d.path);
  return k !== undefined && (k.sizes === undefined || k.sizes.includes(d.size));
}

/** Keys served one at a time, each after a turn of the event loop. */
async function* named(keys: OurKey[]): AsyncGenerator<OurKey> {
  for (const k of keys) {
    await Promise.resolve();
    yield k;
  }
}

const pageSizes = fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 12 });

const world = fc.record({
  source: fc.subarray([...DATA, RESERVED[0]!]),
  dest: fc.subarray([...DATA, ...RESERVED]),
  nested: fc.subarray(NESTED),
  nestedText: fc.constantFrom<keyof typeof NESTED_TEXT>("live", "expired", "other"),
  /** Which keys on both sides have other bytes (a different size or ETag). */
  changed: fc.array(fc.constantFrom("size", "etag", "none"), {
    minLength: DATA.length + 1,
    maxLength: DATA.length + 1,
  }),
  sourcePages: pageSizes,
  destPages: pageSizes,
  owned: fc.boolean(),
  /**
   * Keys lakefs-mirror's records name (what `ours` serves; absent: no records), some twice,
   * each with the sizes the records give (offsets from the commit's size; none: any size).
   */
  ours: fc.option(
    fc.array(
      fc.record({
        path: fc.constantFrom(...DATA),
        offsets: fc.option(fc.array(fc.integer({ min: -1, max: 1 }), { maxLength: 2 }), {
          nil: undefined,
        }),
      }),
      { maxLength: 20 },
    ),
    { nil: undefined },
  ),
  unguarded: fc.boolean(),
  limit: fc.oneof(
    fc.integer({ min: 0, max: 6 }).map((count): DeleteLimit => ({ count })),
    fc.integer({ min: 0, max: 100 }).map((p): DeleteLimit => ({ share: p / 100 })),
  ),
  /** Tasks read before the consumer stops (an export that gave up); none: all of them. */
  stopAfter: fc.option(fc.nat({ max: 20 }), { nil: undefined }),
});

type World = typeof world extends fc.Arbitrary<infer T> ? T : never;

function build(w: World) {
  const source = [...w.source].sort(utf8Order).map((path, i): ObjectStats => ({
    path,
    path_type: "object",
    physical_address: `s3://data/${i}`,
    checksum: `etag-${path}`,
    size_bytes: path.length,
    mtime: 0,
  }));
  const destPaths = [...new Set([...w.dest, ...w.nested])].sort(utf8Order);
  const dest = destPaths.map((path): ListedObject => {
    const k = w.changed[Math.max(0, [...DATA, RESERVED[0]!].indexOf(path))] ?? "none";
    return {
      path,
      size: path.length + (k === "size" ? 1 : 0),
      contentId: k === "etag" ? "other" : `etag-${path}`,
      lastModified: new Date(0),
    };
  });
  const texts = new Map(w.nested.map((p) => [p, NESTED_TEXT[w.nestedText]]));
  const rec = new Reconciliation({
    source: () => pages(paged(source, w.sourcePages)),
    dest: () => pages(paged(dest, w.destPages)),
    readText: (path) => Promise.resolve(texts.get(path)),
    owned: w.owned,
    ...(w.ours ? { ours: () => named(ourKeys(w)) } : {}),
    unguarded: w.unguarded,
    maxDeletes: w.limit,
    lane: { repository: "repo", branch: "main" },
    where: "s3://bkt/p/",
  });
  return { rec, source, dest };
}

async function collect(rec: Reconciliation, stopAfter?: number) {
  const tasks: ExportTask[] = [];
  let error: unknown;
  try {
    for await (const t of rec.tasks()) {
      tasks.push(t);
      if (stopAfter !== undefined && tasks.length >= stopAfter) break;
    }
  } catch (err) {
    error = err;
  }
  return { tasks, error };
}

describe("property: the reconcile merge and its delete guard", () => {
  it("deletes only under an owned prefix or what lakefs-mirror's records name, never more than the guard allows, never a reserved key, never beside another lane's records, and copies or checks every object of the commit", async () => {
    await fc.assert(
      fc.asyncProperty(world, async (w) => {
        const { rec, source, dest } = build(w);
        const { tasks, error } = await collect(rec);
        const deletes = tasks.filter((t) => t.op === "delete").map((t) => t.path);
        const srcPaths = new Set(source.map((s) => s.path));
        if (w.nested.some((p) => isLive(p, w.nestedText))) {
          // Another lane's records below the root: refused before a single task.
          assert.equal((error as { code?: string } | undefined)?.code, "LM_LANE_OVERLAP");
          assert.match((error as Error).message, /repo\/main .* other\/dev at s3:\/\/bkt\/p\//);
          assert.deepEqual(tasks, []);
          return;
        }
        assert.equal(error, undefined);
        const mine = dest.filter((d) => !isReservedPath(d.path));
        const extraObjects = mine.filter((d) => !srcPaths.has(d.path));
        const extra = extraObjects.map((d) => d.path);
        const ours = new Set(extraObjects.filter((d) => namedWithSize(w, d)).map((d) => d.path));
        for (const p of deletes) assert.ok(!isReservedPath(p), `reserved ${p} deleted`);
        const limit = w.limit ?? defaultDeleteLimit;
        const allowed = "count" in limit ? limit.count : Math.floor(limit.share * mine.length);
        if (w.owned && !w.unguarded && extra.length > allowed) {
          assert.equal(tasks.length, 1);
          assert.equal(tasks[0]?.op, "refuse");
          assert.equal(rec.listing, undefined);
          return;
        }
        if (!w.owned) {
          // Not lakefs-mirror's prefix: only what its records name (at a size they give) goes,
          // the rest is kept.
          assert.deepEqual(
            deletes,
            extra.filter((p) => ours.has(p)),
          );
          assert.deepEqual(
            tasks.filter((t) => t.op === "keep").map((t) => t.path),
            extra.filter((p) => !ours.has(p)),
          );
        } else {
          assert.deepEqual(deletes, extra);
          if (!w.unguarded) assert.ok(deletes.length <= allowed);
        }
        // Every object of the commit: copied when missing or different, checked when equal.
        const written = tasks.filter((t) => t.op === "copy" || t.op === "check");
        assert.deepEqual(
          written.map((t) => t.path),
          source.map((s) => s.path),
        );
        for (const t of written) {
          const d = dest.find((x) => x.path === t.path && !isReservedPath(x.path));
          const same =
            d !== undefined && d.size === t.path.length && d.contentId === `etag-${t.path}`;
          assert.equal(t.op, same ? "check" : "copy", t.path);
        }
        const kept = w.owned ? 0 : extra.filter((p) => !ours.has(p)).length;
        assert.deepEqual(rec.listing, { keys: mine.length, extra: extra.length, kept });
      }),
      { numRuns: 3000 },
    );
  });
});

describe("property: prefix-state transitions", () => {
  it("a foreign prefix never becomes owned unless a listing walked it whole and found nothing foreign", async () => {
    await fc.assert(
      fc.asyncProperty(
        world,
        fc.constantFrom<PrefixState>("empty", "owned", "foreign"),
        async (w0, state) => {
          // The reconcile of a lane that does not own the prefix: only what its records name is
          // deleted, other keys are kept, and whether any is left decides the transition.
          const w = { ...w0, owned: false, nested: [] };
          const { rec, source, dest } = build(w);
          const { tasks } = await collect(rec, w.stopAfter);
          const srcPaths = new Set(source.map((s) => s.path));
          const foreign = dest.filter(
            (d) => !isReservedPath(d.path) && !srcPaths.has(d.path) && !namedWithSize(w, d),
          );
          const next = prefixAfterReconcile(state, rec.listing);
          if (state !== "foreign") assert.equal(next, state);
          else if (foreign.length > 0) assert.equal(next, "foreign", "foreign keys are left");
          else if (rec.listing === undefined) assert.equal(next, "foreign", "the walk stopped");
          else assert.equal(next, "owned");
          // A walk that stopped before its end never counts as evidence (the deletes come after
          // the walk: stopping among them leaves the evidence, and only the lane's own keys).
          const all = (await collect(build(w).rec)).tasks;
          const total = all.filter((t) => t.op !== "delete").length;
          if (w.stopAfter !== undefined && w.stopAfter < total)
            assert.equal(rec.listing, undefined, `stopped after ${tasks.length} of ${total}`);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

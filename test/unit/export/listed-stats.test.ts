import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { justBefore, withListedStats } from "../../../src/export/listed-stats.ts";
import type { ListAfter } from "../../../src/export/listed-stats.ts";
import type { ExportTask } from "../../../src/export/task.ts";
import type { ObjectStats } from "../../../src/lakefs/types.ts";

function stats(path: string): ObjectStats {
  return {
    path,
    path_type: "object",
    physical_address: `s3://store/ns/data/${Buffer.from(path).toString("hex")}`,
    checksum: "c",
    size_bytes: path.length,
    mtime: 0,
  };
}

/**
 * A commit's listing as lakeFS serves it: sorted by UTF-8 bytes, `after` exclusive, at most
 * `amount` per page. Records every request.
 */
function listing(paths: string[]) {
  const bytes = paths.map((p) => Buffer.from(p)).sort((a, b) => Buffer.compare(a, b));
  const sorted = bytes.map((b) => b.toString());
  const calls: { after: string; amount: number }[] = [];
  const list: ListAfter = (after, amount) => {
    calls.push({ after, amount });
    assert.doesNotThrow(() => encodeURIComponent(after), "after must be a well-formed string");
    // The first path whose bytes sort after `after`.
    const key = Buffer.from(after);
    let lo = 0;
    let hi = bytes.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (Buffer.compare(bytes[mid]!, key) > 0) hi = mid;
      else lo = mid + 1;
    }
    return Promise.resolve({
      results: sorted.slice(lo, lo + amount).map(stats),
      hasMore: lo + amount < sorted.length,
    });
  };
  return { sorted, calls, list };
}

async function collect(tasks: ExportTask[], list: ListAfter) {
  async function* source() {
    for (const t of tasks) yield await Promise.resolve(t);
  }
  const out: ExportTask[] = [];
  for await (const t of withListedStats(source(), { list })) out.push(t);
  return out;
}

const copy = (path: string): ExportTask => ({ op: "copy", path, change: "changed" });

describe("stats for a diff from the commit's listing", () => {
  it("gives every copy of a dense diff its own stats in a page per thousand objects, in order", async () => {
    const all = Array.from({ length: 20_000 }, (_, i) => `data/part=${i % 10}/object-${i}.bin`);
    const { sorted, calls, list } = listing(all);
    // Every fifth object changed, and some removed ones between them.
    const tasks = sorted.flatMap((p, i): ExportTask[] =>
      i % 5 === 0 ? [copy(p)] : i % 97 === 0 ? [{ op: "delete", path: `${p}.gone` }] : [],
    );
    const out = await collect(tasks, list);
    assert.deepEqual(
      out.map((t) => `${t.op}:${t.path}`),
      tasks.map((t) => `${t.op}:${t.path}`),
    );
    for (const t of out) {
      if (t.op === "copy") assert.deepEqual(t.stats, stats(t.path));
    }
    const copies = tasks.filter((t) => t.op === "copy").length;
    assert.equal(copies, 4000);
    // 20,000 listed objects at 1,000 a page: about 20 pages, not 4,000 stats.
    assert.ok(calls.length <= 30, `${calls.length} listing requests`);
  });

  it("leaves a sparse diff to stats of its own, and a path the listing lacks without stats", async () => {
    const all = Array.from({ length: 200_000 }, (_, i) => `k/${String(i).padStart(6, "0")}`);
    const { calls, list } = listing(all);
    // 2,000 changes spread over 200,000 objects: 10 per page of 1,000.
    const tasks = all.filter((_, i) => i % 100 === 7).map(copy);
    tasks.splice(5, 0, copy("k/000500x"));
    const out = await collect(tasks, list);
    assert.equal(out.length, tasks.length);
    const missing = out.find((t) => t.path === "k/000500x");
    assert.equal(missing?.op === "copy" ? missing.stats : "no", undefined);
    const withStats = out.filter((t) => t.op === "copy" && t.stats).length;
    // Listing would cost a page per 10 objects: after measuring, most are left to their stats.
    assert.ok(withStats < tasks.length / 2, `${withStats} of ${tasks.length} given stats`);
    assert.ok(calls.length < 150, `${calls.length} listing requests`);
  });

  it("jumps over untouched stretches and handles paths outside the Basic Multilingual Plane", async () => {
    const all = [
      ...Array.from({ length: 5000 }, (_, i) => `a/${String(i).padStart(5, "0")}`),
      ...Array.from({ length: 40 }, (_, i) => `m/😀${i}`),
      ...Array.from({ length: 5000 }, (_, i) => `z/${String(i).padStart(5, "0")}`),
    ];
    const { sorted, calls, list } = listing(all);
    // Two dense clusters far apart: the first 40 objects and the emoji ones.
    const wanted = sorted.filter((p) => p.startsWith("m/") || p < "a/00040");
    const out = await collect(wanted.map(copy), list);
    for (const t of out) assert.ok(t.op === "copy" && t.stats?.path === t.path, t.path);
    assert.ok(calls.length <= 4, `${calls.length} listing requests`);
    // The jump to the emoji cluster starts right before it, not at the start of the listing.
    assert.ok(calls.some((c) => c.after.startsWith("m/")));
  });

  it("a diff over non-padded names that sort after the changed path ends instead of asking for the same page forever", async () => {
    // frames/1 … frames/5000 list as frames/1, frames/10, frames/100, frames/1000, …: a jump to
    // "frames/" gave a page of frames/1… that ends before frames/9, again and again.
    const all = Array.from({ length: 5000 }, (_, i) => `frames/${i + 1}`);
    const { sorted, calls, list } = listing(all);
    const bounded: ListAfter = (after, amount) => {
      if (calls.length >= 100) throw new Error(`still listing after ${calls.length} requests`);
      return list(after, amount);
    };
    const changed = [
      "frames/9",
      ...sorted.filter((p) => p > "frames/9").filter((_, i) => i % 7 === 0),
    ];
    assert.ok(changed.length > 12);
    const out = await collect(changed.map(copy), bounded);
    assert.deepEqual(
      out.map((t) => t.path),
      changed,
    );
    for (const t of out) assert.deepEqual(t.op === "copy" && t.stats, stats(t.path), t.path);
    // The jump lands right before frames/9, past the 4,000-odd paths that sort before it.
    assert.equal(calls[0]?.after, "frames/8\u{10FFFF}");
    assert.ok(calls.length <= 3, `${calls.length} listing requests`);
  });

  it("jumps to a well-formed target right before the path, stepping over surrogates and U+0000", () => {
    assert.equal(justBefore("frames/9"), "frames/8\u{10FFFF}");
    assert.equal(justBefore("a/😀"), "a/\u{1F5FF}\u{10FFFF}");
    assert.equal(justBefore("a/\u{10000}"), "a/\uFFFF\u{10FFFF}");
    assert.equal(justBefore("a/\uE000"), "a/\uD7FF\u{10FFFF}");
    assert.equal(justBefore("a/\u0000"), "a/");
    assert.equal(justBefore("b"), "a\u{10FFFF}");
    assert.equal(justBefore(""), "");
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { staleTasks } from "../../../src/export/stale-tasks.ts";
import type { ExportTask } from "../../../src/export/task.ts";
import type { ObjectStats } from "../../../src/lakefs/types.ts";

const stats = (path: string): ObjectStats => ({
  path,
  path_type: "object",
  physical_address: `s3://data/${path}`,
  checksum: "x",
  mtime: 0,
});

async function* pages<T>(list: T[][]): AsyncGenerator<T[]> {
  for (const page of list) {
    await Promise.resolve();
    yield page;
  }
}

async function* tasks(list: ExportTask[]): AsyncGenerator<ExportTask> {
  for (const t of list) {
    await Promise.resolve();
    yield t;
  }
}

describe("a whole export that leaves nothing stale", () => {
  it("copies every object of the listing once and deletes what the cover names that the listing lacks, in path order", async () => {
    // UTF-8 byte order: frames/1 < frames/10 < frames/9 < é < 😀.
    const listing = pages([[stats("frames/1"), stats("frames/10")], [], [stats("é")]]);
    const cover = tasks([
      { op: "copy", path: "frames/10", change: "changed" },
      { op: "delete", path: "frames/9" },
      { op: "copy", path: "é", change: "added" },
      { op: "sync", path: "\u{1F600}" },
    ]);
    const out: string[] = [];
    for await (const t of staleTasks(listing, cover)) out.push(`${t.op} ${t.path}`);
    assert.deepEqual(out, [
      "copy frames/1",
      "copy frames/10",
      "delete frames/9",
      "copy é",
      "delete \u{1F600}",
    ]);
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Ownership } from "../../../src/daemon/ownership.ts";
import { laneKey, partitionOf } from "../../../src/kafka/client.ts";

describe("lane ownership", () => {
  it("alone, a daemon works on every lane", () => {
    assert.equal(new Ownership("all").owns("repo", "main"), true);
  });

  it("in a group, works on the lanes whose key falls in a partition it holds", () => {
    const o = new Ownership("group", 0);
    const branches = Array.from({ length: 24 }, (_, i) => `b-${i}`);
    const parts = branches.map((b) => partitionOf(laneKey("repo", b), 6));
    o.assign(new Set([0, 1, 2]), 6);
    for (const [i, b] of branches.entries()) assert.equal(o.owns("repo", b), parts[i]! < 3, b);
    assert.deepEqual(o.view(), { mode: "group", partitions: [0, 1, 2], fallback: false });
  });

  it("with Kafka away for the grace period, works on every lane; before that, on none", () => {
    let now = 0;
    const o = new Ownership("group", 6000, () => now);
    assert.equal(o.owns("repo", "main"), false, "just started: the group may be forming");
    now = 6000;
    assert.equal(o.owns("repo", "main"), true);
    o.assign(new Set(), 6);
    assert.equal(o.owns("repo", "main"), false, "joined with no partitions");
    now = 10_000;
    o.detach();
    now = 12_000;
    assert.equal(o.owns("repo", "main"), false, "a blip shorter than the grace");
    now = 16_000;
    assert.equal(o.owns("repo", "main"), true);
    assert.equal(o.view().fallback, true);
  });

  it("spreads lane keys over the partitions", () => {
    const counts = new Array<number>(6).fill(0);
    for (let i = 0; i < 600; i++)
      counts[partitionOf(laneKey(`repo-${i % 7}`, `branch-${i}`), 6)]!++;
    for (const c of counts) assert.ok(c > 50, `uneven spread: ${counts.join(",")}`);
  });
});

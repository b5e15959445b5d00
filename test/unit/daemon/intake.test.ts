import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MirrorRouter, parseHookEvent } from "../../../src/daemon/intake.ts";

describe("lakeFS event parsing", () => {
  it("accepts a lakeFS action payload, with fields lakeFS omits when empty left out", () => {
    const e = parseHookEvent({
      event_type: "post-commit",
      event_time: "2026-11-24T05:00:00Z",
      action_name: "mirror",
      hook_id: "notify",
      repository_id: "repo",
      branch_id: "main",
      commit_id: "abc",
      commit_metadata: { k: "v" },
      some_future_field: 1,
    });
    assert.equal(e.branch_id, "main");
  });

  it("says which field is wrong", () => {
    assert.throws(() => parseHookEvent([]), /JSON object/);
    assert.throws(() => parseHookEvent({ repository_id: "r" }), /"event_type"/);
    assert.throws(
      () => parseHookEvent({ event_type: "post-commit", repository_id: 7 }),
      /"repository_id"/,
    );
    assert.throws(
      () => parseHookEvent({ event_type: "post-commit", repository_id: "r", branch_id: 1 }),
      /"branch_id"/,
    );
  });
});

describe("mirror routing", () => {
  const router = new MirrorRouter([
    {
      repository: "repo",
      branches: ["main", "release-*"],
      destination: "s3://bucket/{repository}/{branch}/",
    },
    { repository: "repo", branches: ["main"], destination: "s3://backup/main/" },
  ]);

  it("sends a branch to every mirror whose globs match it, with placeholders filled", () => {
    assert.deepEqual(router.match("repo", "main"), [
      {
        repository: "repo",
        branch: "main",
        destination: "s3://bucket/repo/main/",
        dedicated: false,
      },
      { repository: "repo", branch: "main", destination: "s3://backup/main/", dedicated: false },
    ]);
    assert.deepEqual(
      router.match("repo", "release-1.2").map((k) => k.destination),
      ["s3://bucket/repo/release-1.2/"],
    );
  });

  it("matches globs whole, and treats other regex characters literally", () => {
    assert.deepEqual(router.match("repo", "old-release-1"), []);
    assert.deepEqual(router.match("repo", "mainline"), []);
    assert.deepEqual(router.match("other", "main"), []);
    const dots = new MirrorRouter([
      { repository: "r", branches: ["v1.?"], destination: "s3://bkt/x/" },
    ]);
    assert.equal(dots.match("r", "v1.2").length, 1);
    assert.equal(dots.match("r", "v1x2").length, 0);
  });

  it("gives a destination to one lane only: a second lane on it, inside it or around it is refused", () => {
    const r = new MirrorRouter([
      { repository: "a", branches: ["main"], destination: "s3://shared/{branch}/" },
      { repository: "b", branches: ["main"], destination: "s3a://shared/main" },
      { repository: "c", branches: ["x"], destination: "s3://shared/main/inner/" },
      { repository: "d", branches: ["y"], destination: "s3://shared/" },
      { repository: "e", branches: ["z"], destination: "s3://shared/mainly/" },
    ]);
    assert.deepEqual(
      r.match("a", "main").map((k) => k.destination),
      ["s3://shared/main/"],
    );
    assert.deepEqual(r.match("b", "main"), [], "the same place spelled another way");
    assert.deepEqual(r.match("c", "x"), [], "nested inside another lane's destination");
    assert.deepEqual(r.match("d", "y"), [], "around another lane's destination");
    assert.equal(r.match("e", "z").length, 1, "a sibling prefix is another place");
    assert.equal(r.match("a", "main").length, 1, "the owner keeps matching");
  });

  it("frees a destination once its lane ends: another lane may take it, and the claim is not kept", () => {
    const r = new MirrorRouter([
      { repository: "a", branches: ["tmp-*"], destination: "s3://shared/{branch}/" },
      { repository: "b", branches: ["tmp-1"], destination: "s3://shared/tmp-1/" },
    ]);
    assert.equal(r.match("a", "tmp-1").length, 1);
    assert.deepEqual(r.match("b", "tmp-1"), [], "held by a/tmp-1");
    r.release("s3://shared/tmp-1/", "b/tmp-1");
    assert.deepEqual(r.match("b", "tmp-1"), [], "only the holder can free it");
    r.release("s3://shared/tmp-1/", "a/tmp-1");
    assert.equal(r.match("b", "tmp-1").length, 1, "free once a/tmp-1 ended");
  });
});

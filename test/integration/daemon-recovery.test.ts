import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { TaskPool } from "../../src/export/pool.ts";
import {
  commitEvent,
  laneStatus,
  postWebhook,
  spawnDaemon,
  startDaemon,
  waitFor,
  waitForExported,
  writeDaemonConfig,
} from "../helpers/daemon.ts";
import { assertMirrorEqual, commitObjects, listKeys, statusKeys } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

describe("daemon recovery", () => {
  let stack: Stack;
  const closers: (() => Promise<unknown>)[] = [];
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    for (const c of closers.reverse()) await c();
    await stack.close();
  });

  const auth = () => ({ authorization: `Bearer ${stack.env.LAKEFSACTION_MIRROR_TOKEN}` });

  /** A commit of many small objects, so that exporting it one at a time takes seconds. */
  async function bigCommit(repo: string, count: number): Promise<string> {
    const pool = new TaskPool(16);
    for (let i = 0; i < count; i++) {
      await pool.submit(async () => {
        await stack.lakefs.uploadObject(
          repo,
          "main",
          `bulk/${String(i).padStart(5, "0")}.txt`,
          `object ${i}`,
        );
      });
    }
    await pool.drain();
    return (await stack.lakefs.commit(repo, "main", { message: `${count} objects` })).id;
  }

  it("the reconciler catches a commit whose webhook never arrived, and a hard reset to an older commit", async () => {
    const repo = await createRepo(stack, "reconcile");
    const bucket = await createBucket(stack);
    const { daemon, url } = await startDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      reconcileIntervalSeconds: 1,
    });
    closers.push(() => daemon.close());
    const c1 = await commitObjects(stack, repo, "main", [{ path: "old.txt", content: "old" }]);
    await waitForExported(url, repo, "main", c1);
    const c2 = await commitObjects(
      stack,
      repo,
      "main",
      [{ path: "new.txt", content: "new" }],
      ["old.txt"],
    );
    await waitForExported(url, repo, "main", c2);
    await assertMirrorEqual(stack, repo, c2, bucket);

    // A hard reset fires no hook at all.
    await stack.lakefs.hardReset(repo, "main", c1);
    const lane = await waitForExported(url, repo, "main", c1);
    assert.equal(lane.commitsBehind, 0);
    await assertMirrorEqual(stack, repo, c1, bucket);
    const keys = await listKeys(stack, bucket);
    assert.equal(keys.has("new.txt"), false, "objects added after the reset commit are deleted");
    assert.equal(keys.has("old.txt"), true);
  });

  it("keeps only the newest status.keep status files at a destination", async () => {
    const repo = await createRepo(stack, "keep");
    const bucket = await createBucket(stack);
    const { daemon, url } = await startDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      reconcileIntervalSeconds: 1,
      extra: { status: { keep: 2 } },
    });
    closers.push(() => daemon.close());
    let head = "";
    for (let i = 0; i < 4; i++) {
      head = await commitObjects(stack, repo, "main", [{ path: `k${i}.txt`, content: `${i}` }]);
      await waitForExported(url, repo, "main", head);
    }
    const statuses = statusKeys((await listKeys(stack, bucket)).keys()).sort();
    assert.equal(statuses.length, 2, statuses.join("\n"));
    assert.ok(statuses.some((k) => k.startsWith(`EXPORT_${head}_`) && k.endsWith("_SUCCESS")));
    await assertMirrorEqual(stack, repo, head, bucket);
  });

  it("kill -9 during a large export, then a restart, converges with nothing missing", async () => {
    const repo = await createRepo(stack, "kill");
    const bucket = await createBucket(stack);
    const { file } = writeDaemonConfig(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      extra: { export: { concurrency: 1, copyMode: "stream" } },
    });
    const first = spawnDaemon(stack, file);
    closers.push(() => Promise.resolve(first.child.kill("SIGKILL")));
    const url = await first.url;
    const head = await bigCommit(repo, 400);
    assert.equal((await postWebhook(url, commitEvent(repo, "main", head), auth())).status, 202);
    await waitFor(
      "the export to be under way",
      async () => (await listKeys(stack, bucket)).size >= 20,
    );
    first.child.kill("SIGKILL");
    await first.exited;
    const partial = await listKeys(stack, bucket);
    assert.ok(partial.size < 400, `the export had finished (${partial.size} keys) before the kill`);
    assert.deepEqual(
      statusKeys(partial.keys()).filter((k) => k.includes(head)),
      [],
    );

    const second = spawnDaemon(stack, file);
    closers.push(() => Promise.resolve(second.child.kill("SIGKILL")));
    const url2 = await second.url;
    await waitForExported(url2, repo, "main", head, 120_000);
    await assertMirrorEqual(stack, repo, head, bucket);
    assert.equal(
      statusKeys((await listKeys(stack, bucket)).keys()).filter((k) => k.includes(head)).length,
      1,
    );
    second.child.kill("SIGTERM");
    assert.equal(await second.exited, 0);
  });

  it("SIGTERM stops intake and lets the running export finish within the grace period", async () => {
    const repo = await createRepo(stack, "drain");
    const bucket = await createBucket(stack);
    const { file } = writeDaemonConfig(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      extra: { export: { concurrency: 2, copyMode: "stream" } },
    });
    const proc = spawnDaemon(stack, file);
    closers.push(() => Promise.resolve(proc.child.kill("SIGKILL")));
    const url = await proc.url;
    const head = await bigCommit(repo, 300);
    assert.equal((await postWebhook(url, commitEvent(repo, "main", head), auth())).status, 202);
    await waitFor(
      "the export to be under way",
      async () => (await listKeys(stack, bucket)).size >= 10,
    );
    proc.child.kill("SIGTERM");
    await waitFor("intake to close", async () => {
      const res = await postWebhook(url, commitEvent(repo, "main", head), auth()).catch(
        () => undefined,
      );
      return res === undefined || res.status === 503;
    });
    assert.equal(await proc.exited, 0);
    const keys = await listKeys(stack, bucket);
    assert.equal(
      statusKeys(keys.keys()).filter((k) => k.includes(head) && k.endsWith("_SUCCESS")).length,
      1,
      proc.output(),
    );
    await assertMirrorEqual(stack, repo, head, bucket);
  });

  it("a new checkpoint store resumes from the destination's SUCCESS status file instead of copying everything", async () => {
    const repo = await createRepo(stack, "resume");
    const bucket = await createBucket(stack);
    const mirrors = [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }];
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "a.txt", content: "a" },
      { path: "b.txt", content: "b" },
      { path: "c.txt", content: "c" },
    ]);
    const one = await startDaemon(stack, { mirrors });
    await waitForExported(one.url, repo, "main", c1);
    await one.daemon.close();

    const c2 = await commitObjects(stack, repo, "main", [{ path: "b.txt", content: "B" }]);
    const two = await startDaemon(stack, { mirrors });
    closers.push(() => two.daemon.close());
    await waitForExported(two.url, repo, "main", c2);
    await assertMirrorEqual(stack, repo, c2, bucket);
    const metrics = await (await fetch(`${two.url}/metrics`)).text();
    assert.match(metrics, /^lakefs_mirror_objects_total\{op="copied"\} 1$/m);
  });

  it("post-create-branch starts a lane for a branch matching a glob; post-delete-branch ends it", async () => {
    const repo = await createRepo(stack, "branches");
    const bucket = await createBucket(stack);
    const { daemon, url } = await startDaemon(stack, {
      mirrors: [
        { repository: repo, branches: ["feature-*"], destination: `s3://${bucket}/{branch}/` },
      ],
    });
    closers.push(() => daemon.close());
    await commitObjects(stack, repo, "main", [{ path: "x.txt", content: "x" }]);
    await stack.lakefs.createBranch(repo, "feature-1", "main");
    const head = (await stack.lakefs.getBranch(repo, "feature-1")).commit_id;
    const created = await postWebhook(
      url,
      { ...commitEvent(repo, "feature-1", head, "post-create-branch") },
      auth(),
    );
    assert.equal(created.status, 202);
    await waitForExported(url, repo, "feature-1", head);
    await assertMirrorEqual(stack, repo, head, bucket, "feature-1/");

    await stack.lakefs.deleteBranch(repo, "feature-1");
    const deleted = await postWebhook(
      url,
      commitEvent(repo, "feature-1", "", "post-delete-branch"),
      auth(),
    );
    assert.equal(deleted.status, 202);
    // The lane ends and leaves /status: branch churn does not pile up lanes.
    await waitFor(
      "the lane to end",
      async () => (await laneStatus(url)).every((l) => l.branch !== "feature-1") || undefined,
    );
    assert.equal(
      (await listKeys(stack, bucket, "feature-1/")).has("x.txt"),
      true,
      "the mirror stays",
    );
    assert.equal((await daemon.checkpoint.allPending()).size, 0);
  });
});

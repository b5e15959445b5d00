import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { TaskPool } from "../../src/export/pool.ts";
import type { LaneStatus } from "../../src/daemon/daemon.ts";
import { S3Destination } from "../../src/s3/destination.ts";
import { verifyMirror } from "../../src/verify/verify.ts";
import { lakefsGateway } from "../../src/s3/gateway.ts";
import {
  exportCounters,
  mirroredObjects,
  restorePhysicalObject,
  sample,
  scrape,
  shortWindows,
  startObservedDaemon,
  statusFiles,
} from "../helpers/convergence.ts";
import type { ObservedDaemon, StatusFile } from "../helpers/convergence.ts";
import {
  commitEvent,
  laneStatus,
  postWebhook,
  waitFor,
  waitForExported,
} from "../helpers/daemon.ts";
import type { DaemonSettings } from "../helpers/daemon.ts";
import {
  assertMirrorEqual,
  commitObjects,
  commitPaths,
  destroyPhysicalObject,
  listKeys,
  readKey,
} from "../helpers/mirror.ts";
import type { SeedObject } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

describe("daemon convergence", () => {
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

  /**
   * A daemon mirroring `repo`'s main branch to the root of `bucket`, once it has exported the
   * repository's first commit. Unless told otherwise the reconciler polls only at start-up, so
   * that the daemon looks at a commit only when the test posts its webhook.
   */
  async function mirrorDaemon(
    repo: string,
    bucket: string,
    settings: Partial<DaemonSettings> = {},
  ): Promise<ObservedDaemon> {
    const d = await startObservedDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      reconcileIntervalSeconds: 0,
      ...settings,
      extra: shortWindows(settings.extra),
    });
    closers.push(() => d.daemon.close());
    const first = (await stack.lakefs.getBranch(repo, "main")).commit_id;
    await waitForExported(d.url, repo, "main", first);
    return d;
  }

  async function notify(url: string, repo: string, commit: string, type = "post-commit") {
    const res = await postWebhook(url, commitEvent(repo, "main", commit, type), auth());
    assert.equal(res.status, 202);
  }

  async function lane(url: string, repo: string): Promise<LaneStatus | undefined> {
    return (await laneStatus(url)).find((l) => l.repository === repo && l.branch === "main");
  }

  function waitForStatusFile(
    bucket: string,
    what: string,
    pick: (files: StatusFile[]) => StatusFile | undefined,
    timeoutMs = 30_000,
  ): Promise<StatusFile> {
    return waitFor(what, async () => pick(await statusFiles(stack, bucket)), timeoutMs);
  }

  async function failureLines(bucket: string, file: StatusFile): Promise<string[]> {
    return (await readKey(stack, bucket, file.key)).toString("utf8").trimEnd().split("\n");
  }

  /**
   * C1 exported; C2 adds 30 objects (in subdirectories too, one with metadata) and one whose
   * bytes are destroyed before the daemon first hears of C2. Returns once C2's FAILURE is
   * written and /status shows the failing path.
   */
  async function exportThenBreak(prefix: string) {
    const repo = await createRepo(stack, prefix);
    const bucket = await createBucket(stack);
    const d = await mirrorDaemon(repo, bucket);
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "base/kept.txt", content: "kept from C1" },
      { path: "base/table.csv", content: "a,b\n1,2\n", contentType: "text/csv" },
      { path: "root.txt", content: "root" },
    ]);
    await notify(d.url, repo, c1);
    await waitForExported(d.url, repo, "main", c1);

    const added: SeedObject[] = [];
    for (let i = 0; i < 30; i++) {
      const dir = ["c2/", "c2/sub/dir/", "c2-"][i % 3];
      added.push({ path: `${dir}${String(i).padStart(2, "0")}.txt`, content: `C2 object ${i}` });
    }
    added[0] = {
      ...added[0]!,
      contentType: "application/json",
      metadata: { owner: "team-c2", stage: "raw" },
    };
    const doomed = "c2/sub/doomed.bin";
    const c2 = await commitObjects(
      stack,
      repo,
      "main",
      [...added, { path: doomed, content: randomBytes(512) }],
      [],
      "C2",
    );
    await destroyPhysicalObject(stack, repo, c2, doomed);
    await notify(d.url, repo, c2);

    const failure = await waitForStatusFile(bucket, "a FAILURE status file for C2", (files) =>
      files.find((f) => f.commitId === c2 && f.status === "FAILURE"),
    );
    const lines = await failureLines(bucket, failure);
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.ok(lines[0]!.startsWith(`copy ${JSON.stringify(doomed)}: `), lines[0]);
    const status = await waitFor("/status to show C2's failing path", async () => {
      const l = await lane(d.url, repo);
      return l?.lastExportedCommit === c2 && l.failingPaths === 1 && l.lastError ? l : undefined;
    });
    assert.ok(status.lastError?.includes(doomed), status.lastError ?? "");
    const mirrored = await mirroredObjects(stack, bucket);
    for (const o of added) assert.ok(mirrored.has(o.path), `${o.path} was mirrored at C2`);
    assert.equal(mirrored.has(doomed), false);
    return { repo, bucket, d, c1, c2, c2Paths: [...added.map((o) => o.path), doomed] };
  }

  /**
   * The lane is current at `commit`: its newest status file is a SUCCESS for it, the mirror
   * equals it, and the destination holds exactly the paths lakeFS lists for it.
   */
  async function assertConverged(
    d: ObservedDaemon,
    repo: string,
    bucket: string,
    commit: string,
    since: number,
  ) {
    const newest = await waitForStatusFile(
      bucket,
      `a SUCCESS status file for ${commit.slice(0, 12)} newer than any other`,
      (files) =>
        files[0]?.commitId === commit && files[0].status === "SUCCESS" && files[0].at >= since
          ? files[0]
          : undefined,
    );
    await waitForExported(d.url, repo, "main", commit);
    assert.equal((await statusFiles(stack, bucket))[0]?.key, newest.key, d.logText());
    await assertMirrorEqual(stack, repo, commit, bucket);
    const mirrored = await mirroredObjects(stack, bucket);
    assert.deepEqual(
      [...mirrored.entries()].sort(),
      [...(await commitPaths(stack, repo, commit)).entries()].sort(),
    );
    const l = await lane(d.url, repo);
    assert.equal(l?.failingPaths, 0);
    assert.equal(l?.lastError, null);
    return mirrored;
  }

  it("a partial export followed by a revert converges with no stray objects", async () => {
    const { repo, bucket, d, c1, c2, c2Paths } = await exportThenBreak("revert");
    const since = Date.now();
    await stack.lakefs.revert(repo, "main", c2);
    const c3 = (await stack.lakefs.getBranch(repo, "main")).commit_id;
    assert.ok(c3 !== c2 && c3 !== c1);
    await notify(d.url, repo, c3, "post-revert");

    const mirrored = await assertConverged(d, repo, bucket, c3, since);
    for (const p of c2Paths) assert.equal(mirrored.has(p), false, `${p} of C2 remains`);
    assert.deepEqual([...mirrored.keys()].sort(), ["base/kept.txt", "base/table.csv", "root.txt"]);
  });

  it("a partial export followed by a hard reset to the commit before converges with no stray objects", async () => {
    const { repo, bucket, d, c1, c2Paths } = await exportThenBreak("reset");
    const since = Date.now();
    await stack.lakefs.hardReset(repo, "main", c1);
    // A hard reset fires no hook: the reconciler's poll is what notices it.
    await d.daemon.reconciler.reconcile();

    const mirrored = await assertConverged(d, repo, bucket, c1, since);
    for (const p of c2Paths) assert.equal(mirrored.has(p), false, `${p} of C2 remains`);
    const successes = (await statusFiles(stack, bucket)).filter(
      (f) => f.commitId === c1 && f.status === "SUCCESS",
    );
    assert.ok(successes.some((f) => f.at >= since) && successes.some((f) => f.at < since));
  });

  it("a retry after a FAILURE re-copies only the failing path", async () => {
    const repo = await createRepo(stack, "retry");
    const bucket = await createBucket(stack);
    const d = await mirrorDaemon(repo, bucket);
    const count = 1000;
    const name = (i: number) => `bulk/${String(i).padStart(4, "0")}.txt`;
    const content = (i: number) => `small object ${i}\n`;
    const pool = new TaskPool(16);
    for (let i = 0; i < count; i++) {
      await pool.submit(async () => {
        await stack.lakefs.uploadObject(repo, "main", name(i), content(i));
      });
    }
    await pool.drain();
    const commit = (await stack.lakefs.commit(repo, "main", { message: "1,000 objects" })).id;
    const doomed = name(617);
    await destroyPhysicalObject(stack, repo, commit, doomed);

    const base = await exportCounters(d.url);
    await notify(d.url, repo, commit);
    const afterFirst = await waitFor(
      "the first export's FAILURE in the metrics",
      async () => {
        const c = await exportCounters(d.url);
        return c.failures === base.failures + 1 ? c : undefined;
      },
      90_000,
    );
    const afterRetry = await waitFor("the retry's FAILURE in the metrics", async () => {
      const c = await exportCounters(d.url);
      return c.failures === base.failures + 2 ? c : undefined;
    });
    const failures = (await statusFiles(stack, bucket)).filter(
      (f) => f.commitId === commit && f.status === "FAILURE",
    );
    assert.ok(failures.length >= 2, `${failures.length} FAILURE files`);
    const [first, second] = failures.slice(-2).reverse() as [StatusFile, StatusFile];
    for (const f of [first, second]) {
      const lines = await failureLines(bucket, f);
      assert.equal(lines.length, 1, lines.join("\n"));
      assert.ok(lines[0]!.startsWith(`copy ${JSON.stringify(doomed)}: `), lines[0]);
    }
    assert.equal((await lane(d.url, repo))?.headCommit, commit, "HEAD did not move");

    await restorePhysicalObject(stack, repo, commit, doomed, content(617));
    await waitForExported(d.url, repo, "main", commit);
    const afterRestore = await exportCounters(d.url);
    const newest = (await statusFiles(stack, bucket))[0];
    assert.equal(newest?.commitId, commit);
    assert.equal(newest.status, "SUCCESS");
    await assertMirrorEqual(stack, repo, commit, bucket);
    assert.equal((await mirroredObjects(stack, bucket)).size, count);

    const measured = {
      firstExport: {
        copied: afterFirst.copied - base.copied,
        failed: afterFirst.failed - base.failed,
      },
      retryWhileGone: {
        copied: afterRetry.copied - afterFirst.copied,
        failed: afterRetry.failed - afterFirst.failed,
        backoffMs: second.at - first.at,
      },
      failedRetries: afterRestore.failures - afterFirst.failures,
      afterRestore: {
        copied: afterRestore.copied - afterRetry.copied,
        successes: afterRestore.successes - afterRetry.successes,
      },
    };
    console.log(`retry of one failing path among ${count}: ${JSON.stringify(measured)}`);
    assert.deepEqual(measured.firstExport, { copied: count - 1, failed: 1 });
    assert.equal(measured.retryWhileGone.copied, 0);
    assert.equal(measured.retryWhileGone.failed, 1);
    assert.ok(measured.retryWhileGone.backoffMs >= 1000, "the retry waited for its back-off");
    assert.deepEqual(measured.afterRestore, { copied: 1, successes: 1 });
  });

  it("a lane with a permanently failing object keeps the rest current", async () => {
    const repo = await createRepo(stack, "stuck");
    const bucket = await createBucket(stack);
    const backoffSeconds = 30;
    const d = await mirrorDaemon(repo, bucket, {
      extra: {
        scheduler: { maxParallelLanes: 4, retryBaseSeconds: backoffSeconds, retryMaxSeconds: 60 },
      },
    });
    const doomed = "data/broken.bin";
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "data/a.txt", content: "a1" },
      { path: "data/b.txt", content: "b1" },
      { path: "data/c.txt", content: "c1", contentType: "text/plain", metadata: { v: "1" } },
      { path: doomed, content: randomBytes(256) },
    ]);
    await destroyPhysicalObject(stack, repo, c1, doomed);
    await notify(d.url, repo, c1);
    const firstFailure = await waitForStatusFile(bucket, "C1's FAILURE", (files) =>
      files.find((f) => f.commitId === c1 && f.status === "FAILURE"),
    );

    const changes: {
      put: SeedObject[];
      deletes: string[];
    }[] = [
      {
        put: [
          { path: "data/a.txt", content: "a2" },
          { path: "more/new.txt", content: "new" },
        ],
        deletes: ["data/b.txt"],
      },
      {
        put: [
          { path: "data/c.txt", content: "c3", contentType: "text/plain", metadata: { v: "3" } },
          { path: "more/newer.txt", content: "newer" },
        ],
        deletes: ["more/new.txt"],
      },
    ];
    const delays: number[] = [];
    let head = c1;
    for (const change of changes) {
      head = await commitObjects(stack, repo, "main", change.put, change.deletes);
      const sent = Date.now();
      await notify(d.url, repo, head);
      const target = head;
      await waitFor(
        `the changes of ${target.slice(0, 12)} at the destination`,
        async () => {
          const keys = await listKeys(stack, bucket);
          if (change.deletes.some((p) => keys.has(p))) return false;
          for (const o of change.put) {
            if (!keys.has(o.path)) return false;
            const have = await readKey(stack, bucket, o.path);
            if (!have.equals(Buffer.from(o.content))) return false;
          }
          return (await lane(d.url, repo))?.lastExportedCommit === target;
        },
        backoffSeconds * 1000,
      );
      delays.push(Date.now() - sent);
    }
    const newest = await waitForStatusFile(bucket, "the newest HEAD's status file", (files) =>
      files[0]?.commitId === head ? files[0] : undefined,
    );
    const doneAt = Date.now();
    console.log(
      `failing lane: commits mirrored ${delays.join(" ms, ")} ms after their webhook; ` +
        `${doneAt - firstFailure.at} ms after the first FAILURE (back-off ${backoffSeconds} s)`,
    );
    for (const ms of delays) assert.ok(ms < 10_000, `a commit took ${ms} ms to reach the mirror`);
    assert.ok(
      newest.at < firstFailure.at + backoffSeconds * 1000,
      "the new commits were exported before the failing path's back-off ran out",
    );
    assert.equal(newest.status, "FAILURE");
    const lines = await failureLines(bucket, newest);
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.ok(lines[0]!.startsWith(`copy ${JSON.stringify(doomed)}: `), lines[0]);

    const l = await lane(d.url, repo);
    assert.equal(l?.failingPaths, 1);
    assert.equal(l.lastExportedCommit, head);
    assert.equal(l.headCommit, head);
    const metrics = await scrape(d.url);
    assert.equal(
      sample(metrics, "lakefs_mirror_lane_failing_paths", { repository: repo, branch: "main" }),
      1,
    );
    // Everything but the failing path equals the newest HEAD, bytes and metadata included.
    const expected = await commitPaths(stack, repo, head);
    expected.delete(doomed);
    assert.deepEqual(
      [...(await mirroredObjects(stack, bucket)).entries()].sort(),
      [...expected.entries()].sort(),
    );
    const verified = await verifyMirror({
      lakefs: stack.lakefs,
      repository: repo,
      ref: head,
      destination: new S3Destination(stack.s3, { bucket, prefix: "" }),
      gateway: lakefsGateway(stack.gateway),
    });
    assert.deepEqual(
      verified.differences.map((x) => [x.kind, x.path]),
      [["missing", doomed]],
    );
  });

  it("objects named like lakefs-mirror's own records are refused", async () => {
    const repo = await createRepo(stack, "reserved");
    const bucket = await createBucket(stack);
    const first = await mirrorDaemon(repo, bucket, { reconcileIntervalSeconds: 1 });
    const fakeCommit = randomBytes(32).toString("hex");
    const fakeStatus = `EXPORT_${fakeCommit}_2026-01-01T00:00:00.000Z_SUCCESS`;
    const fakeLedger = "_lakefs_mirror/ledger.json";
    const normal: SeedObject[] = [
      { path: "data/one.txt", content: "one" },
      { path: "data/two.txt", content: "two" },
      { path: "top.txt", content: "top" },
    ];
    const c1 = await commitObjects(stack, repo, "main", [
      ...normal,
      { path: fakeStatus, content: "Export completed successfully!" },
      { path: fakeLedger, content: "junk, {not json" },
    ]);
    await notify(first.url, repo, c1);
    const failure = await waitForStatusFile(bucket, "C1's FAILURE", (files) =>
      files.find((f) => f.commitId === c1 && f.status === "FAILURE"),
    );
    const lines = await failureLines(bucket, failure);
    assert.equal(lines.length, 2, lines.join("\n"));
    for (const p of [fakeStatus, fakeLedger]) {
      const line = lines.find((x) => x.startsWith(`copy ${JSON.stringify(p)}: `));
      assert.ok(line, `no failure line for ${p}:\n${lines.join("\n")}`);
      assert.match(line, /refused|reserved/);
    }
    for (const o of normal) {
      assert.equal((await readKey(stack, bucket, o.path)).toString(), o.content, o.path);
    }
    const ledger = JSON.parse((await readKey(stack, bucket, fakeLedger)).toString("utf8")) as {
      format: unknown;
      repository: unknown;
    };
    assert.equal(ledger.format, 1);
    assert.equal(ledger.repository, repo);
    assert.equal((await listKeys(stack, bucket)).has(fakeStatus), false);
    assert.equal(
      (await statusFiles(stack, bucket)).some((f) => f.commitId === fakeCommit),
      false,
    );
    await first.daemon.close();

    // A second daemon with an empty checkpoint store takes over the destination.
    const second = await startObservedDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      reconcileIntervalSeconds: 1,
      extra: shortWindows(),
    });
    closers.push(() => second.daemon.close());
    assert.notEqual(second.checkpointPath, first.checkpointPath);
    const c2 = await commitObjects(stack, repo, "main", [
      { path: "data/two.txt", content: "two, changed" },
      { path: "data/three.txt", content: "three" },
    ]);
    await notify(second.url, repo, c2);
    const c2Failure = await waitForStatusFile(bucket, "C2's status file", (files) =>
      files.find((f) => f.commitId === c2),
    );
    await waitFor("the lane to show C2", async () => {
      const l = await lane(second.url, repo);
      return l?.lastExportedCommit === c2 && l.failingPaths === 2;
    });
    assert.equal(c2Failure.status, "FAILURE");
    assert.equal((await readKey(stack, bucket, "data/two.txt")).toString(), "two, changed");
    assert.equal((await readKey(stack, bucket, "data/three.txt")).toString(), "three");
    const counters = await exportCounters(second.url);
    const loaded = second.logs().filter((l) => l.msg === "lane state loaded");
    const modes = second
      .logs()
      .filter((l) => l.msg === "export failed" || l.msg === "export finished")
      .map((l) => l.mode);
    console.log(
      `second daemon: copied ${counters.copied}, loaded from ${JSON.stringify(loaded.map((l) => l.source))}, export modes ${JSON.stringify(modes)}`,
    );
    assert.equal(counters.copied, 2, second.logText());
    assert.deepEqual(
      loaded.map((l) => [l.source, l.base]),
      [["destination", c1]],
    );
    assert.ok(modes.length > 0 && modes.every((m) => m === "diff"), second.logText());

    // Regression: deleting the refused objects from the branch clears their failures, and the
    // lane's own ledger at the destination survives the delete of the lakeFS object of its name.
    const c3 = await commitObjects(stack, repo, "main", [], [fakeStatus, fakeLedger]);
    await notify(second.url, repo, c3);
    await waitForExported(second.url, repo, "main", c3);
    await assertMirrorEqual(stack, repo, c3, bucket);
    const kept = JSON.parse((await readKey(stack, bucket, fakeLedger)).toString("utf8")) as {
      lastSuccess: unknown;
    };
    assert.equal(kept.lastSuccess, c3);
  });
});

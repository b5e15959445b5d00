import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { parseLedger } from "../../src/ledger/ledger.ts";
import type { Ledger } from "../../src/ledger/ledger.ts";
import type { MirrorSpec } from "../../src/config.ts";
import { cliSummary, runCli } from "../helpers/cli.ts";
import { startDaemon, waitForExported } from "../helpers/daemon.ts";
import { assertMirrorEqual, commitObjects, listKeys, readKey } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const LEDGER = "_lakefs_mirror/ledger.json";
const LEASE = "_lakefs_mirror/lease.json";

describe("a one-off export into a prefix a daemon's lane mirrors", () => {
  let stack: Stack;
  const closers: (() => Promise<unknown>)[] = [];
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    for (const c of closers.reverse()) await c();
    await stack.close();
  });

  async function ledgerAt(bucket: string, prefix: string): Promise<Ledger> {
    return parseLedger((await readKey(stack, bucket, prefix + LEDGER)).toString(), "test");
  }

  async function leaseAt(bucket: string, prefix: string) {
    return JSON.parse((await readKey(stack, bucket, prefix + LEASE)).toString()) as {
      owner: string;
      expiresAt: string;
    };
  }

  it("refuses while a daemon holds the lane's lease, naming the holder and the expiry, and writes nothing", async () => {
    const repo = await createRepo(stack, "busy");
    const bucket = await createBucket(stack);
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "a.txt", content: "a" },
      { path: "b.txt", content: "b" },
    ]);
    const { daemon, url } = await startDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/p/` }],
      // Long enough that the lease outlives the CLI runs below on a loaded machine.
      extra: { lease: { ttlSeconds: 600 } },
    });
    closers.push(() => daemon.close());
    await waitForExported(url, repo, "main", c1);
    await commitObjects(stack, repo, "main", [{ path: "c.txt", content: "c" }], ["a.txt"]);
    const lease = await leaseAt(bucket, "p/");
    assert.equal(lease.owner, daemon.owner);
    const before = await listKeys(stack, bucket, "p/");
    const ledgerBefore = (await readKey(stack, bucket, `p/${LEDGER}`)).toString();

    for (const mode of [
      ["--branch=main"],
      ["--branch=main", `--prev_commit_id=${c1}`],
      ["--branch=main", "--sync"],
    ]) {
      const run = await runCli(stack, ["export", repo, `s3://${bucket}/p/`, ...mode]);
      assert.equal(run.code, 1, run.stderr + run.stdout);
      assert.match(run.stderr, /\[LM_LANE_BUSY\]/);
      assert.ok(run.stderr.includes(daemon.owner), run.stderr);
      assert.ok(run.stderr.includes(lease.expiresAt), run.stderr);
      assert.match(run.stderr, new RegExp(`lane ${repo}/main`));
    }
    // Inside the lane's prefix the export would be among the lane's keys: refused too.
    const inner = await runCli(stack, ["export", repo, `s3://${bucket}/p/inner/`, "--branch=main"]);
    assert.equal(inner.code, 1, inner.stderr + inner.stdout);
    assert.match(inner.stderr, /\[LM_LANE_OVERLAP\]/);
    assert.ok(
      inner.stderr.includes(
        `a one-off export of ${repo} at s3://${bucket}/p/inner/ overlaps lane ${repo}/main at s3://${bucket}/p/`,
      ),
      inner.stderr,
    );
    assert.deepEqual([...(await listKeys(stack, bucket, "p/"))].sort(), [...before].sort());
    assert.equal((await readKey(stack, bucket, `p/${LEDGER}`)).toString(), ledgerBefore);
    assert.deepEqual(await leaseAt(bucket, "p/"), lease);
  });

  it("on an idle lane keeps the ledger true: a whole export deletes what the ledger says is stale and becomes the base; a diff from elsewhere stays an attempt the daemon covers", async () => {
    const repo = await createRepo(stack, "idle");
    const bucket = await createBucket(stack);
    const dest = `s3://${bucket}/m/`;
    const mirrors: MirrorSpec[] = [{ repository: repo, branches: ["main"], destination: dest }];
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "a.txt", content: "a" },
      { path: "b.txt", content: "b" },
      { path: "c.txt", content: "c" },
    ]);
    const first = await startDaemon(stack, { mirrors });
    await waitForExported(first.url, repo, "main", c1);
    // A daemon that stops hands its lease over at once.
    await first.daemon.close();
    const checkpointPath = first.checkpointPath;

    // A whole export: a.txt is gone from C2, and the ledger says it may be at the destination.
    const c2 = await commitObjects(
      stack,
      repo,
      "main",
      [{ path: "d.txt", content: "d" }],
      ["a.txt"],
    );
    const plan = await runCli(stack, ["export", repo, dest, "--branch=main", "--dry-run"]);
    assert.equal(plan.code, 0, plan.stderr);
    const planned = JSON.parse(plan.stdout) as {
      actions: Record<string, number>;
      sample: Record<string, string[]>;
    };
    assert.deepEqual(planned.sample.delete, ["a.txt"]);
    const whole = await runCli(stack, ["export", repo, dest, "--branch=main"]);
    assert.equal(whole.code, 0, whole.stderr + whole.stdout);
    assert.equal(cliSummary(whole).deleted, 1);
    await assertMirrorEqual(stack, repo, c2, bucket, "m/");
    let ledger = await ledgerAt(bucket, "m/");
    assert.equal(ledger.base, c2);
    assert.equal(ledger.lastSuccess, c2);
    assert.deepEqual(ledger.attempts, []);
    const lease = await leaseAt(bucket, "m/");
    assert.match(lease.owner, /^lakefs-mirror export on /);
    assert.ok(Date.parse(lease.expiresAt) <= Date.now(), "the CLI hands the lease back");

    // A diff from a commit that is not what the destination holds: it stays an attempt.
    const c3 = await commitObjects(
      stack,
      repo,
      "main",
      [{ path: "e.txt", content: "e" }],
      ["b.txt"],
    );
    const diff = await runCli(stack, [
      "export",
      repo,
      dest,
      "--branch=main",
      `--prev_commit_id=${c1}`,
    ]);
    assert.equal(diff.code, 0, diff.stderr + diff.stdout);
    ledger = await ledgerAt(bucket, "m/");
    assert.equal(ledger.base, c2);
    assert.deepEqual(ledger.attempts, [c3]);

    // The daemon comes back with its old local copy: the destination's ledger is what it
    // resumes from, and it covers the attempt.
    const second = await startDaemon(stack, { mirrors, checkpointPath });
    await waitForExported(second.url, repo, "main", c3);
    await second.daemon.close();
    await assertMirrorEqual(stack, repo, c3, bucket, "m/");
    ledger = await ledgerAt(bucket, "m/");
    assert.equal(ledger.base, c3);
    assert.deepEqual(ledger.attempts, []);

    // A diff from exactly what the ledger says the destination holds becomes the base.
    const c4 = await commitObjects(stack, repo, "main", [{ path: "f.txt", content: "f" }]);
    const exact = await runCli(stack, [
      "export",
      repo,
      dest,
      "--branch=main",
      `--prev_commit_id=${c3}`,
    ]);
    assert.equal(exact.code, 0, exact.stderr + exact.stdout);
    ledger = await ledgerAt(bucket, "m/");
    assert.equal(ledger.base, c4);
    assert.deepEqual(ledger.attempts, []);
    const third = await startDaemon(stack, { mirrors, checkpointPath });
    closers.push(() => third.daemon.close());
    await waitForExported(third.url, repo, "main", c4);
    await assertMirrorEqual(stack, repo, c4, bucket, "m/");
    const metrics = await (await fetch(`${third.url}/metrics`)).text();
    assert.doesNotMatch(metrics, /^lakefs_mirror_objects_total\{op="copied"\} [1-9]/m);
  });

  it("--sync on a lane whose ledger says the prefix holds others' keys keeps them, as the lane would", async () => {
    const repo = await createRepo(stack, "foreignsync");
    const bucket = await createBucket(stack);
    const theirs = ["theirs/x.csv", "z.txt"];
    for (const k of theirs)
      await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: k, Body: "someone else's" }));
    const c1 = await commitObjects(
      stack,
      repo,
      "main",
      ["1", "2", "3", "4", "5"].map((n) => ({ path: `d/${n}.txt`, content: n })),
    );
    const d = await startDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
    });
    await waitForExported(d.url, repo, "main", c1);
    await d.daemon.close();
    assert.equal((await ledgerAt(bucket, "")).prefix, "foreign");

    const run = await runCli(stack, ["export", repo, `s3://${bucket}/`, "--branch=main", "--sync"]);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    assert.equal(cliSummary(run).kept, theirs.length);
    assert.equal(cliSummary(run).deleted, 0);
    const keys = await listKeys(stack, bucket);
    for (const k of theirs) assert.ok(keys.has(k), `${k} was deleted`);
    assert.equal((await ledgerAt(bucket, "")).prefix, "foreign");
  });
});

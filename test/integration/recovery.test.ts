import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DeleteObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { loadConfig } from "../../src/config.ts";
import type { MirrorSpec } from "../../src/config.ts";
import { Daemon } from "../../src/daemon/daemon.ts";
import { parseLedger } from "../../src/ledger/ledger.ts";
import type { Ledger } from "../../src/ledger/ledger.ts";
import { cliSummary, runCli } from "../helpers/cli.ts";
import {
  daemonEnv,
  laneStatus,
  startDaemon,
  waitFor,
  waitForExported,
  writeDaemonConfig,
} from "../helpers/daemon.ts";
import { startFaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
import {
  assertMirrorEqual,
  commitObjects,
  listKeys,
  mirrorDifferences,
  readKey,
  silentLogger,
  statusKeys,
} from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const LEDGER = "_lakefs_mirror/ledger.json";

describe("recovery trusts only what describes this destination", () => {
  let stack: Stack;
  const closers: (() => Promise<unknown>)[] = [];
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    for (const c of closers.reverse()) await c();
    await stack.close();
  });

  async function put(bucket: string, key: string, body: string) {
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  }

  async function ledgerAt(bucket: string, prefix = ""): Promise<Ledger | undefined> {
    const keys = await listKeys(stack, bucket, prefix);
    if (!keys.has(LEDGER)) return undefined;
    return parseLedger((await readKey(stack, bucket, prefix + LEDGER)).toString(), "test");
  }

  it("a reconcile stopped part-way by S3 503s keeps a foreign prefix foreign: the next export deletes none of the keys the mirror never wrote", async () => {
    const repo = await createRepo(stack, "stopped");
    const bucket = await createBucket(stack);
    const objects = [
      ...Array.from({ length: 10 }, (_, i) => ({ path: `a/${i}`, content: `a ${i}` })),
      ...Array.from({ length: 30 }, (_, i) => ({ path: `b/${i}`, content: `b ${i}` })),
    ];
    const head = await commitObjects(stack, repo, "main", objects);
    // Keys someone else wrote, sorting after every path the commit has.
    const theirs = ["c/1", "c/2", "c/3"];
    for (const k of theirs) await put(bucket, k, `someone else's ${k}`);

    // Every write of b/… answers 503 SlowDown while the faults are on: the first export copies
    // a/…, then stops after failures in a row, long before its listing reaches c/….
    let faults = true;
    const proxy = await startFaultInjectingProxy(stack.env.AWS_ENDPOINT_URL, {
      flavor: "s3",
      rates: { slowdown: 1 },
      eligible: (method, url) => faults && method === "PUT" && url.startsWith(`/${bucket}/b/`),
    });
    closers.push(() => proxy.close());
    const { file } = writeDaemonConfig(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      extra: {
        s3: { maxAttempts: 1 },
        retry: { retries: 1, minTimeoutMs: 10, maxTimeoutMs: 20, maxRetryTimeMs: 500 },
        export: { concurrency: 4 },
      },
    });
    const config = loadConfig({
      env: { ...daemonEnv(stack), AWS_ENDPOINT_URL: proxy.url, LOG_LEVEL: "silent" },
      file,
    });
    const daemon = new Daemon(config, silentLogger);
    closers.push(() => daemon.close());
    await daemon.start();

    const failure = await waitFor("a FAILURE status file", async () =>
      statusKeys((await listKeys(stack, bucket)).keys()).find((k) => k.endsWith("_FAILURE")),
    );
    assert.match(failure, new RegExp(`^EXPORT_${head}_`));
    assert.match((await readKey(stack, bucket, failure)).toString(), /stopped after/);
    const recorded = await waitFor("the failed export's ledger", async () => {
      const l = await ledgerAt(bucket);
      return l && l.seq >= 2 ? l : undefined;
    });
    assert.equal(recorded.prefix, "foreign", "a listing that stopped part-way proves nothing");
    assert.ok(proxy.injected().slowdown >= 3);

    faults = false;
    await waitForExported(daemon.http.address, repo, "main", head, 60_000);
    for (const k of theirs)
      assert.equal((await readKey(stack, bucket, k)).toString(), `someone else's ${k}`, k);
    assert.deepEqual(
      await mirrorDifferences(stack, repo, head, bucket),
      theirs.map((path) => ({ kind: "extra", path })),
    );
    assert.equal((await ledgerAt(bucket))?.prefix, "foreign");
  });

  it("a base rebuilt from status files is checked by a guarded reconcile: a key a whole export left behind does not stay under SUCCESS", async () => {
    const repo = await createRepo(stack, "stray");
    const bucket = await createBucket(stack);
    const dest = `s3://${bucket}/p/`;
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "a.txt", content: "a" },
      { path: "b.txt", content: "b" },
    ]);
    const first = await runCli(stack, ["export", repo, dest, `--commit_id=${c1}`]);
    assert.equal(first.code, 0, first.stderr + first.stdout);
    const c2 = await commitObjects(stack, repo, "main", [], ["a.txt"]);
    // A whole export never deletes: it writes a SUCCESS for C2 with a.txt still there.
    const second = await runCli(stack, ["export", repo, dest, "--branch=main"]);
    assert.equal(second.code, 0, second.stderr + second.stdout);
    assert.equal(cliSummary(second).commitId, c2);
    assert.ok((await listKeys(stack, bucket, "p/")).has("a.txt"));
    assert.equal((await ledgerAt(bucket, "p/")) === undefined, true, "no lane there yet");

    const { daemon, url } = await startDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: dest }],
    });
    closers.push(() => daemon.close());
    await waitForExported(url, repo, "main", c2);
    assert.equal((await listKeys(stack, bucket, "p/")).has("a.txt"), false, "a.txt stayed");
    await assertMirrorEqual(stack, repo, c2, bucket, "p/");
    const ledger = await ledgerAt(bucket, "p/");
    assert.equal(ledger?.base, c2);
    assert.equal(ledger?.rebuilt ?? null, null, "the reconcile proved the base");
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /^lakefs_mirror_objects_total\{op="deleted"\} 1$/m);
  });

  it("keys an unfinished reconcile copied into a foreign prefix are the lane's: once the commit drops them they are deleted, and the foreign keys kept", async () => {
    const repo = await createRepo(stack, "leftover");
    const bucket = await createBucket(stack);
    const c1 = await commitObjects(stack, repo, "main", [
      ...Array.from({ length: 10 }, (_, i) => ({ path: `a/${i}`, content: `a ${i}` })),
      ...Array.from({ length: 10 }, (_, i) => ({ path: `b/${i}`, content: `b ${i}` })),
    ]);
    const theirs = ["c/1", "c/2", "0-first"];
    for (const k of theirs) await put(bucket, k, `someone else's ${k}`);

    // The first reconcile copies a/… and then stops on the 503s of b/…: C1 stays an attempt.
    let faults = true;
    const proxy = await startFaultInjectingProxy(stack.env.AWS_ENDPOINT_URL, {
      flavor: "s3",
      rates: { slowdown: 1 },
      eligible: (method, url) => faults && method === "PUT" && url.startsWith(`/${bucket}/b/`),
    });
    closers.push(() => proxy.close());
    const { file } = writeDaemonConfig(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      reconcileIntervalSeconds: 1,
      extra: {
        s3: { maxAttempts: 1 },
        retry: { retries: 1, minTimeoutMs: 10, maxTimeoutMs: 20, maxRetryTimeMs: 500 },
        scheduler: { retryBaseSeconds: 1, retryMaxSeconds: 2 },
      },
    });
    const config = loadConfig({
      env: { ...daemonEnv(stack), AWS_ENDPOINT_URL: proxy.url, LOG_LEVEL: "silent" },
      file,
    });
    const daemon = new Daemon(config, silentLogger);
    closers.push(() => daemon.close());
    await daemon.start();
    await waitFor("a FAILURE status file for C1", async () =>
      statusKeys((await listKeys(stack, bucket)).keys()).find((k) => k.startsWith(`EXPORT_${c1}_`)),
    );
    const keys = await listKeys(stack, bucket);
    assert.ok(keys.has("a/0") && !keys.has("b/0"), "a/… copied, b/… not");
    const recorded = (await ledgerAt(bucket))!;
    assert.equal(recorded.base, null);
    assert.ok(recorded.attempts.includes(c1));

    // C2 drops a/…: the keys the first attempt wrote are now leftovers of the lane's own.
    const c2 = await commitObjects(
      stack,
      repo,
      "main",
      [{ path: "d.txt", content: "d" }],
      Array.from({ length: 10 }, (_, i) => `a/${i}`),
    );
    faults = false;
    await waitForExported(daemon.http.address, repo, "main", c2, 60_000);
    const after = await listKeys(stack, bucket);
    for (let i = 0; i < 10; i++) assert.equal(after.has(`a/${i}`), false, `a/${i} stayed`);
    for (const k of theirs)
      assert.equal((await readKey(stack, bucket, k)).toString(), `someone else's ${k}`, k);
    assert.deepEqual(
      await mirrorDifferences(stack, repo, c2, bucket),
      [...theirs].sort().map((path) => ({ kind: "extra", path })),
    );
    assert.equal((await ledgerAt(bucket))?.prefix, "foreign");
  });

  it("status files of one-off exports beside someone else's keys do not make those keys the mirror's: the daemon deletes what the exports left, nothing else", async () => {
    const repo = await createRepo(stack, "cli-first");
    const bucket = await createBucket(stack);
    const dest = `s3://${bucket}/p/`;
    // Keys of someone else, before and after the status files' names.
    const theirs = ["0-first", "zz/last", "\u00fc/x"];
    for (const k of theirs) await put(bucket, `p/${k}`, `someone else's ${k}`);
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "a.txt", content: "a" },
      { path: "b.txt", content: "b" },
    ]);
    const first = await runCli(stack, ["export", repo, dest, `--commit_id=${c1}`]);
    assert.equal(first.code, 0, first.stderr + first.stdout);
    const c2 = await commitObjects(stack, repo, "main", [], ["a.txt"]);
    const second = await runCli(stack, ["export", repo, dest, "--branch=main"]);
    assert.equal(second.code, 0, second.stderr + second.stdout);

    const { daemon, url } = await startDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: dest }],
    });
    closers.push(() => daemon.close());
    await waitForExported(url, repo, "main", c2);
    const keys = await listKeys(stack, bucket, "p/");
    assert.equal(keys.has("a.txt"), false, "a.txt, which C1's export wrote, stayed");
    for (const k of theirs)
      assert.equal((await readKey(stack, bucket, `p/${k}`)).toString(), `someone else's ${k}`, k);
    assert.deepEqual(
      await mirrorDifferences(stack, repo, c2, bucket, "p/"),
      [...theirs]
        .sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
        .map((path) => ({ kind: "extra", path })),
    );
    assert.equal((await ledgerAt(bucket, "p/"))?.prefix, "foreign");
  });

  it("--sync into a prefix that only one-off exports wrote keeps someone else's keys and deletes what the exports left", async () => {
    const repo = await createRepo(stack, "cli-sync");
    const bucket = await createBucket(stack);
    const dest = `s3://${bucket}/`;
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "a.txt", content: "a" },
      { path: "b.txt", content: "b" },
    ]);
    const first = await runCli(stack, ["export", repo, dest, `--commit_id=${c1}`]);
    assert.equal(first.code, 0, first.stderr + first.stdout);
    await put(bucket, "theirs.txt", "someone else's");
    await commitObjects(stack, repo, "main", [], ["a.txt"]);
    const sync = await runCli(stack, ["export", repo, dest, "--branch=main", "--sync"]);
    assert.equal(sync.code, 0, sync.stderr + sync.stdout);
    const keys = await listKeys(stack, bucket);
    assert.equal(keys.has("a.txt"), false, "a.txt stayed");
    assert.equal((await readKey(stack, bucket, "theirs.txt")).toString(), "someone else's");
    assert.equal(cliSummary(sync).kept, 1);
  });

  it("after a hand-over, the destination's ledger beats a stale local copy with a higher seq", async () => {
    const repo = await createRepo(stack, "handover");
    const bucket = await createBucket(stack);
    const mirrors: MirrorSpec[] = [
      { repository: repo, branches: ["main"], destination: `s3://${bucket}/` },
    ];
    const { file } = writeDaemonConfig(stack, { mirrors });
    const checkpointPath = file.replace(/config\.json$/, "checkpoint-a");
    // Daemon A exports three commits: its local copy's seq grows with each.
    const settings = { mirrors, reconcileIntervalSeconds: 1 };
    let a = await startDaemon(stack, { ...settings, checkpointPath });
    let c = "";
    for (let i = 0; i < 3; i++) {
      c = await commitObjects(stack, repo, "main", [{ path: `k${i}.txt`, content: `${i}` }]);
      await waitForExported(a.url, repo, "main", c);
    }
    const c3 = c;
    const seqA = (await ledgerAt(bucket))!.seq;
    await a.daemon.close();

    // The destination's ledger is lost; daemon B rebuilds one (its seq starts again) and
    // exports a commit that adds late.txt.
    await stack.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: LEDGER }));
    const b = await startDaemon(stack, settings);
    await waitForExported(b.url, repo, "main", c3);
    const c4 = await commitObjects(stack, repo, "main", [{ path: "late.txt", content: "late" }]);
    await waitForExported(b.url, repo, "main", c4);
    await b.daemon.close();
    const seqB = (await ledgerAt(bucket))!.seq;
    assert.ok(
      seqB < seqA,
      `B's ledger (seq ${seqB}) is newer but counts fewer writes than A's (${seqA})`,
    );

    // The branch goes back to C3; A comes back with its old local copy (base C3).
    await stack.lakefs.hardReset(repo, "main", c3);
    a = await startDaemon(stack, { ...settings, checkpointPath });
    closers.push(() => a.daemon.close());
    await waitFor("A to load the lane", async () =>
      (await laneStatus(a.url)).find((l) => l.lastExportedCommit !== null),
    );
    await waitForExported(a.url, repo, "main", c3);
    assert.equal((await listKeys(stack, bucket)).has("late.txt"), false, "late.txt stayed");
    await assertMirrorEqual(stack, repo, c3, bucket);
  });

  describe("lanes that overlap at run time", () => {
    it("a destination whose ledger is another lane's: refused, naming both lanes, nothing written", async () => {
      const repo = await createRepo(stack, "theirs");
      const bucket = await createBucket(stack);
      await commitObjects(stack, repo, "main", [{ path: "x.txt", content: "x" }]);
      const theirs = JSON.stringify({
        format: 1,
        repository: "other-repo",
        branch: "dev",
        base: null,
        attempts: [],
        failed: [],
        retry: null,
        lastSuccess: null,
        prefix: "owned",
        seq: 7,
        updatedAt: new Date().toISOString(),
      });
      await put(bucket, `p/${LEDGER}`, theirs);
      await put(bucket, "p/their-data.txt", "theirs");
      const { daemon, url } = await startDaemon(stack, {
        mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/p/` }],
      });
      closers.push(() => daemon.close());
      const lane = await waitFor("the lane to refuse", async () =>
        (await laneStatus(url)).find((l) => /overlaps/.test(l.lastError ?? "")),
      );
      assert.match(
        lane.lastError ?? "",
        new RegExp(
          `lane ${repo}/main at s3://${bucket}/p/ overlaps lane other-repo/dev at s3://${bucket}/p/`,
        ),
      );
      const keys = await listKeys(stack, bucket, "p/");
      assert.deepEqual([...keys.keys()].filter((k) => k !== "_lakefs_mirror/lease.json").sort(), [
        LEDGER,
        "their-data.txt",
      ]);
      assert.equal((await readKey(stack, bucket, `p/${LEDGER}`)).toString(), theirs);
      // The lease it took to look is handed back at once.
      const lease = JSON.parse(
        (await readKey(stack, bucket, "p/_lakefs_mirror/lease.json")).toString(),
      ) as {
        expiresAt: string;
      };
      assert.ok(Date.parse(lease.expiresAt) <= Date.now());
    });

    it("a lane inside another deployment's lane refuses, and an outer lane whose listing finds a lane's records below refuses, deleting nothing", async () => {
      const outerRepo = await createRepo(stack, "outer");
      const innerRepo = await createRepo(stack, "inner");
      const outerHead = await commitObjects(stack, outerRepo, "main", [
        { path: "top.txt", content: "top" },
      ]);
      const innerHead = await commitObjects(stack, innerRepo, "main", [
        { path: "i1.txt", content: "1" },
        { path: "deep/i2.txt", content: "2" },
      ]);
      const outerMirror = (bucket: string): MirrorSpec => ({
        repository: outerRepo,
        branches: ["main"],
        destination: `s3://${bucket}/`,
        // The strongest case: a dedicated outer lane would delete every key it does not know.
        dedicated: true,
      });
      const innerMirror = (bucket: string): MirrorSpec => ({
        repository: innerRepo,
        branches: ["main"],
        destination: `s3://${bucket}/inner/`,
      });

      // 1. The outer lane runs first; a second deployment's inner lane then refuses.
      const b1 = await createBucket(stack);
      const o1 = await startDaemon(stack, { mirrors: [outerMirror(b1)] });
      closers.push(() => o1.daemon.close());
      await waitForExported(o1.url, outerRepo, "main", outerHead);
      const i1 = await startDaemon(stack, { mirrors: [innerMirror(b1)] });
      closers.push(() => i1.daemon.close());
      const refused = await waitFor("the inner lane to refuse", async () =>
        (await laneStatus(i1.url)).find((l) => /overlaps/.test(l.lastError ?? "")),
      );
      assert.match(
        refused.lastError ?? "",
        new RegExp(
          `lane ${innerRepo}/main at s3://${b1}/inner/ overlaps lane ${outerRepo}/main at s3://${b1}/: the enclosing prefix holds that lane's ledger\\.json`,
        ),
      );
      const innerKeys = [...(await listKeys(stack, b1, "inner/")).keys()];
      assert.deepEqual(innerKeys, ["_lakefs_mirror/lease.json"], "only the lease it took to look");

      // 2. The inner lane runs first; a second deployment's dedicated outer lane then refuses
      // before writing anything, and the inner mirror stays whole.
      const b2 = await createBucket(stack);
      const i2 = await startDaemon(stack, { mirrors: [innerMirror(b2)] });
      closers.push(() => i2.daemon.close());
      await waitForExported(i2.url, innerRepo, "main", innerHead);
      const before = await listKeys(stack, b2, "inner/");
      const o2 = await startDaemon(stack, { mirrors: [outerMirror(b2)] });
      closers.push(() => o2.daemon.close());
      const outerRefused = await waitFor("the outer lane to refuse", async () =>
        (await laneStatus(o2.url)).find((l) => /overlaps/.test(l.lastError ?? "")),
      );
      assert.match(
        outerRefused.lastError ?? "",
        new RegExp(
          `lane ${outerRepo}/main at s3://${b2}/ overlaps lane ${innerRepo}/main at s3://${b2}/inner/: that lane's records \\(inner/_lakefs_mirror/(ledger|lease)\\.json\\) lie below`,
        ),
      );
      const all = await listKeys(stack, b2);
      assert.deepEqual(
        [...all.keys()].filter((k) => !k.startsWith("inner/")).sort(),
        ["_lakefs_mirror/lease.json"],
        "the outer lane wrote nothing but the lease it took to look: no ledger, status file or copy",
      );
      assert.deepEqual([...(await listKeys(stack, b2, "inner/"))].sort(), [...before].sort());
      // The inner lane goes on: a lease the outer lane handed back is no lane's records.
      await o2.daemon.close();
      const innerNext = await commitObjects(stack, innerRepo, "main", [
        { path: "i3.txt", content: "3" },
      ]);
      await i2.daemon.close();
      const i3 = await startDaemon(stack, { mirrors: [innerMirror(b2)] });
      closers.push(() => i3.daemon.close());
      await waitForExported(i3.url, innerRepo, "main", innerNext);
      await assertMirrorEqual(stack, innerRepo, innerNext, b2, "inner/");
    });
  });
});

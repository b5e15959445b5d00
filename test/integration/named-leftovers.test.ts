import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { parseLedger } from "../../src/ledger/ledger.ts";
import type { Ledger } from "../../src/ledger/ledger.ts";
import { cliSummary, runCli } from "../helpers/cli.ts";
import { laneStatus, startDaemon, waitFor, waitForExported } from "../helpers/daemon.ts";
import {
  commitObjects,
  listKeys,
  mirrorDifferences,
  readKey,
  statusKeys,
} from "../helpers/mirror.ts";
import { startScriptedProxy } from "../helpers/scripted-proxy.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

/**
 * What a reconcile deletes on a prefix that is not lakefs-mirror's: only keys its records name,
 * at a size they give; and a commit whose data lakeFS no longer has names nothing.
 */
const LEDGER = "_lakefs_mirror/ledger.json";

const cliEntry = fileURLToPath(new URL("../../src/cli/bin.ts", import.meta.url));

describe("what a reconcile deletes on a prefix that is not its own", () => {
  let stack: Stack;
  const closers: (() => Promise<unknown>)[] = [];
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
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

  /** Every status-file PUT of `bucket` is held for ten minutes: the export writes all but it. */
  async function statusFileStaller(bucket: string) {
    const proxy = await startScriptedProxy(stack.env.AWS_ENDPOINT_URL, (method, path) =>
      method === "PUT" && path.startsWith(`/${bucket}/`) && path.includes("/EXPORT_")
        ? { delayMs: 600_000 }
        : undefined,
    );
    closers.push(() => proxy.close());
    return proxy;
  }

  it("under a SUCCESS the mirror equals its commit: keys a one-off export wrote before it was killed (no status file) are gone once the commit drops them, on a prefix with someone else's keys", async () => {
    const repo = await createRepo(stack, "clikill");
    const bucket = await createBucket(stack);
    const dest = `s3://${bucket}/`;
    await put(bucket, "theirs.txt", "someone else's");
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "a.txt", content: "a" },
      { path: "b.txt", content: "b" },
    ]);
    const one = await runCli(stack, ["export", repo, dest, `--commit_id=${c1}`]);
    assert.equal(one.code, 0, one.stderr + one.stdout);
    // A run that wrote its status file leaves no record of its commit behind.
    const marks = [...(await listKeys(stack, bucket)).keys()].filter((k) =>
      k.startsWith("_lakefs_mirror/"),
    );
    assert.deepEqual(marks, []);

    // C2 adds q/…; its one-off export records its commit, writes them and is killed before its
    // status file.
    const c2 = await commitObjects(
      stack,
      repo,
      "main",
      Array.from({ length: 4 }, (_, i) => ({ path: `q/${i}`, content: `q ${i}` })),
    );
    const proxy = await statusFileStaller(bucket);
    const cli = spawn(
      process.execPath,
      ["--import", "tsx", cliEntry, "export", repo, dest, `--commit_id=${c2}`],
      {
        env: { ...process.env, ...stack.env, AWS_ENDPOINT_URL: proxy.url, LOG_LEVEL: "silent" },
        stdio: "ignore",
      },
    );
    const exited = new Promise((r) => cli.on("exit", r));
    closers.push(async () => {
      cli.kill("SIGKILL");
      await exited;
    });
    await waitFor("q/… copied", async () => (await listKeys(stack, bucket)).has("q/3"));
    cli.kill("SIGKILL");
    await exited;
    assert.equal(
      statusKeys((await listKeys(stack, bucket)).keys()).some((k) => k.includes(c2)),
      false,
    );

    assert.ok((await listKeys(stack, bucket)).has(`_lakefs_mirror/attempts/${c2}.json`));

    // C3 drops q/…; the daemon takes the prefix on from the status files and that record.
    const c3 = await commitObjects(
      stack,
      repo,
      "main",
      [],
      Array.from({ length: 4 }, (_, i) => `q/${i}`),
    );
    const { daemon, url } = await startDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: dest }],
      reconcileIntervalSeconds: 1,
    });
    closers.push(() => daemon.close());
    await waitForExported(url, repo, "main", c3);
    assert.ok(
      statusKeys((await listKeys(stack, bucket)).keys()).some(
        (k) => k.includes(c3) && k.endsWith("_SUCCESS"),
      ),
    );
    assert.equal((await readKey(stack, bucket, "theirs.txt")).toString(), "someone else's");
    assert.deepEqual(
      await mirrorDifferences(stack, repo, c3, bucket),
      [{ kind: "extra", path: "theirs.txt" }],
      "only someone else's key may differ under C3's SUCCESS",
    );
  });

  it("after the repository is deleted and created again under its name, the lane exports the new HEAD (lakeFS's 410 for the old base is a commit that is gone), keeping what no record can name", async () => {
    const repo = await createRepo(stack, "recreated");
    const bucket = await createBucket(stack);
    const dest = `s3://${bucket}/`;
    await put(bucket, "theirs.txt", "someone else's");
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "old/a", content: "a" },
      { path: "old/b", content: "b" },
    ]);
    const mirrors = [{ repository: repo, branches: ["main"], destination: dest }];
    const first = await startDaemon(stack, { mirrors, reconcileIntervalSeconds: 1 });
    await waitForExported(first.url, repo, "main", c1);
    assert.equal((await ledgerAt(bucket))?.prefix, "foreign");
    await first.daemon.close();

    // The repository is deleted and created again under the same name (a re-import, say).
    await stack.lakefs.deleteRepository(repo);
    // lakeFS removes a deleted repository in the background: create it again once it may.
    await waitFor("the repository created again", async () => {
      await stack.lakefs.createRepository(
        repo,
        `s3://${stack.env.STACK_LAKEFS_BUCKET}/${repo}-again`,
      );
      return true;
    });
    const c2 = await commitObjects(stack, repo, "main", [{ path: "new/x", content: "x" }]);
    const { daemon, url } = await startDaemon(stack, {
      mirrors,
      checkpointPath: first.checkpointPath,
      reconcileIntervalSeconds: 1,
    });
    closers.push(() => daemon.close());
    // lakeFS answers the diff from the old base with 410 "No data": the commit is gone, and the
    // lane reconciles instead of retrying that diff for ever.
    await waitForExported(url, repo, "main", c2).catch(async (err: unknown) => {
      const lane = (await laneStatus(url)).find((l) => l.repository === repo);
      throw new Error(`${(err as Error).message}; lane ${lane?.state}: ${lane?.lastError}`);
    });
    assert.equal((await readKey(stack, bucket, "theirs.txt")).toString(), "someone else's");
    // The old repository's commits are gone: nothing names old/a and old/b any more, and on a
    // prefix with someone else's keys what nothing names is kept (and counted).
    assert.deepEqual(await mirrorDifferences(stack, repo, c2, bucket), [
      { kind: "extra", path: "old/a" },
      { kind: "extra", path: "old/b" },
      { kind: "extra", path: "theirs.txt" },
    ]);
  });

  it("keys the mirror does not own are never touched: a key someone else writes at a path the mirror once held and has since deleted survives --sync", async () => {
    const repo = await createRepo(stack, "reused");
    const bucket = await createBucket(stack);
    const dest = `s3://${bucket}/`;
    await put(bucket, "theirs.txt", "someone else's");
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "reports/2026.csv", content: "lakeFS's report" },
      { path: "b.txt", content: "b" },
    ]);
    const one = await runCli(stack, ["export", repo, dest, `--commit_id=${c1}`]);
    assert.equal(one.code, 0, one.stderr + one.stdout);
    // lakeFS drops the report; the diff export deletes the mirror's copy.
    await commitObjects(stack, repo, "main", [], ["reports/2026.csv"]);
    const two = await runCli(stack, [
      "export",
      repo,
      dest,
      "--branch=main",
      `--prev_commit_id=${c1}`,
    ]);
    assert.equal(two.code, 0, two.stderr + two.stdout);
    assert.equal((await listKeys(stack, bucket)).has("reports/2026.csv"), false);

    // The report is now someone else's: they write their own at that path.
    await put(bucket, "reports/2026.csv", "someone else's report");
    const sync = await runCli(stack, ["export", repo, dest, "--branch=main", "--sync"]);
    assert.equal(sync.code, 0, sync.stderr + sync.stdout);
    const keys = await listKeys(stack, bucket);
    assert.ok(keys.has("theirs.txt"));
    assert.equal(
      (await readKey(stack, bucket, "reports/2026.csv")).toString(),
      "someone else's report",
      "--sync deleted a key the mirror did not write",
    );
    assert.equal(cliSummary(sync).kept, 2);
  });
});

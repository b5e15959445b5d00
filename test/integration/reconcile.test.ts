import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { S3Destination } from "../../src/s3/destination.ts";
import { verifyMirror } from "../../src/verify/verify.ts";
import { lakefsGateway } from "../../src/s3/gateway.ts";
import { laneStatus, startDaemon, waitFor, waitForExported } from "../helpers/daemon.ts";
import {
  assertMirrorEqual,
  commitObjects,
  commitPaths,
  headKey,
  listKeys,
  makeExporter,
  readKey,
  statusKeys,
} from "../helpers/mirror.ts";
import type { SeedObject } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const entry = fileURLToPath(new URL("../../src/cli/bin.ts", import.meta.url));

const LEDGER = "_lakefs_mirror/ledger.json";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The commit every CLI test exports: a mix of sizes, types, metadata and depths. */
const seed: SeedObject[] = [
  { path: "keep/a.txt", content: "alpha", contentType: "text/plain", metadata: { owner: "a" } },
  { path: "keep/b.bin", content: randomBytes(64) },
  { path: "same-size.txt", content: "AAAA" },
  { path: "resized.txt", content: "short" },
  { path: "meta-only.csv", content: "a,b\n1,2\n", contentType: "text/csv", metadata: { v: "1" } },
  { path: "gone/one.txt", content: "1" },
  { path: "gone/deep/two.txt", content: "22" },
  { path: "tables/t/_SUCCESS", content: "" },
];

/** Keys put at a destination that the commit lacks, nested paths included. */
const extras = ["stray.txt", "nested/a/b/stray.bin", "gone/stray.txt"];
/** Mirrored keys removed behind lakefs-mirror's back. */
const removed = ["gone/one.txt", "gone/deep/two.txt"];
/** Mirrored keys whose bytes are replaced: same size, and a different size. */
const rewritten = ["same-size.txt", "resized.txt"];
/** A mirrored key whose bytes stay while its Content-Type and metadata change. */
const metaChanged = "meta-only.csv";

describe("reconciling full export (lakefs-mirror export --sync)", { concurrency: 3 }, () => {
  let stack: Stack;
  let repo: string;
  let head: string;
  const closers: (() => Promise<unknown>)[] = [];

  before(async () => {
    stack = await connectStack();
    repo = await createRepo(stack, "sync");
    head = await commitObjects(stack, repo, "main", seed);
  });
  after(async () => {
    for (const c of closers.reverse()) await c();
    await stack.close();
  });

  function cli(args: string[]): Promise<Run> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        ["--import", "tsx", entry, ...args],
        { env: { ...process.env, ...stack.env, LOG_LEVEL: "info" } },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
  }

  function summary(run: Run): Record<string, unknown> {
    const lines = run.stdout.trim().split("\n").filter(Boolean);
    return JSON.parse(lines.at(-1) ?? "{}") as Record<string, unknown>;
  }

  /** Every key under a prefix with its ETag and size, straight from S3. */
  async function listing(bucket: string, prefix: string): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    let token: string | undefined;
    do {
      const res = await stack.s3.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const o of res.Contents ?? [])
        out.set((o.Key ?? "").slice(prefix.length), `${o.ETag ?? ""} ${o.Size ?? -1}`);
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  async function put(bucket: string, key: string, body: string | Buffer) {
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  }

  async function remove(bucket: string, key: string) {
    await stack.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  }

  /** A plain (non-reconciling) CLI export of the branch: the prefix then has a status file. */
  async function plainExport(bucket: string, prefix: string) {
    const run = await cli(["export", repo, `s3://${bucket}/${prefix}`, "--branch=main"]);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    assert.equal(statusKeys((await listKeys(stack, bucket, prefix)).keys()).length, 1);
  }

  /** Extra, missing, rewritten and metadata-changed keys, all made directly in S3. */
  async function drift(bucket: string, prefix: string) {
    for (const k of extras) await put(bucket, prefix + k, `not in the commit: ${k}`);
    for (const k of removed) await remove(bucket, prefix + k);
    await put(bucket, `${prefix}same-size.txt`, "BBBB");
    await put(bucket, `${prefix}resized.txt`, "a good deal longer than before");
    const key = prefix + metaChanged;
    const before = await headKey(stack, bucket, key);
    await stack.s3.send(
      new CopyObjectCommand({
        Bucket: bucket,
        Key: key,
        CopySource: `${bucket}/${key}`,
        MetadataDirective: "REPLACE",
        ContentType: "application/json",
        Metadata: { v: "2", added: "yes" },
      }),
    );
    const changed = await headKey(stack, bucket, key);
    // Only the metadata differs: same bytes, same ETag.
    assert.equal(changed.ETag, before.ETag);
    assert.equal(changed.ContentType, "application/json");
    assert.deepEqual(changed.Metadata, { v: "2", added: "yes" });
  }

  /** Keys lakefs-mirror keeps for itself at a prefix's root, besides a status file. */
  async function addOwnRecords(bucket: string, prefix: string) {
    await put(bucket, `${prefix}_lakefs_mirror/notes.txt`, "lakefs-mirror's own");
    await put(bucket, `${prefix}_lakefs_mirror/deep/state.json`, "{}");
  }

  function ownRecords(keys: Map<string, string>): [string, string][] {
    return [...keys.entries()]
      .filter(([k]) => k.startsWith("_lakefs_mirror/") || statusKeys([k]).length === 1)
      .sort();
  }

  /** The mirrored keys (status files and `_lakefs_mirror/` left out) with their sizes. */
  async function mirroredKeys(bucket: string, prefix: string) {
    const keys = await listKeys(stack, bucket, prefix);
    for (const k of [...keys.keys()])
      if (k.startsWith("_lakefs_mirror/") || statusKeys([k]).length === 1) keys.delete(k);
    return [...keys.entries()].sort();
  }

  it("on a prefix declared dedicated, copies only what differs, deletes the extras, and leaves its own records alone", async () => {
    const bucket = await createBucket(stack);
    const prefix = "mirror/";
    await plainExport(bucket, prefix);
    await addOwnRecords(bucket, prefix);
    await drift(bucket, prefix);
    const own = ownRecords(await listing(bucket, prefix));
    assert.equal(own.length, 3);

    // Keys nobody's records name (the extras) go only where the prefix is declared the mirror's.
    const run = await cli([
      "export",
      repo,
      `s3://${bucket}/${prefix}`,
      "--branch=main",
      "--sync",
      "--dedicated",
    ]);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const s = summary(run);
    assert.equal(s.status, "SUCCESS");
    assert.equal(s.commitId, head);
    const changed = removed.length + rewritten.length + 1;
    assert.equal(s.copied, changed, "the missing, rewritten and metadata-changed keys");
    assert.equal(s.deleted, extras.length);
    assert.equal(s.unchanged, seed.length - changed);
    assert.equal(s.failed, 0);
    assert.equal(s.kept, 0);

    await assertMirrorEqual(stack, repo, head, bucket, prefix);
    assert.deepEqual(
      await mirroredKeys(bucket, prefix),
      [...(await commitPaths(stack, repo, head)).entries()].sort(),
    );
    const after = await listing(bucket, prefix);
    for (const k of extras) assert.equal(after.has(k), false, `${k} is deleted`);
    // The earlier status file and the reserved keys are as they were; one SUCCESS was added.
    for (const [k, v] of own) assert.equal(after.get(k), v, `${k} is untouched`);
    const added = ownRecords(after)
      .map(([k]) => k)
      .filter((k) => !own.some(([o]) => o === k));
    assert.equal(added.length, 1, added.join("\n"));
    assert.match(added[0] ?? "", new RegExp(`^EXPORT_${head}_.*_SUCCESS$`));
    const meta = await headKey(stack, bucket, prefix + metaChanged);
    assert.equal(meta.ContentType, "text/csv");
    assert.deepEqual(meta.Metadata, { v: "1" });
  });

  it("--dry-run --sync lists every delete and writes nothing", async () => {
    const bucket = await createBucket(stack);
    const prefix = "dry/";
    await plainExport(bucket, prefix);
    await drift(bucket, prefix);
    const before = await listing(bucket, prefix);

    const run = await cli([
      "export",
      repo,
      `s3://${bucket}/${prefix}`,
      "--branch=main",
      "--sync",
      "--dedicated",
      "--dry-run",
    ]);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const plan = JSON.parse(run.stdout) as {
      commitId: string;
      sync: boolean;
      actions: Record<string, number>;
      sample: Record<string, string[]>;
      refusals?: string[];
    };
    assert.equal(plan.commitId, head);
    assert.equal(plan.sync, true);
    assert.deepEqual([...(plan.sample.delete ?? [])].sort(), [...extras].sort());
    assert.equal(plan.actions.delete, extras.length);
    assert.equal(plan.refusals, undefined);
    assert.deepEqual([...(await listing(bucket, prefix)).entries()].sort(), [...before].sort());
  });

  it("on a foreign prefix keeps the keys the commit lacks, unless the prefix is declared dedicated", async () => {
    const bucket = await createBucket(stack);
    const theirs = ["readme.txt", "theirs/report.csv", "theirs/deep/x.bin"];
    for (const p of ["foreign/", "dedicated/"]) {
      for (const k of theirs) await put(bucket, p + k, `someone else's ${k}`);
      // A key at a path the commit has, with other bytes: it is overwritten either way.
      await put(bucket, `${p}keep/a.txt`, "someone else's alpha");
      assert.deepEqual(statusKeys((await listKeys(stack, bucket, p)).keys()), []);
    }

    const run = await cli(["export", repo, `s3://${bucket}/foreign/`, "--branch=main", "--sync"]);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const s = summary(run);
    assert.equal(s.status, "SUCCESS");
    assert.equal(s.kept, theirs.length);
    assert.equal(s.deleted, 0);
    assert.equal(s.copied, seed.length);
    for (const k of theirs)
      assert.equal(
        (await readKey(stack, bucket, `foreign/${k}`)).toString(),
        `someone else's ${k}`,
      );
    const verified = await verifyMirror({
      lakefs: stack.lakefs,
      repository: repo,
      ref: head,
      destination: new S3Destination(stack.s3, { bucket, prefix: "foreign/" }),
      gateway: lakefsGateway(stack.gateway),
    });
    assert.deepEqual(
      verified.differences,
      [...theirs].sort().map((path) => ({ kind: "extra", path })),
    );

    const dedicated = await cli([
      "export",
      repo,
      `s3://${bucket}/dedicated/`,
      "--branch=main",
      "--sync",
      "--dedicated",
      // Three of its four keys are extras: more than the default guard (50%) allows.
      "--max-deletes=3",
    ]);
    assert.equal(dedicated.code, 0, dedicated.stderr + dedicated.stdout);
    const d = summary(dedicated);
    assert.equal(d.deleted, theirs.length);
    assert.equal(d.kept, 0);
    await assertMirrorEqual(stack, repo, head, bucket, "dedicated/");
    const left = await listKeys(stack, bucket, "dedicated/");
    for (const k of theirs) assert.equal(left.has(k), false, `${k} is deleted`);
    // The foreign prefix next to it is untouched by the dedicated one.
    for (const k of theirs) assert.ok((await listKeys(stack, bucket, "foreign/")).has(k));
  });

  it("refuses more deletes than --max-deletes allows: FAILURE that says why, nothing deleted", async () => {
    const bucket = await createBucket(stack);
    const prefix = "guard/";
    await plainExport(bucket, prefix);
    const many = ["x/1", "x/2", "x/3", "y/deep/4", "5"];
    for (const k of many) await put(bucket, prefix + k, k);

    for (const limit of ["2", "10%"]) {
      const run = await cli([
        "export",
        repo,
        `s3://${bucket}/${prefix}`,
        "--branch=main",
        "--sync",
        "--dedicated",
        `--max-deletes=${limit}`,
      ]);
      assert.equal(run.code, 1, `--max-deletes=${limit}: ${run.stderr}${run.stdout}`);
      assert.equal(summary(run).status, "FAILURE");
      assert.equal(summary(run).deleted, 0);
      const keys = await listKeys(stack, bucket, prefix);
      for (const k of many) assert.ok(keys.has(k), `${k} was deleted with --max-deletes=${limit}`);
      const failures = statusKeys(keys.keys()).filter((k) => k.endsWith("_FAILURE"));
      assert.equal(failures.length, limit === "2" ? 1 : 2);
      const newest = failures.sort().at(-1) ?? "";
      assert.match(newest, new RegExp(`^EXPORT_${head}_`));
      const text = (await readKey(stack, bucket, prefix + newest)).toString("utf8");
      assert.match(text, /refused to delete 5 of \d+ keys/);
      assert.match(text, /max-deletes/);
      assert.ok(text.includes(`(${limit})`), text);
    }

    // Exactly as many as allowed goes through.
    const run = await cli([
      "export",
      repo,
      `s3://${bucket}/${prefix}`,
      "--branch=main",
      "--sync",
      "--dedicated",
      `--max-deletes=${many.length}`,
    ]);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    assert.equal(summary(run).deleted, many.length);
    await assertMirrorEqual(stack, repo, head, bucket, prefix);
  });

  describe("in the daemon, with no trustworthy base", () => {
    it("a new lane on a dedicated, non-empty destination reconciles it: stale keys deleted, missing ones copied", async () => {
      const repo5 = await createRepo(stack, "dedicated");
      const bucket = await createBucket(stack);
      const c = await commitObjects(stack, repo5, "main", [
        { path: "p/1.txt", content: "one" },
        { path: "p/2.txt", content: "two", contentType: "text/plain" },
        { path: "p/3.csv", content: "3,3", contentType: "text/csv", metadata: { k: "v" } },
        { path: "q/deep/4.bin", content: randomBytes(100) },
        { path: "q/5.txt", content: "five" },
        { path: "6.txt", content: "six" },
      ]);
      // The destination holds an old copy of the data, but nothing that marks it as ours.
      assert.equal(
        (await makeExporter(stack, repo5, bucket, "").exportAllFromCommit(c)).status,
        "SUCCESS",
      );
      const status = statusKeys((await listKeys(stack, bucket)).keys());
      await stack.s3.send(
        new DeleteObjectsCommand({
          Bucket: bucket,
          Delete: { Objects: status.map((Key) => ({ Key })) },
        }),
      );
      await remove(bucket, "q/5.txt");
      const stale = ["stale/old.parquet", "p/stale.txt"];
      for (const k of stale) await put(bucket, k, "stale");
      assert.deepEqual(statusKeys((await listKeys(stack, bucket)).keys()), []);
      assert.equal((await listKeys(stack, bucket)).has(LEDGER), false);

      const { daemon, url } = await startDaemon(stack, {
        mirrors: [
          {
            repository: repo5,
            branches: ["main"],
            destination: `s3://${bucket}/`,
            dedicated: true,
          },
        ],
      });
      closers.push(() => daemon.close());
      await waitForExported(url, repo5, "main", c);
      await assertMirrorEqual(stack, repo5, c, bucket);
      assert.deepEqual(
        await mirroredKeys(bucket, ""),
        [...(await commitPaths(stack, repo5, c)).entries()].sort(),
      );
      const metrics = await (await fetch(`${url}/metrics`)).text();
      assert.match(metrics, /^lakefs_mirror_objects_total\{op="copied"\} 1$/m);
      assert.match(metrics, /^lakefs_mirror_objects_total\{op="deleted"\} 2$/m);
    });

    it("a max-deletes refusal holds when the daemon tries again: the stale keys stay", async () => {
      const repo8 = await createRepo(stack, "guarded");
      const bucket = await createBucket(stack);
      const c = await commitObjects(
        stack,
        repo8,
        "main",
        [1, 2, 3, 4].map((i) => ({ path: `new/${i}.txt`, content: `new ${i}` })),
      );
      // Every key at the destination is one the commit lacks: 4 of 4, over the default 50%.
      const stale = [1, 2, 3, 4].map((i) => `old/${i}.txt`);
      for (const k of stale) await put(bucket, k, "stale");
      const { daemon, url } = await startDaemon(stack, {
        mirrors: [
          {
            repository: repo8,
            branches: ["main"],
            destination: `s3://${bucket}/`,
            dedicated: true,
          },
        ],
      });
      closers.push(() => daemon.close());
      // Two attempts at the commit have ended (retries come after 1 s, then 2 s).
      const statuses = await waitFor("two export attempts", async () => {
        const found = statusKeys((await listKeys(stack, bucket)).keys()).sort();
        return found.length >= 2 ? found : undefined;
      });
      const left = await listKeys(stack, bucket);
      for (const k of stale) assert.ok(left.has(k), `${k} was deleted after a refusal`);
      assert.deepEqual(
        statuses.map((k) => k.replace(/^EXPORT_[0-9a-f]+_.*_(SUCCESS|FAILURE)$/, "$1")),
        ["FAILURE", "FAILURE"],
      );
      for (const k of statuses) {
        assert.ok(k.startsWith(`EXPORT_${c}_`), k);
        assert.match((await readKey(stack, bucket, k)).toString("utf8"), /max-deletes/);
      }
      const lane = (await laneStatus(url)).find((l) => l.repository === repo8);
      assert.notEqual(lane?.lastSuccessCommit, c);
      assert.match(lane?.lastError ?? "", /max-deletes/);
    });

    it("a new lane on a foreign prefix, not declared dedicated, keeps the keys it did not write", async () => {
      const repo7 = await createRepo(stack, "foreign");
      const bucket = await createBucket(stack);
      const c = await commitObjects(stack, repo7, "main", [
        { path: "a.txt", content: "a" },
        { path: "b.txt", content: "b" },
        { path: "c.txt", content: "c" },
      ]);
      const theirs = ["theirs/notes.txt", "theirs/report.csv"];
      for (const k of theirs) await put(bucket, k, "someone else's");
      const { daemon, url } = await startDaemon(stack, {
        mirrors: [{ repository: repo7, branches: ["main"], destination: `s3://${bucket}/` }],
      });
      closers.push(() => daemon.close());
      await waitForExported(url, repo7, "main", c);
      const left = await listKeys(stack, bucket);
      for (const k of theirs) assert.ok(left.has(k), `${k}, not lakefs-mirror's, was deleted`);
      for (const k of theirs)
        assert.equal((await readKey(stack, bucket, k)).toString(), "someone else's", k);
      const verified = await verifyMirror({
        lakefs: stack.lakefs,
        repository: repo7,
        ref: c,
        destination: new S3Destination(stack.s3, { bucket, prefix: "" }),
        gateway: lakefsGateway(stack.gateway),
      });
      assert.deepEqual(
        verified.differences,
        theirs.map((path) => ({ kind: "extra", path })),
      );
    });

    it("a new checkpoint and a destination without ledger or status files: reconciles, keeping keys it cannot tell are its own", async () => {
      const repo6 = await createRepo(stack, "lost");
      const bucket = await createBucket(stack);
      const mirrors = [{ repository: repo6, branches: ["main"], destination: `s3://${bucket}/` }];
      const c1 = await commitObjects(stack, repo6, "main", [
        { path: "d/1.txt", content: "one" },
        { path: "d/2.txt", content: "two" },
        { path: "d/3.txt", content: "three" },
        { path: "e/4.txt", content: "four", metadata: { n: "4" } },
      ]);
      const first = await startDaemon(stack, { mirrors });
      try {
        await waitForExported(first.url, repo6, "main", c1);
      } finally {
        await first.daemon.close();
      }
      const c2 = await commitObjects(stack, repo6, "main", [{ path: "d/new.txt", content: "new" }]);

      // Lose every record of the mirror's state, and let the mirror drift.
      const records = [...(await listKeys(stack, bucket)).keys()].filter(
        (k) => k === LEDGER || statusKeys([k]).length === 1,
      );
      assert.ok(records.includes(LEDGER));
      assert.ok(records.length >= 2);
      for (const k of records) await remove(bucket, k);
      await remove(bucket, "d/2.txt");
      await put(bucket, "d/3.txt", "THREE, rewritten");
      const strays = ["d/stray.txt", "z/deep/stray.bin"];
      for (const k of strays) await put(bucket, k, "stray");

      const second = await startDaemon(stack, { mirrors });
      closers.push(() => second.daemon.close());
      await waitForExported(second.url, repo6, "main", c2);
      const left = await listKeys(stack, bucket);
      for (const k of strays) assert.ok(left.has(k), `${k} was deleted`);
      // Without a ledger or status file at the start, and not declared dedicated, the prefix
      // is not provably lakefs-mirror's: keys the commit lacks are kept, everything else is
      // brought to the commit.
      const verified = await verifyMirror({
        lakefs: stack.lakefs,
        repository: repo6,
        ref: c2,
        destination: new S3Destination(stack.s3, { bucket, prefix: "" }),
        gateway: lakefsGateway(stack.gateway),
      });
      assert.deepEqual(
        verified.differences,
        [...strays].sort().map((path) => ({ kind: "extra", path })),
      );
      for (const k of strays) assert.equal((await readKey(stack, bucket, k)).toString(), "stray");
      const metrics = await (await fetch(`${second.url}/metrics`)).text();
      assert.match(metrics, /^lakefs_mirror_objects_total\{op="copied"\} 3$/m);
      assert.doesNotMatch(metrics, /^lakefs_mirror_objects_total\{op="deleted"\} [1-9]/m);
    });
  });
});

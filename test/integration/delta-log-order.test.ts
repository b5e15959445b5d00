import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { Exporter } from "../../src/export/exporter.ts";
import { createS3Client } from "../../src/s3/client.ts";
import { S3Destination } from "../../src/s3/destination.ts";
import { silentLogger } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const run = promisify(execFile);
const script = new URL("../helpers/delta-rs.py", import.meta.url).pathname;

/**
 * Delta Lake tables through lakeFS and the mirror, with delta-rs (the `deltalake` package) as
 * both the writer (through lakeFS's S3 gateway) and the reader (of the mirror in MinIO).
 */
describe("Delta Lake tables at the destination", () => {
  let stack: Stack;
  let python: string;
  before(async () => {
    stack = await connectStack();
    python = stack.env.DELTA_PYTHON ?? "";
    assert.ok(
      python && existsSync(python),
      `test/stack/up names no Python with deltalake (DELTA_PYTHON=${python}); run test/stack/install python`,
    );
  });
  after(async () => {
    await stack.close();
  });

  /** delta-rs's object_store settings for an S3-compatible endpoint. */
  function storage(endpoint: string, key: string, secret: string): string {
    return JSON.stringify({
      AWS_ENDPOINT_URL: endpoint,
      AWS_ACCESS_KEY_ID: key,
      AWS_SECRET_ACCESS_KEY: secret,
      AWS_REGION: "us-east-1",
      AWS_ALLOW_HTTP: "true",
      // A Delta commit must not overwrite another's: delta-rs creates each log entry with a
      // conditional PUT (If-None-Match), which the lakeFS gateway accepts, instead of needing
      // a locking service or the unsafe-rename setting.
      AWS_CONDITIONAL_PUT: "etag",
    });
  }

  it("a burst of Delta commits exported in one go never shows a reader a gap in the log (item 11)", async () => {
    const repo = await createRepo(stack, "delta-burst");
    const bucket = await createBucket(stack, "delta-mirror");
    const env = stack.env;
    const lakefsOpts = storage(
      env.LAKEFS_ENDPOINT,
      env.LAKEFS_ACCESS_KEY_ID,
      env.LAKEFS_SECRET_ACCESS_KEY,
    );
    const mirrorOpts = storage(
      env.AWS_ENDPOINT_URL,
      env.AWS_ACCESS_KEY_ID,
      env.AWS_SECRET_ACCESS_KEY,
    );
    const table = `s3://${repo}/main/sales`;
    const delta = (...args: string[]) => run(python, [script, ...args], { timeout: 120_000 });
    const commit = async (message: string) =>
      (await stack.lakefs.commit(repo, "main", { message })).id;

    // Versions 0-2, then a compaction (version 3) that replaces their files.
    let id = 0;
    for (let v = 0; v <= 2; v++) {
      await delta("append", table, lakefsOpts, String(id), "4");
      id += 4;
    }
    await delta("compact", table, lakefsOpts);
    const first = await commit("delta versions 0-3");
    // The burst: many Delta versions with a checkpoint in the middle, each committed in
    // lakeFS, then a VACUUM that deletes the files the compaction replaced; exported at once.
    // (A VACUUM that deleted files of versions inside the burst would leave those versions
    // unreadable at the mirror whatever the order: the export skips files added and removed
    // between its two commits.)
    for (let v = 4; v <= 11; v++) {
      await delta("append", table, lakefsOpts, String(id), "3");
      id += 3;
      if (v === 8) await delta("checkpoint", table, lakefsOpts);
      await commit(`delta version ${v}`);
    }
    await delta("vacuum", table, lakefsOpts);
    const last = await commit("vacuum");

    // The S3 client the export writes through records when each write starts and settles.
    const s3 = createS3Client({
      endpoint: env.AWS_ENDPOINT_URL,
      region: env.AWS_REGION,
      credentials: {
        accessKeyId: env.AWS_ACCESS_KEY_ID,
        secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      },
    });
    const events: { at: "start" | "end"; key: string }[] = [];
    s3.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { Key?: string; Delete?: { Objects?: { Key?: string }[] } };
        const keys =
          context.commandName === "DeleteObjectsCommand"
            ? (input.Delete?.Objects ?? []).map((o) => `-${o.Key}`)
            : context.commandName === "HeadObjectCommand" || !input.Key
              ? []
              : /^EXPORT_/.test(input.Key)
                ? [] // the status file, written after everything
                : [input.Key];
        for (const key of keys) events.push({ at: "start", key });
        try {
          return await next(args);
        } finally {
          for (const key of keys) events.push({ at: "end", key });
        }
      },
      { step: "initialize", name: "recordWriteOrder" },
    );
    const dir = mkdtempSync(join(tmpdir(), "delta-watch-"));
    const mirrorTable = `s3://${bucket}/sales`;
    try {
      const exporter = new Exporter({
        lakefs: stack.lakefs,
        repository: repo,
        destination: new S3Destination(s3, { bucket, prefix: "" }),
        logger: silentLogger,
        concurrency: 16,
        rounds: "delta",
      });
      assert.equal((await exporter.exportAllFromCommit(first)).status, "SUCCESS");
      events.length = 0;

      // A reader of the mirror, reading the table from scratch again and again meanwhile.
      const stop = join(dir, "stop");
      const watcher = spawn(python, [script, "watch", mirrorTable, mirrorOpts, stop], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      const lines = createInterface({ input: watcher.stdout })[Symbol.asyncIterator]();
      assert.equal((await lines.next()).value, "ready");
      const result = await exporter.exportDiff(first, last);
      assert.equal(result.status, "SUCCESS", result.failureLines.join("\n"));
      // A few more reads of the finished mirror, then the summary.
      await new Promise((r) => setTimeout(r, 500));
      writeFileSync(stop, "");
      const summary = JSON.parse(String((await lines.next()).value)) as {
        reads: number;
        failures: string[];
        versions: number[];
      };
      await new Promise((r) => watcher.once("close", r));
      assert.deepEqual(summary.failures, [], `the reader failed during the export`);
      assert.ok(summary.reads >= 3, `only ${summary.reads} reads`);
      assert.ok(
        summary.versions.includes(3) && summary.versions.at(-1)! >= 11,
        `versions read: ${summary.versions.join(" ")}`,
      );

      // As S3 saw it: each log version's commit after the one before it settled, every
      // checkpoint after its version's commit, _last_checkpoint after the log, deletes last.
      const at = (when: "start" | "end", key: string) =>
        events.findIndex((e) => e.at === when && e.key === key);
      const version = (k: string) => /^sales\/_delta_log\/(\d+)\.json$/.exec(k)?.[1];
      const commits = [...new Set(events.map((e) => e.key).filter(version))].sort();
      assert.ok(commits.length >= 8, commits.join(" "));
      for (let i = 1; i < commits.length; i++)
        assert.ok(
          at("end", commits[i - 1]!) < at("start", commits[i]!),
          `${commits[i]} was written before ${commits[i - 1]} settled`,
        );
      const checkpoint = events.find((e) => /\.checkpoint\.parquet$/.test(e.key))?.key;
      assert.ok(checkpoint, "the burst has a checkpoint");
      assert.ok(
        at("end", checkpoint.replace(/\.checkpoint\.parquet$/, ".json")) < at("start", checkpoint),
      );
      assert.ok(at("end", checkpoint) < at("start", "sales/_delta_log/_last_checkpoint"));
      const firstDelete = events.findIndex((e) => e.key.startsWith("-"));
      assert.ok(
        firstDelete > 0,
        `the VACUUM's deletes are exported:\n${events.map((e) => `${e.at} ${e.key}`).join("\n")}`,
      );
      assert.ok(
        events.findLastIndex((e) => !e.key.startsWith("-")) < firstDelete,
        "a delete started before every copy settled",
      );

      // At the end the mirror reads as the table does in lakeFS.
      const [mirrored, source] = await Promise.all([
        delta("read", mirrorTable, mirrorOpts),
        delta("read", `s3://${repo}/${last}/sales`, lakefsOpts),
      ]);
      assert.deepEqual(JSON.parse(mirrored.stdout), JSON.parse(source.stdout));
      assert.equal((JSON.parse(mirrored.stdout) as { ids: number[] }).ids.length, id);
    } finally {
      s3.destroy();
    }
  });
});

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { cliSummary, runCli } from "../helpers/cli.ts";
import { commitObjects, listKeys, statusKeys } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const LOG = "t/_delta_log/";
const v0 = `${LOG}00000000000000000000.json`;
const v1 = `${LOG}00000000000000000001.json`;
const lines = (...actions: unknown[]) => actions.map((a) => JSON.stringify(a)).join("\n") + "\n";

/**
 * A Delta table whose log names a file by an absolute URI, as a shallow clone's log does: with
 * the `delta` rounds the export refuses that version with a FAILURE line naming the commit file
 * and the path, and writes no version from it on; the versions before it are exported.
 */
describe("Delta Lake logs with absolute paths", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await stack.close();
  });

  it("--rounds=delta refuses the version that names s3://… files; the table stays at the version before it", async () => {
    const repo = await createRepo(stack, "delta-abs");
    const bucket = await createBucket(stack, "delta-abs");
    const foreign = "s3://source-bucket/clone/part-9.parquet";
    const commit = await commitObjects(stack, repo, "main", [
      { path: "t/part-0.parquet", content: "not really parquet" },
      {
        path: v0,
        content: lines(
          { protocol: { minReaderVersion: 1, minWriterVersion: 2 } },
          { add: { path: "part-0.parquet", size: 18, dataChange: true, modificationTime: 1 } },
        ),
      },
      {
        path: v1,
        content: lines({
          add: { path: foreign, size: 100, dataChange: true, modificationTime: 2 },
        }),
      },
    ]);
    const run = await runCli(stack, [
      "export",
      repo,
      `s3://${bucket}/m/`,
      `--commit_id=${commit}`,
      "--rounds=delta",
    ]);
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.equal(cliSummary(run).status, "FAILURE");
    const keys = await listKeys(stack, bucket, "m/");
    const [status] = statusKeys(keys.keys());
    const text = await (
      await stack.s3.send(new GetObjectCommand({ Bucket: bucket, Key: `m/${status}` }))
    ).Body!.transformToString();
    assert.ok(text.includes(v1) && text.includes(foreign), text);
    assert.ok(keys.has(v0), "the version before it is exported");
    assert.equal(keys.has(v1), false, "the version naming an absolute path is not");

    // Without the delta rounds nothing reads the log: the files are copied as they are.
    const plain = await runCli(stack, [
      "export",
      repo,
      `s3://${bucket}/p/`,
      `--commit_id=${commit}`,
    ]);
    assert.equal(plain.code, 0, plain.stdout + plain.stderr);
  });
});

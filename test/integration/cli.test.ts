import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { commitObjects, listKeys, statusKeys } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const entry = fileURLToPath(new URL("../../src/cli/bin.ts", import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe("lakefs-mirror CLI", () => {
  let stack: Stack;
  let repo: string;
  let c1: string;
  let c2: string;

  before(async () => {
    stack = await connectStack();
    repo = await createRepo(stack, "cli");
    c1 = await commitObjects(stack, repo, "main", [
      { path: "a.txt", content: "a" },
      { path: "dir/b.txt", content: "b" },
      { path: "dir/_SUCCESS", content: "" },
    ]);
    c2 = await commitObjects(stack, repo, "main", [{ path: "c.txt", content: "c" }], ["a.txt"]);
  });
  after(async () => {
    await stack.close();
  });

  function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        ["--import", "tsx", entry, ...args],
        { env: { ...process.env, ...stack.env, LOG_LEVEL: "info", ...env } },
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

  it("exports a branch, a commit and a diff, each verified equal to its commit", async () => {
    const bucket = await createBucket(stack);
    const full = await cli(["export", repo, `s3://${bucket}/branch/`, "--branch=main"]);
    assert.equal(full.code, 0, full.stderr + full.stdout);
    assert.equal(summary(full).status, "SUCCESS");
    assert.equal(summary(full).commitId, c2);
    const v1 = await cli(["verify", repo, "main", `s3://${bucket}/branch/`]);
    assert.equal(v1.code, 0, v1.stdout);

    const byCommit = await cli(["export", repo, `s3://${bucket}/commit`, "--commit-id", c1]);
    assert.equal(byCommit.code, 0, byCommit.stderr);
    assert.equal((await cli(["verify", repo, c1, `s3://${bucket}/commit/`])).code, 0);

    // Diff mode on top of the c1 mirror brings it to the branch HEAD (c2).
    const diff = await cli([
      "export",
      repo,
      `s3://${bucket}/commit/`,
      "--branch",
      "main",
      "--prev_commit_id",
      c1,
    ]);
    assert.equal(diff.code, 0, diff.stderr);
    assert.equal(summary(diff).copied, 1);
    assert.equal(summary(diff).deleted, 1);
    assert.equal((await cli(["verify", repo, c2, `s3://${bucket}/commit/`])).code, 0);
    const statuses = statusKeys((await listKeys(stack, bucket, "commit/")).keys());
    assert.equal(statuses.length, 2);
  });

  it("verify exits non-zero and names what differs", async () => {
    const bucket = await createBucket(stack);
    assert.equal((await cli(["export", repo, `s3://${bucket}/`, "--commit_id", c1])).code, 0);
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: "dir/b.txt", Body: "B" }));
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: "extra.txt", Body: "x" }));
    const v = await cli(["verify", repo, c1, `s3://${bucket}/`]);
    assert.equal(v.code, 1);
    assert.match(v.stdout, /^content\t"dir\/b\.txt"/m);
    assert.match(v.stdout, /^extra\t"extra\.txt"/m);
  });

  it("--dry-run prints the plan and writes nothing", async () => {
    const bucket = await createBucket(stack);
    const run = await cli([
      "export",
      repo,
      `s3://${bucket}/`,
      "--branch",
      "main",
      "--prev_commit_id",
      c1,
      "--dry-run",
    ]);
    assert.equal(run.code, 0, run.stderr);
    const plan = JSON.parse(run.stdout) as {
      actions: Record<string, number>;
      sample: Record<string, string[]>;
    };
    assert.deepEqual(plan.actions, { "copy (added)": 1, delete: 1 });
    assert.deepEqual(plan.sample.delete, ["a.txt"]);
    assert.equal((await listKeys(stack, bucket)).size, 0);
  });

  it("rejects arguments the Spark exporter rejects, with exit code 2", async () => {
    const both = await cli(["export", repo, "s3://bucket/x/", "--branch=main", "--commit_id=abc"]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /either --branch or --commit_id/);
    const prevWithCommit = await cli([
      "export",
      repo,
      "s3://bucket/x/",
      "--commit_id=abc",
      "--prev_commit_id=def",
    ]);
    assert.equal(prevWithCommit.code, 2);
    assert.match(prevWithCommit.stderr, /--prev_commit_id goes with --branch/);
    const neither = await cli(["export", repo, "s3://bucket/x/"]);
    assert.equal(neither.code, 2);
    const badUri = await cli(["export", repo, "ftp://bucket/x/", "--branch=main"]);
    assert.equal(badUri.code, 2);
    assert.match(
      badUri.stderr,
      /destination must look like .*s3:\/\/bucket\/prefix.*"ftp:\/\/bucket\/x\/"/,
    );
    const badMode = await cli([
      "export",
      repo,
      "s3://bucket/x/",
      "--branch=main",
      "--copy-mode=teleport",
    ]);
    assert.equal(badMode.code, 2);
    assert.match(badMode.stderr, /export\.copyMode/);
  });

  it("fails clearly, writing nothing, on wrong credentials or a commit lakeFS does not have", async () => {
    const bucket = await createBucket(stack);
    const denied = await cli(["export", repo, `s3://${bucket}/`, "--branch=main"], {
      LAKEFS_SECRET_ACCESS_KEY: "wrong",
    });
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /rejected the credentials.*LM_LAKEFS_AUTH/);
    const missing = await cli(["export", repo, `s3://${bucket}/`, "--commit_id", "0".repeat(64)]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /commit not found.*LM_LAKEFS_NOT_FOUND/);
    assert.equal((await listKeys(stack, bucket)).size, 0);
  });
});

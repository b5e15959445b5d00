import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { startDaemon, waitFor, waitForExported } from "../helpers/daemon.ts";
import { connectStack, createBucket, createRepo, uniqueName } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const entry = fileURLToPath(new URL("../../src/cli/bin.ts", import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

interface StatusOutput {
  ok: boolean;
  kafka: string;
  lanes: { branch: string; problem: string | null }[];
}

/** `lakefs-mirror status` as a cron job runs it: not on a terminal, so it prints JSON. */
function status(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", entry, "status", ...args],
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

describe("lakefs-mirror status", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await stack.close();
  });

  it("exits 1 while a lane is failing and says which, 0 once every lane is current", async () => {
    const repo = await createRepo(stack, "status");
    const good = await createBucket(stack);
    // The other lane's bucket does not exist yet: its exports cannot run.
    const later = uniqueName("later");
    await stack.lakefs.createBranch(repo, "other", "main");
    const { daemon, url } = await startDaemon(stack, {
      mirrors: [
        { repository: repo, branches: ["main"], destination: `s3://${good}/` },
        { repository: repo, branches: ["other"], destination: `s3://${later}/` },
      ],
      reconcileIntervalSeconds: 1,
      extra: { scheduler: { maxParallelLanes: 4, retryBaseSeconds: 1, retryMaxSeconds: 2 } },
    });
    try {
      const head = (b: string) => stack.lakefs.getBranch(repo, b).then((r) => r.commit_id);
      await waitForExported(url, repo, "main", await head("main"));
      const failing = await waitFor("the other lane to be reported failing", async () => {
        const run = await status(["--url", url]);
        const out = JSON.parse(run.stdout) as StatusOutput;
        return run.code === 1 && out.lanes.some((l) => l.branch === "other" && l.problem)
          ? out
          : undefined;
      });
      assert.equal(failing.ok, false);
      assert.equal(failing.kafka, "off");
      assert.equal(failing.lanes.find((l) => l.branch === "main")?.problem, null);
      assert.match(failing.lanes.find((l) => l.branch === "other")?.problem ?? "", /failing/);

      await stack.s3.send(new CreateBucketCommand({ Bucket: later }));
      await waitForExported(url, repo, "other", await head("other"));
      const current = await status(["--url", url, "--json"]);
      assert.equal(current.code, 0, current.stdout + current.stderr);
      const all = JSON.parse(current.stdout) as StatusOutput;
      assert.equal(all.ok, true);
      assert.deepEqual(all.lanes.map((l) => [l.branch, l.problem]).sort(), [
        ["main", null],
        ["other", null],
      ]);

      const unreachable = await status(["--url", "http://127.0.0.1:9"]);
      assert.equal(unreachable.code, 1);
      assert.match(unreachable.stderr, /cannot read http:\/\/127\.0\.0\.1:9\/status/);
      const usage = await status(["--max-lag", "soon"]);
      assert.equal(usage.code, 2);
      assert.match(usage.stderr, /--max-lag takes seconds/);
    } finally {
      await daemon.close();
    }
  });
});

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { commitObjects, gatewayPut, listKeys, readKey } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const entry = fileURLToPath(new URL("../../src/cli/bin.ts", import.meta.url));

/** How long the export may take: seconds of work, so a minute means it is not ending. */
const EXPORT_LIMIT_MS = 60_000;

describe("the listing walk of a diff export, on lakeFS", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await stack.close();
  });

  it("a diff over non-padded names that sort after the changed path ends instead of asking for the same page forever", async (t) => {
    const repo = await createRepo(stack, "walk");
    const names = Array.from({ length: 5000 }, (_, i) => `frames/${i + 1}`);
    // 5,000 uploads through the gateway, a few dozen at a time.
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < names.length) {
          const path = names[next++]!;
          await gatewayPut(stack, repo, "main", { path, content: `v1 ${path}` });
        }
      }),
    );
    const first = (await stack.lakefs.commit(repo, "main", { message: "frames" })).id;
    // In the listing's byte order frames/9 comes after frames/1, frames/10, …, frames/8999…;
    // it changes, and so do more than a dozen paths that sort after it.
    const changed = [
      "frames/9",
      ...Array.from({ length: 10 }, (_, i) => `frames/9${i}`),
      ...Array.from({ length: 10 }, (_, i) => `frames/90${i}`),
    ];
    await commitObjects(
      stack,
      repo,
      "main",
      changed.map((path) => ({ path, content: `v2 ${path}` })),
    );

    const bucket = await createBucket(stack, "walk");
    const started = Date.now();
    const run = await new Promise<{ code: number | null; out: string }>((resolve) => {
      execFile(
        process.execPath,
        [
          "--import",
          "tsx",
          entry,
          "export",
          repo,
          `s3://${bucket}/mirror/`,
          "--branch=main",
          `--prev_commit_id=${first}`,
        ],
        { env: { ...process.env, ...stack.env }, timeout: EXPORT_LIMIT_MS },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === "number" ? err.code : null) : 0;
          resolve({ code, out: stdout + stderr });
        },
      );
    });
    // At the limit the process is sent SIGTERM, which the CLI answers by stopping the export.
    const took = Date.now() - started;
    t.diagnostic(`export took ${took} ms`);
    assert.ok(took < EXPORT_LIMIT_MS, `the export did not end within ${EXPORT_LIMIT_MS} ms`);
    assert.equal(run.code, 0, run.out);
    const lines = run.out.trim().split("\n");
    const summary = JSON.parse(lines.findLast((l) => l.includes('"status"')) ?? "{}") as {
      status?: string;
      copied?: number;
    };
    assert.equal(summary.status, "SUCCESS", run.out);
    assert.equal(summary.copied, changed.length);

    const keys = await listKeys(stack, bucket, "mirror/");
    for (const path of changed) {
      assert.ok(keys.has(path), `${path} missing from the mirror`);
      assert.equal((await readKey(stack, bucket, `mirror/${path}`)).toString(), `v2 ${path}`);
    }
    assert.equal([...keys.keys()].filter((k) => k.startsWith("frames/")).length, changed.length);
  });
});

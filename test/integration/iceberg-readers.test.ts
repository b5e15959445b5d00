import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cliSummary, runCli } from "../helpers/cli.ts";
import { icebergPy, s3Of } from "../helpers/iceberg.ts";
import { startScriptedProxy } from "../helpers/scripted-proxy.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

/** A table read as digests: the current snapshot's ID and rows, and every snapshot's rows. */
interface Digests {
  current: string;
  current_rows: string;
  snapshots: Record<string, string>;
}

interface Read extends Digests {
  /** `bucket/key` of the metadata file read. */
  metadata: string;
  started: number;
  ended: number;
}

interface Polled {
  reads: Read[];
  failures: string[];
  metadata_files: number;
}

/**
 * A lakeFS-unaware reader (pyiceberg on MinIO, picking the newest `*.metadata.json` as a
 * file-system catalog does) polls the mirror while commits flow and each is exported as a diff
 * with the rewrite on. Every read must succeed, and every table it reads must be one lakeFS
 * committed: its metadata file is in some commit, and that file read through the lakeFS gateway
 * at that commit gives the same snapshots with the same rows.
 */
describe("a reader polling an Iceberg mirror during exports", () => {
  let stack: Stack;
  let tmp: string;
  /** Repository path of each committed metadata file → what lakeFS serves for it. */
  const truth = new Map<string, Digests>();
  before(async () => {
    stack = await connectStack();
    tmp = await mkdtemp(join(tmpdir(), "iceberg-readers-"));
  });
  after(async () => {
    await stack.close();
    await rm(tmp, { recursive: true, force: true });
  });

  it("appends, overwrites, deletes, schema evolution, snapshot expiry and orphan removal: no read fails, none sees a table lakeFS did not commit", async (t) => {
    const repo = await createRepo(stack, "icepoll");
    const bucket = await createBucket(stack, "icepoll");
    const gateway = s3Of(stack, "gateway");
    const db = join(tmp, `${repo}.db`);
    const created = await icebergPy<{ metadata: string }>(stack, "write-dev", {
      db,
      s3: gateway,
      warehouse: `s3://${repo}/main/wh`,
      format_version: 2,
      codec: "deflate",
    });
    const sourcePrefix = `s3://${repo}/main/`;
    const table = created.metadata.slice(0, created.metadata.indexOf("/metadata/"));
    const tableRel = table.slice(sourcePrefix.length);
    const root = `s3://${bucket}/mirror/`;
    const commits = [(await stack.lakefs.commit(repo, "main", { message: "created" })).id];
    await learn(repo, `${tableRel}/metadata/`, commits[0]!);
    const first = await runCli(stack, [
      "export",
      repo,
      root,
      `--commit_id=${commits[0]}`,
      "--rounds=iceberg",
    ]);
    assert.equal(first.code, 0, first.stdout + first.stderr);

    // The exports write through a proxy that holds back every write of a data file or a
    // manifest for a second (the fake part: a slow store on demand), so that a table's metadata
    // written before what it refers to would be read by the poller in that second.
    const slow = await startScriptedProxy(stack.env.AWS_ENDPOINT_URL, (method, path) =>
      method === "PUT" && /\/data\/|\/metadata\/(?!snap-)[^/]+\.avro/.test(decodeURIComponent(path))
        ? { delayMs: 1000 }
        : undefined,
    );
    t.after(() => slow.close());
    const stop = join(tmp, "stop");
    const polling = icebergPy<Polled>(stack, "poll", {
      s3: s3Of(stack, "minio"),
      table: `${root}${tableRel}`,
      stop,
    });
    const exports: { started: number; ended: number }[] = [];
    const ops = [
      "append",
      "overwrite",
      "delete",
      "evolve",
      "append",
      "expire",
      "append",
      "remove-orphans",
      "overwrite",
      "append",
    ];
    let removed = 0;
    try {
      for (const [n, op] of ops.entries()) {
        const done = await icebergPy<{ removed?: number }>(stack, "step", {
          db,
          s3: gateway,
          op,
          n,
        });
        removed += done.removed ?? 0;
        commits.push((await stack.lakefs.commit(repo, "main", { message: `${op} ${n}` })).id);
        await learn(repo, `${tableRel}/metadata/`, commits.at(-1)!);
        const started = Date.now() / 1000;
        const run = await runCli(
          stack,
          [
            "export",
            repo,
            root,
            "--branch=main",
            `--prev_commit_id=${commits.at(-2)}`,
            "--rounds=iceberg",
          ],
          { AWS_ENDPOINT_URL: slow.url },
        );
        exports.push({ started, ended: Date.now() / 1000 });
        assert.equal(run.code, 0, run.stdout + run.stderr);
        assert.equal(cliSummary(run).status, "SUCCESS", run.stdout);
      }
    } finally {
      await writeFile(stop, "");
    }
    const polled = await polling;
    assert.deepEqual(polled.failures, []);
    assert.ok(slow.delayed() >= ops.length, `${slow.delayed()} writes held back`);
    assert.ok(removed > 0, "orphan removal deleted files in lakeFS, and the export deleted them");
    const during = polled.reads.filter((r) =>
      exports.some((e) => r.started < e.ended && r.ended > e.started),
    );
    assert.ok(
      during.length >= 3,
      `${during.length} of ${polled.reads.length} reads overlapped exports`,
    );
    t.diagnostic(
      `${polled.reads.length} reads of ${polled.metadata_files} versions, ${during.length} during exports; ${removed} orphans removed`,
    );
    assert.ok(polled.metadata_files >= 4, `the reader saw ${polled.metadata_files} versions`);

    for (const read of polled.reads) {
      const rel = read.metadata.slice(`${bucket}/mirror/`.length);
      const want = truth.get(rel);
      assert.ok(want, `the reader read ${rel}, which no commit holds`);
      const { current, current_rows, snapshots } = read;
      assert.deepEqual({ current, current_rows, snapshots }, want, `the read of ${rel}`);
    }
  });

  /**
   * The metadata files a commit adds, read through the gateway on the branch while its head is
   * that commit (the paths inside name the branch, whose later commits remove files).
   */
  async function learn(repo: string, prefix: string, commit: string): Promise<void> {
    const added: string[] = [];
    for await (const page of stack.lakefs.listObjects(repo, commit, prefix))
      for (const o of page)
        if (o.path.endsWith(".metadata.json") && !truth.has(o.path)) added.push(o.path);
    const got = await icebergPy<Record<string, Digests>>(stack, "digest", {
      s3: s3Of(stack, "gateway"),
      metadata: added.map((p) => `s3://${repo}/main/${p}`),
    });
    for (const p of added) truth.set(p, got[`s3://${repo}/main/${p}`]!);
  }
});

import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { LakefsNotFoundError } from "../../src/errors.ts";
import { LakefsClient } from "../../src/lakefs/client.ts";
import { commitObjects } from "../helpers/mirror.ts";
import { startScriptedProxy } from "../helpers/scripted-proxy.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

describe("lakeFS client", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await stack.close();
  });

  const client = (overrides: Partial<ConstructorParameters<typeof LakefsClient>[0]> = {}) =>
    new LakefsClient({
      endpoint: stack.env.LAKEFS_ENDPOINT,
      accessKeyId: stack.env.LAKEFS_ACCESS_KEY_ID,
      secretAccessKey: stack.env.LAKEFS_SECRET_ACCESS_KEY,
      retry: { retries: 2, minTimeoutMs: 5, maxTimeoutMs: 10 },
      ...overrides,
    });

  it("pages through listings and two-dot diffs with after/next_offset", async () => {
    const repo = await createRepo(stack, "paging");
    const paths = ["a", "b", "c", "d", "e"].map((p) => `dir/${p}.txt`);
    const c1 = await commitObjects(
      stack,
      repo,
      "main",
      paths.map((path) => ({ path, content: path })),
    );
    const c2 = await commitObjects(
      stack,
      repo,
      "main",
      [{ path: "dir/f.txt", content: "f" }],
      ["dir/a.txt", "dir/b.txt"],
    );
    const small = client({ pageSize: 2 });
    const pages: string[][] = [];
    for await (const page of small.listObjects(repo, c1)) pages.push(page.map((o) => o.path));
    assert.deepEqual(pages, [paths.slice(0, 2), paths.slice(2, 4), paths.slice(4)]);

    const diff: string[] = [];
    for await (const page of small.diff(repo, c1, c2))
      for (const d of page) diff.push(`${d.type} ${d.path}`);
    assert.deepEqual(diff, ["removed dir/a.txt", "removed dir/b.txt", "added dir/f.txt"]);
    await small.close();
  });

  it("imports a prefix of the object store as one commit that references the objects where they are", async () => {
    const repo = await createRepo(stack, "import");
    const bucket = await createBucket(stack, "import-src");
    const keys = ["raw/x.csv", "raw/sub/y.csv", "raw/z w.csv"];
    for (const Key of keys)
      await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Key }));
    const lakefs = client();
    try {
      const id = await lakefs.startImport(
        repo,
        "main",
        [{ path: `s3://${bucket}/raw/`, destination: "in/", type: "common_prefix" }],
        { message: "import raw" },
      );
      let status = await lakefs.importStatus(repo, "main", id);
      for (let i = 0; !status.completed && !status.error && i < 100; i++) {
        await new Promise((r) => setTimeout(r, 100));
        status = await lakefs.importStatus(repo, "main", id);
      }
      assert.equal(status.error, undefined);
      assert.equal(status.completed, true);
      assert.equal(status.ingested_objects, keys.length);
      assert.equal((await lakefs.getBranch(repo, "main")).commit_id, status.commit?.id);
      const listed = [];
      for await (const page of lakefs.listObjects(repo, status.commit!.id))
        listed.push(...page.map((o) => [o.path, o.physical_address]));
      assert.deepEqual(
        listed,
        keys
          .map((k) => [`in/${k.slice("raw/".length)}`, `s3://${bucket}/${k}`])
          .sort(([a], [b]) => (a! < b! ? -1 : 1)),
      );
      await assert.rejects(
        lakefs.importStatus(repo, "main", "no-such-import"),
        LakefsNotFoundError,
      );
    } finally {
      await lakefs.close();
    }
  });

  it("raises coded errors: bad credentials, unknown commit, unknown repository, lakeFS unreachable", async () => {
    const repo = await createRepo(stack, "errors");
    await assert.rejects(client({ secretAccessKey: "wrong" }).getRepository(repo), {
      code: "LM_LAKEFS_AUTH",
    });
    await assert.rejects(client().getCommit(repo, "f".repeat(64)), {
      code: "LM_LAKEFS_NOT_FOUND",
      what: "commit",
    });
    await assert.rejects(client().getRepository("no-such-repo-here"), {
      code: "LM_LAKEFS_NOT_FOUND",
      what: "repository",
    });
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    await assert.rejects(client({ endpoint: `http://127.0.0.1:${port}` }).getRepository(repo), {
      code: "LM_LAKEFS_UNREACHABLE",
      message: new RegExp(`127\\.0\\.0\\.1:${port}`),
    });
  });

  it("retries 503s and 429s from a fault-injecting server in front of lakeFS", async () => {
    let requests = 0;
    // Injected faults: the first two requests get 503 and 429; the rest go to the real lakeFS.
    const faulty = createServer((req, res) => {
      requests++;
      if (requests <= 2) {
        res.writeHead(requests === 1 ? 503 : 429, { "content-type": "application/json" });
        res.end(JSON.stringify({ message: "injected fault" }));
        return;
      }
      fetch(stack.env.LAKEFS_ENDPOINT + (req.url ?? ""), {
        headers: { authorization: req.headers.authorization ?? "" },
      })
        .then(async (up) => {
          res.writeHead(up.status, { "content-type": "application/json" });
          res.end(Buffer.from(await up.arrayBuffer()));
        })
        .catch(() => res.destroy());
    });
    await new Promise<void>((r) => faulty.listen(0, "127.0.0.1", r));
    try {
      const repo = await createRepo(stack, "retry");
      const c = client({ endpoint: `http://127.0.0.1:${(faulty.address() as AddressInfo).port}` });
      const got = await c.getRepository(repo);
      assert.equal(got.id, repo);
      assert.equal(requests, 3);
      await c.close();
    } finally {
      await new Promise<void>((r) => faulty.close(() => r()));
    }
  });
  it("tries a failed upload again (staging is repeatable) but never a commit", async () => {
    const repo = await createRepo(stack, "upload-retry");
    // Injected faults: the first upload and the first commit are answered 500, as lakeFS does
    // when its own write to the blockstore fails.
    const failed = { upload: 0, commit: 0 };
    const proxy = await startScriptedProxy(stack.env.LAKEFS_ENDPOINT, (method, path) => {
      if (method !== "POST") return undefined;
      const kind = path.includes("/objects?")
        ? "upload"
        : path.endsWith("/commits")
          ? "commit"
          : null;
      if (!kind || failed[kind] > 0) return undefined;
      failed[kind]++;
      return { refuse: { status: 500, body: JSON.stringify({ message: "injected fault" }) } };
    });
    const c = client({ endpoint: proxy.url });
    try {
      const stats = await c.uploadObject(repo, "main", "a/once.txt", "staged after one 500");
      assert.equal(stats.path, "a/once.txt");
      assert.equal(failed.upload, 1);
      const before = (await c.getBranch(repo, "main")).commit_id;
      await assert.rejects(c.commit(repo, "main", { message: "refused once" }), { status: 500 });
      // The refused commit was not sent again behind our back: HEAD has not moved.
      assert.equal((await c.getBranch(repo, "main")).commit_id, before);
      assert.equal(failed.commit, 1);
      assert.equal((await c.statObject(repo, "main", "a/once.txt")).size_bytes, 20);
    } finally {
      await c.close();
      await proxy.close();
    }
  });
});

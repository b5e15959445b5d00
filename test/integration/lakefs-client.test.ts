import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { LakefsClient } from "../../src/lakefs/client.ts";
import { commitObjects } from "../helpers/mirror.ts";
import { connectStack, createRepo } from "../helpers/stack.ts";
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
});

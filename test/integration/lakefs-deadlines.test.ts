import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { TestContext } from "node:test";
import { RequestTimeoutError } from "../../src/errors.ts";
import { LakefsClient } from "../../src/lakefs/client.ts";
import type { LakefsClientOptions } from "../../src/lakefs/client.ts";
import { startFaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
import type {
  FaultInjectingProxy,
  FaultInjectingProxyOptions,
} from "../helpers/fault-injecting-proxy.ts";
import { commitObjects } from "../helpers/mirror.ts";
import { connectStack, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const MiB = 1024 * 1024;

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof Error, `rejected with a non-Error: ${String(err)}`);
    return err;
  }
  assert.fail("expected the call to fail, but it succeeded");
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  const value = await fn();
  return { value, ms: Date.now() - started };
}

async function drain(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

describe("lakeFS request deadlines", () => {
  let stack: Stack;
  let repo: string;
  let commit: string;
  const blob = randomBytes(4 * MiB);
  before(async () => {
    stack = await connectStack();
    repo = await createRepo(stack, "deadlines");
    commit = await commitObjects(stack, repo, "main", [
      { path: "small.txt", content: "small" },
      { path: "blob.bin", content: blob },
    ]);
  });
  after(() => stack.close());

  async function viaProxy(
    t: TestContext,
    options: Omit<FaultInjectingProxyOptions, "flavor"> = {},
    client: Partial<LakefsClientOptions> = {},
  ): Promise<{ proxy: FaultInjectingProxy; lakefs: LakefsClient }> {
    const proxy = await startFaultInjectingProxy(stack.env.LAKEFS_ENDPOINT, {
      flavor: "lakefs",
      ...options,
    });
    const lakefs = new LakefsClient({
      endpoint: proxy.url,
      accessKeyId: stack.env.LAKEFS_ACCESS_KEY_ID,
      secretAccessKey: stack.env.LAKEFS_SECRET_ACCESS_KEY,
      ...client,
    });
    t.after(async () => {
      await lakefs.close();
      await proxy.close();
    });
    return { proxy, lakefs };
  }

  it(
    "a lakeFS read that never answers is retried after the 2 s first-byte deadline, instead of waiting 60 s for its headers",
    { timeout: 45_000 },
    async (t) => {
      // Product defaults: deadlines and retry policy.
      let seen = 0;
      const { proxy, lakefs } = await viaProxy(t, {
        rates: { stall: 1 },
        eligible: (method, url) =>
          method === "GET" && url.includes("/objects/stat") && seen++ === 0,
      });
      const { value, ms } = await timed(() => lakefs.statObject(repo, commit, "small.txt"));
      assert.equal(value.size_bytes, 5);
      assert.equal(proxy.injected().stall, 1);
      assert.ok(ms >= 1_500 && ms < 10_000, `a stalled stat cost ${ms} ms`);
    },
  );

  it("a stalled read fails with a retriable LM_REQUEST_TIMEOUT that names the request and the first byte", async (t) => {
    const { lakefs } = await viaProxy(
      t,
      { rates: { stall: 1 } },
      { firstByteTimeoutMs: 500, retry: { retries: 0 } },
    );
    const { value: err, ms } = await timed(() => rejection(lakefs.getBranch(repo, "main")));
    assert.ok(err instanceof RequestTimeoutError, `${err.name}: ${err.message}`);
    assert.equal(err.code, "LM_REQUEST_TIMEOUT");
    assert.equal(err.retriable, true);
    assert.equal(err.waitingFor, "first byte");
    assert.match(
      err.message,
      /^lakeFS GET \/api\/v1\/repositories\/.*\/branches\/main timed out after 0\.5 s waiting for the first byte/,
    );
    assert.ok(ms >= 400 && ms < 3_000, `gave up after ${ms} ms`);
  });

  it("a slow lakeFS read gets twice the time on each retry until it answers", async (t) => {
    const { proxy, lakefs } = await viaProxy(
      t,
      {},
      { firstByteTimeoutMs: 300, retry: { retries: 6, minTimeoutMs: 10, maxTimeoutMs: 20 } },
    );
    // 1.5 s late every time: cut at 0.3, 0.6 and 1.2 s, answered within 2.4 s.
    proxy.setLag(1_500, (method) => method === "GET");
    const { value, ms } = await timed(() => lakefs.getBranch(repo, "main"));
    assert.equal(value.commit_id, commit);
    assert.equal(proxy.forwarded(), 4);
    assert.ok(ms >= 300 + 600 + 1_200 + 1_500, `answered after ${ms} ms`);
  });

  it("a lakeFS write that works longer than the read deadline is not cut", async (t) => {
    const { proxy, lakefs } = await viaProxy(t, {}, { firstByteTimeoutMs: 300 });
    proxy.setLag(1_500, (method) => method === "POST");
    await lakefs.uploadObject(repo, "main", "written.txt", "late but fine");
    const c = await lakefs.commit(repo, "main", { message: "slow commit" });
    assert.equal((await stack.lakefs.statObject(repo, c.id, "written.txt")).size_bytes, 13);
  });

  it("an object whose bytes stop in the middle is cut by the progress timeout with a coded error", async (t) => {
    const { lakefs } = await viaProxy(
      t,
      { rates: { stallBody: 1 } },
      { bodyTimeoutMs: 1_000, retry: { retries: 0 } },
    );
    const { body } = await lakefs.getObject(repo, commit, "blob.bin");
    const { value: err, ms } = await timed(() => rejection(drain(body)));
    assert.ok(err instanceof RequestTimeoutError, `${err.name}: ${err.message}`);
    assert.equal(err.waitingFor, "response body");
    assert.match(err.message, /^lakeFS GET .*\/objects timed out after 1\.0 s waiting for more/);
    assert.ok(ms >= 800 && ms < 4_000, `cut after ${ms} ms`);
  });

  it("a page whose body never starts is cut by the progress timeout", async (t) => {
    const { lakefs } = await viaProxy(
      t,
      { rates: { stallHeaders: 1 } },
      { bodyTimeoutMs: 1_000, retry: { retries: 0 } },
    );
    const err = await rejection(lakefs.statObject(repo, commit, "small.txt"));
    assert.ok(err instanceof RequestTimeoutError, `${err.name}: ${err.message}`);
    assert.equal(err.waitingFor, "response body");
  });

  it("a slow download of an object that keeps moving is never cut, however long it takes", async (t) => {
    const { proxy, lakefs } = await viaProxy(t, {}, { bodyTimeoutMs: 1_000 });
    proxy.setThrottle(1 * MiB);
    const { value, ms } = await timed(async () => {
      const { body } = await lakefs.getObject(repo, commit, "blob.bin");
      return drain(body);
    });
    assert.ok(value.equals(blob), "the whole object, byte for byte");
    assert.ok(ms > 3_000, `a 4 MiB download at 1 MiB/s took only ${ms} ms`);
  });
});

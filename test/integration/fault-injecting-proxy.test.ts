import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { TestContext } from "node:test";
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import { createS3Client } from "../../src/s3/client.ts";
import { startFaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
import type {
  FaultInjectingProxy,
  FaultInjectingProxyOptions,
} from "../helpers/fault-injecting-proxy.ts";
import { connectStack, createBucket } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

/** What a rejected promise was rejected with; fails the test if it resolves. */
async function rejection(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof Error, `rejected with a non-Error: ${String(err)}`);
    return err as Error & Record<string, unknown>;
  }
  assert.fail("expected the call to fail, but it succeeded");
}

/** The HTTP status of an SDK error, if the SDK got one. */
function httpStatus(err: Record<string, unknown>): number | undefined {
  const metadata = err.$metadata as { httpStatusCode?: number } | undefined;
  return metadata?.httpStatusCode;
}

/** A failure below HTTP: the connection was refused, reset or closed early. */
function assertNetworkError(err: Error & Record<string, unknown>, codes: RegExp): void {
  const code = typeof err.code === "string" ? err.code : "";
  assert.match(`${code} ${err.message}`, codes, `not a network error: ${err.name}: ${err.message}`);
  assert.equal(httpStatus(err), undefined, "a network error carries no HTTP status");
}

async function until(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe("fault-injecting proxy", () => {
  let stack: Stack;
  let bucket: string;
  before(async () => {
    stack = await connectStack();
    bucket = await createBucket(stack, "faults");
  });
  after(async () => {
    await stack.close();
  });

  /** A proxy in front of the stack's S3 server and an S3 client (one attempt) that uses it. */
  async function s3ViaProxy(
    t: TestContext,
    options: Partial<FaultInjectingProxyOptions> = {},
  ): Promise<{ proxy: FaultInjectingProxy; client: S3Client }> {
    const proxy = await startFaultInjectingProxy(stack.env.AWS_ENDPOINT_URL, {
      flavor: "s3",
      ...options,
    });
    const client = createS3Client({
      endpoint: proxy.url,
      region: stack.env.AWS_REGION,
      credentials: {
        accessKeyId: stack.env.AWS_ACCESS_KEY_ID,
        secretAccessKey: stack.env.AWS_SECRET_ACCESS_KEY,
      },
      maxAttempts: 1,
    });
    t.after(async () => {
      client.destroy();
      await proxy.close();
    });
    return { proxy, client };
  }

  async function assertAbsentUpstream(key: string): Promise<void> {
    const err = await rejection(stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key })));
    assert.equal(httpStatus(err), 404, `${key} should not exist upstream`);
  }

  it("passes requests through unchanged when no fault is set, signatures included", async (t) => {
    const { proxy, client } = await s3ViaProxy(t);
    const body = randomBytes(64 * 1024);
    await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: "plain/round-trip", Body: body }),
    );
    const got = await client.send(
      new GetObjectCommand({ Bucket: bucket, Key: "plain/round-trip" }),
    );
    assert.ok(got.Body);
    assert.deepEqual(Buffer.from(await got.Body.transformToByteArray()), body);
    // And keep-alive works: the same connection serves a third request.
    const head = await client.send(
      new HeadObjectCommand({ Bucket: bucket, Key: "plain/round-trip" }),
    );
    assert.equal(head.ContentLength, body.length);
    assert.equal(proxy.forwarded(), 3);
    assert.deepEqual(proxy.injected(), {
      slowdown: 0,
      reset: 0,
      cut: 0,
      stall: 0,
      stallHeaders: 0,
      stallBody: 0,
      stallUpload: 0,
    });
  });

  it("slowdown answers 503 SlowDown without forwarding, and the connection stays usable", async (t) => {
    const { proxy, client } = await s3ViaProxy(t, { rates: { slowdown: 1 } });
    const key = "slowdown/never-written";
    const err = await rejection(
      client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: randomBytes(10_000) })),
    );
    assert.equal(err.name, "SlowDown");
    assert.equal(httpStatus(err), 503);
    assert.match(err.message, /injected/);
    assert.equal(proxy.forwarded(), 0);
    assert.equal(proxy.injected().slowdown, 1);
    await assertAbsentUpstream(key);

    proxy.setRates({});
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: "now" }));
    assert.equal(proxy.forwarded(), 1);
  });

  it("only eligible requests get faults", async (t) => {
    const { proxy, client } = await s3ViaProxy(t, {
      rates: { slowdown: 1 },
      eligible: (method) => method === "PUT",
    });
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: "eligible/x", Body: "x" }));
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: "eligible/x" }));
    assert.equal(head.ContentLength, 1);
    const err = await rejection(
      client.send(new PutObjectCommand({ Bucket: bucket, Key: "eligible/y", Body: "y" })),
    );
    assert.equal(err.name, "SlowDown");
    assert.deepEqual(proxy.injected(), {
      slowdown: 1,
      reset: 0,
      cut: 0,
      stall: 0,
      stallHeaders: 0,
      stallBody: 0,
      stallUpload: 0,
    });
    assert.equal(proxy.forwarded(), 1);
  });

  it("reset fails the request with a network error and forwards nothing", async (t) => {
    const { proxy, client } = await s3ViaProxy(t, { rates: { reset: 1 } });
    const key = "reset/never-written";
    const err = await rejection(
      client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: randomBytes(10_000) })),
    );
    assertNetworkError(err, /ECONNRESET|EPIPE|socket hang up/);
    assert.equal(proxy.injected().reset, 1);
    assert.equal(proxy.forwarded(), 0);
    await assertAbsentUpstream(key);
  });

  it("cut truncates a download's body", async (t) => {
    const { proxy, client } = await s3ViaProxy(t, { rates: { cut: 1 } });
    const key = "cut/download";
    const size = 100 * 1024;
    await stack.s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: randomBytes(size) }),
    );
    let received = 0;
    let failed: unknown;
    try {
      const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      assert.ok(got.Body);
      received = (await got.Body.transformToByteArray()).length;
    } catch (err) {
      failed = err;
    }
    assert.ok(failed !== undefined || received < size, `read all ${received} bytes`);
    assert.equal(proxy.injected().cut, 1);
    assert.equal(proxy.forwarded(), 1);
  });

  it("cut loses an upload's answer, but the upload happened", async (t) => {
    const { proxy, client } = await s3ViaProxy(t, { rates: { cut: 1 } });
    const key = "cut/upload";
    const body = randomBytes(20_000);
    const err = await rejection(
      client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body })),
    );
    assertNetworkError(err, /ECONNRESET|socket hang up/);
    assert.equal(proxy.forwarded(), 1);
    const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    assert.equal(head.ContentLength, body.length);
  });

  it("stall never answers: the client's timeout ends the request, and close() still returns", async (t) => {
    const { proxy, client } = await s3ViaProxy(t, { rates: { stall: 1 } });
    const key = "stall/x";
    const started = Date.now();
    const err = await rejection(
      client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), {
        abortSignal: AbortSignal.timeout(500),
      }),
    );
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 450 && elapsed < 2_000, `gave up after ${elapsed} ms`);
    assert.equal(err.name, "AbortError");
    assert.equal(proxy.forwarded(), 0);

    // A request still stalled when the proxy closes is let go, and close() does not wait for it.
    const pending = rejection(
      client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: "stalled" })),
    );
    await until(() => proxy.injected().stall === 2, "the second request to stall");
    const closing = Date.now();
    await proxy.close();
    assert.ok(Date.now() - closing < 1_000, `close() took ${Date.now() - closing} ms`);
    assertNetworkError(await pending, /ECONNRESET|socket hang up/);
    await assertAbsentUpstream(key);
  });

  it("setDown refuses connections, and setDown(false) serves again on the same url", async (t) => {
    const { proxy, client } = await s3ViaProxy(t);
    const key = "down/x";
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: "x" }));

    await proxy.setDown(true);
    const err = await rejection(client.send(new HeadObjectCommand({ Bucket: bucket, Key: key })));
    assertNetworkError(err, /ECONNREFUSED/);
    await proxy.setDown(true); // already down: nothing to do

    await proxy.setDown(false);
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    assert.equal(head.ContentLength, 1);
    assert.equal(proxy.forwarded(), 2);
  });

  describe("lakefs flavor", () => {
    async function lakefsProxy(
      t: TestContext,
      options: Omit<FaultInjectingProxyOptions, "flavor">,
    ): Promise<FaultInjectingProxy> {
      const proxy = await startFaultInjectingProxy(stack.env.LAKEFS_ENDPOINT, {
        flavor: "lakefs",
        ...options,
      });
      t.after(() => proxy.close());
      return proxy;
    }

    it("slowdown answers 503 with lakeFS's JSON error body", async (t) => {
      const proxy = await lakefsProxy(t, { rates: { slowdown: 1 } });
      const res = await fetch(new URL("/api/v1/healthcheck", proxy.url));
      assert.equal(res.status, 503);
      assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
      const body = (await res.json()) as { message?: unknown };
      assert.equal(typeof body.message, "string");
      assert.match(body.message as string, /injected/);

      proxy.setRates({});
      const healthy = await fetch(new URL("/api/v1/healthcheck", proxy.url));
      await healthy.arrayBuffer();
      assert.ok(healthy.ok, `healthcheck through the proxy answered ${healthy.status}`);
    });

    it("a seed decides which requests fail, the same way every time", async (t) => {
      async function statuses(seed: number): Promise<number[]> {
        const proxy = await lakefsProxy(t, { rates: { slowdown: 0.5 }, seed });
        const out: number[] = [];
        for (let i = 0; i < 24; i++) {
          const res = await fetch(new URL("/api/v1/healthcheck", proxy.url));
          await res.arrayBuffer();
          out.push(res.status);
        }
        assert.equal(proxy.injected().slowdown, out.filter((s) => s === 503).length);
        return out;
      }
      const first = await statuses(7);
      assert.deepEqual(await statuses(7), first);
      assert.ok(first.includes(503) && first.some((s) => s !== 503), `statuses: ${first.join()}`);
      assert.notDeepEqual(await statuses(8), first);
    });
  });
});

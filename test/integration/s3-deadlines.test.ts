import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import { DestinationError, RequestTimeoutError } from "../../src/errors.ts";
import type { Deadlines } from "../../src/http/deadlines.ts";
import { createS3Client } from "../../src/s3/client.ts";
import { S3Destination } from "../../src/s3/destination.ts";
import { LeanS3 } from "../../src/s3/lean.ts";
import { startFaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
import type {
  FaultInjectingProxy,
  FaultInjectingProxyOptions,
} from "../helpers/fault-injecting-proxy.ts";
import { connectStack, createBucket } from "../helpers/stack.ts";
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

/** The RequestTimeoutError an error is or was caused by. */
function timeoutOf(err: Error): RequestTimeoutError {
  for (let e: unknown = err; e instanceof Error; e = e.cause)
    if (e instanceof RequestTimeoutError) return e;
  assert.fail(`not a request timeout: ${err.name}: ${err.message}`);
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  const value = await fn();
  return { value, ms: Date.now() - started };
}

describe("S3 request deadlines", () => {
  let stack: Stack;
  let bucket: string;
  const big = randomBytes(6 * MiB);
  before(async () => {
    stack = await connectStack();
    bucket = await createBucket(stack, "deadlines");
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: "small", Body: "small" }));
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: "big", Body: big }));
    await stack.s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: "ten", Body: randomBytes(10 * MiB) }),
    );
  });
  after(() => stack.close());

  /** A proxy in front of the stack's S3 server and a client of it with these deadlines. */
  async function viaProxy(
    t: TestContext,
    options: Omit<FaultInjectingProxyOptions, "flavor"> = {},
    client: { maxAttempts?: number; deadlines?: Partial<Deadlines> } = {},
  ): Promise<{ proxy: FaultInjectingProxy; s3: S3Client }> {
    const proxy = await startFaultInjectingProxy(stack.env.AWS_ENDPOINT_URL, {
      flavor: "s3",
      ...options,
    });
    const s3 = createS3Client({
      endpoint: proxy.url,
      region: stack.env.AWS_REGION,
      credentials: {
        accessKeyId: stack.env.AWS_ACCESS_KEY_ID,
        secretAccessKey: stack.env.AWS_SECRET_ACCESS_KEY,
      },
      ...client,
    });
    t.after(async () => {
      s3.destroy();
      await proxy.close();
    });
    return { proxy, s3 };
  }

  const firstOnly = (method: string) => {
    let seen = 0;
    return (m: string) => m === method && seen++ === 0;
  };

  it(
    "a HEAD that S3 never answers is retried after the 2 s first-byte deadline, instead of waiting out a two-minute idle timeout",
    { timeout: 60_000 },
    async (t) => {
      // Product defaults: deadlines and the SDK's three attempts.
      const { proxy, s3 } = await viaProxy(t, { rates: { stall: 1 }, eligible: firstOnly("HEAD") });
      const { value, ms } = await timed(() =>
        s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "small" })),
      );
      assert.equal(value.ContentLength, 5);
      assert.equal(proxy.injected().stall, 1);
      assert.ok(ms >= 1_900 && ms < 10_000, `a stalled HEAD cost ${ms} ms`);
    },
  );

  it("a cut request fails with a retriable LM_REQUEST_TIMEOUT that says it waited for the first byte", async (t) => {
    const { s3 } = await viaProxy(t, { rates: { stall: 1 } }, { maxAttempts: 1 });
    const { value: err, ms } = await timed(() =>
      rejection(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "small" }))),
    );
    assert.ok(err instanceof RequestTimeoutError, `${err.name}: ${err.message}`);
    assert.equal(err.code, "LM_REQUEST_TIMEOUT");
    assert.equal(err.retriable, true);
    assert.equal(err.waitingFor, "first byte");
    assert.match(err.message, /HEAD .*small timed out after 2\.0 s waiting for the first byte/);
    assert.ok(ms >= 1_900 && ms < 6_000, `gave up after ${ms} ms`);

    // Through the destination it is the DestinationError callers know, retriable, saying why.
    const d = new S3Destination(s3, { bucket, prefix: "" });
    const wrapped = await rejection(d.head("small"));
    assert.ok(wrapped instanceof DestinationError);
    assert.equal(wrapped.retriable, true);
    assert.match(
      wrapped.message,
      /^head s3:\/\/.*timed out after 2\.0 s waiting for the first byte/,
    );
    assert.equal(timeoutOf(wrapped).waitingFor, "first byte");
  });

  it("each retry of a stalled request waits twice as long as the one before", async (t) => {
    const { proxy, s3 } = await viaProxy(
      t,
      { rates: { stall: 1 } },
      { maxAttempts: 3, deadlines: { firstByteMs: 300 } },
    );
    const { value: err, ms } = await timed(() =>
      rejection(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "small" }))),
    );
    assert.equal(timeoutOf(err).timeoutMs, 1_200, "the third attempt's deadline");
    assert.equal(proxy.injected().stall, 3);
    assert.ok(ms >= 300 + 600 + 1_200 && ms < 6_000, `three attempts took ${ms} ms`);
  });

  it("a download whose body never starts is cut by the progress timeout", async (t) => {
    const { s3 } = await viaProxy(
      t,
      { rates: { stallHeaders: 1 } },
      { maxAttempts: 1, deadlines: { idleMs: 1_000 } },
    );
    const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "big" }));
    const { value: err, ms } = await timed(() => rejection(res.Body!.transformToByteArray()));
    assert.equal(timeoutOf(err).waitingFor, "response body");
    assert.match(err.message, /timed out after 1\.0 s waiting for more of the answer's body/);
    assert.ok(ms >= 900 && ms < 4_000, `cut after ${ms} ms`);
  });

  it("a download that stops in the middle is cut by the progress timeout", async (t) => {
    const { proxy, s3 } = await viaProxy(
      t,
      { rates: { stallBody: 1 } },
      { maxAttempts: 1, deadlines: { idleMs: 1_000 } },
    );
    const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "big" }));
    let received = 0;
    const { value: err, ms } = await timed(() =>
      rejection(
        (async () => {
          for await (const chunk of res.Body as AsyncIterable<Buffer>) received += chunk.length;
        })(),
      ),
    );
    assert.equal(proxy.injected().stallBody, 1);
    assert.equal(timeoutOf(err).waitingFor, "response body");
    assert.ok(received > 0 && received < big.length, `received ${received} bytes`);
    assert.ok(ms >= 900 && ms < 4_000, `cut after ${ms} ms`);
  });

  it("a slow download that keeps moving is never cut, however long it takes", async (t) => {
    const { proxy, s3 } = await viaProxy(t, {}, { maxAttempts: 1, deadlines: { idleMs: 1_000 } });
    proxy.setThrottle(1.5 * MiB);
    const { value, ms } = await timed(async () => {
      const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "big" }));
      return Buffer.from(await res.Body!.transformToByteArray());
    });
    assert.ok(value.equals(big), "the whole object, byte for byte");
    assert.ok(ms > 3_000, `a 6 MiB download at 1.5 MiB/s took only ${ms} ms`);
  });

  it("a reader that stops reading for longer than the progress timeout does not get the body cut", async () => {
    const s3 = createS3Client({
      endpoint: stack.env.AWS_ENDPOINT_URL,
      region: stack.env.AWS_REGION,
      credentials: {
        accessKeyId: stack.env.AWS_ACCESS_KEY_ID,
        secretAccessKey: stack.env.AWS_SECRET_ACCESS_KEY,
      },
      maxAttempts: 1,
      deadlines: { idleMs: 300 },
    });
    try {
      const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "big" }));
      const chunks: Buffer[] = [];
      let paused = false;
      for await (const chunk of res.Body as AsyncIterable<Buffer>) {
        chunks.push(chunk);
        if (!paused) {
          paused = true;
          // Backpressure, not a stalled server: the clock must not run.
          await sleep(1_500);
        }
      }
      assert.ok(Buffer.concat(chunks).equals(big));
    } finally {
      s3.destroy();
    }
  });

  it("an upload that S3 stops taking is cut by the progress timeout", async (t) => {
    const { proxy, s3 } = await viaProxy(
      t,
      { rates: { stallUpload: 1 } },
      { maxAttempts: 1, deadlines: { idleMs: 1_000 } },
    );
    const { value: err, ms } = await timed(() =>
      rejection(
        s3.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: "stalled-upload",
            Body: randomBytes(48 * MiB),
          }),
        ),
      ),
    );
    assert.equal(proxy.injected().stallUpload, 1);
    assert.equal(timeoutOf(err).waitingFor, "request body");
    assert.match(err.message, /waiting for the server to take more of the request body/);
    assert.ok(ms < 8_000, `cut after ${ms} ms`);
  });

  it("a slow upload that keeps moving is never cut, however long it takes", async (t) => {
    const { proxy, s3 } = await viaProxy(t, {}, { maxAttempts: 1, deadlines: { idleMs: 1_000 } });
    proxy.setThrottle(8 * MiB);
    const body = randomBytes(24 * MiB);
    const { ms } = await timed(() =>
      s3.send(new PutObjectCommand({ Bucket: bucket, Key: "slow-upload", Body: body })),
    );
    const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "slow-upload" }));
    assert.equal(head.ContentLength, body.length);
    assert.ok(ms > 2_000, `a 24 MiB upload at 8 MiB/s took only ${ms} ms`);
  });

  it("copies get a deadline scaled to the bytes S3 copies before it answers, small requests keep theirs", async (t) => {
    // Every PUT is answered 1.5 s late, as by a server that works before it answers.
    const deadlines = { firstByteMs: 400, workBytesPerSecond: 2 * MiB };
    const { proxy, s3 } = await viaProxy(t, {}, { maxAttempts: 1, deadlines });
    proxy.setLag(1_500, (method) => method === "PUT");
    const lean = new LeanS3(s3, { maxSockets: 4, connectTimeoutMs: 2_000, deadlines });
    t.after(() => lean.close());
    const meta = { contentType: "application/octet-stream", metadata: {} };
    const sdk = new S3Destination(s3, { bucket, prefix: "copy-sdk/" });
    const viaLean = new S3Destination(s3, { bucket, prefix: "copy-lean/" }, {}, lean);
    // 6 MiB at 2 MiB/s: 3.4 s allowed. 10 MiB in two 5 MiB UploadPartCopy parts: 2.9 s each.
    await sdk.serverSideCopy(
      { scheme: "s3", container: bucket, key: "big" },
      "big",
      big.length,
      meta,
    );
    await viaLean.serverSideCopy(
      { scheme: "s3", container: bucket, key: "big" },
      "big",
      big.length,
      meta,
    );
    const parts = new S3Destination(
      s3,
      { bucket, prefix: "copy-parts/" },
      { copyMultipartThresholdBytes: 6 * MiB, copyPartSizeBytes: 5 * MiB },
    );
    await parts.serverSideCopy(
      { scheme: "s3", container: bucket, key: "ten" },
      "ten",
      10 * MiB,
      meta,
    );
    for (const key of ["copy-sdk/big", "copy-lean/big", "copy-parts/ten"]) {
      const head = await stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      assert.equal(head.ContentLength, key.endsWith("ten") ? 10 * MiB : big.length, key);
    }
    // A small PUT as late is cut at its own 0.4 s.
    const err = await rejection(
      s3.send(new PutObjectCommand({ Bucket: bucket, Key: "late", Body: "x" })),
    );
    assert.ok(timeoutOf(err).timeoutMs < 500, `a small PUT got ${timeoutOf(err).timeoutMs} ms`);
  });

  it("a stalled copy is cut after its scaled deadline, not minutes later", async (t) => {
    const deadlines = { firstByteMs: 400, workBytesPerSecond: 4 * MiB };
    const { s3 } = await viaProxy(t, { rates: { stall: 1 } }, { maxAttempts: 1, deadlines });
    const lean = new LeanS3(s3, { maxSockets: 4, connectTimeoutMs: 2_000, deadlines });
    t.after(() => lean.close());
    const d = new S3Destination(s3, { bucket, prefix: "stalled-copy/" }, {}, lean);
    const meta = { contentType: undefined, metadata: {} };
    const { value: err, ms } = await timed(() =>
      rejection(
        d.serverSideCopy({ scheme: "s3", container: bucket, key: "big" }, "big", big.length, meta),
      ),
    );
    assert.ok(err instanceof DestinationError && err.retriable);
    // 0.4 s + 6 MiB at 4 MiB/s.
    assert.equal(timeoutOf(err).timeoutMs, 1_900);
    assert.ok(ms >= 1_800 && ms < 6_000, `cut after ${ms} ms`);
  });

  it(
    "a lean HEAD that S3 never answers is retried within seconds",
    { timeout: 60_000 },
    async (t) => {
      const { proxy, s3 } = await viaProxy(t, { rates: { stall: 1 }, eligible: firstOnly("HEAD") });
      const lean = new LeanS3(s3, { maxSockets: 4, connectTimeoutMs: 2_000 });
      t.after(() => lean.close());
      const d = new S3Destination(s3, { bucket, prefix: "" }, {}, lean);
      const { value, ms } = await timed(() => d.head("small"));
      assert.equal(value?.size, 5);
      assert.equal(proxy.injected().stall, 1);
      assert.ok(ms >= 1_900 && ms < 10_000, `a stalled lean HEAD cost ${ms} ms`);
    },
  );
});

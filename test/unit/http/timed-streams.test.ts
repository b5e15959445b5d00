import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PassThrough } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { ProgressTimedBody } from "../../../src/http/timed-streams.ts";

class Cut extends Error {
  readonly ms: number;
  constructor(ms: number) {
    super(`cut after ${ms} ms`);
    this.ms = ms;
  }
}

async function read(body: AsyncIterable<Buffer>, pauseAfterFirstMs = 0): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) {
    if (chunks.length === 0 && pauseAfterFirstMs > 0) await sleep(pauseAfterFirstMs);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

describe("a progress-timed response body", () => {
  it("is cut when its source stops while the reader waits", async () => {
    const src = new PassThrough();
    const body = new ProgressTimedBody(src, { idleMs: 150, onTimeout: (ms) => new Cut(ms) });
    src.write("first bytes");
    const started = Date.now();
    await assert.rejects(read(body), (err) => err instanceof Cut && err.ms === 150);
    assert.ok(Date.now() - started >= 140, "cut before the idle time passed");
    assert.ok(src.destroyed, "the source (its connection) is let go");
  });

  it("is not cut while its reader holds it back, however long", async () => {
    const src = new PassThrough({ highWaterMark: 16 });
    const body = new ProgressTimedBody(src, { idleMs: 100, onTimeout: (ms) => new Cut(ms) });
    const payload = Buffer.alloc(64 * 1024, 7);
    src.end(payload);
    assert.deepEqual(await read(body, 400), payload);
  });

  it("is not cut while bytes keep coming, each gap shorter than the idle time", async () => {
    const src = new PassThrough();
    const body = new ProgressTimedBody(src, { idleMs: 200, onTimeout: (ms) => new Cut(ms) });
    const feeding = (async () => {
      for (let i = 0; i < 8; i++) {
        src.write(Buffer.from([i]));
        await sleep(80);
      }
      src.end();
    })();
    assert.deepEqual([...(await read(body))], [0, 1, 2, 3, 4, 5, 6, 7]);
    await feeding;
  });

  it("is cut at its end-by time even while bytes trickle in", async () => {
    const src = new PassThrough();
    const body = new ProgressTimedBody(src, {
      endBy: Date.now() + 300,
      onTimeout: (ms) => new Cut(ms),
    });
    const timer = setInterval(() => src.write(" "), 50);
    try {
      await assert.rejects(read(body), (err) => err instanceof Cut);
    } finally {
      clearInterval(timer);
    }
  });

  it("lets its source go when the reader abandons it early, and keeps a finished one", async () => {
    const src = new PassThrough();
    const body = new ProgressTimedBody(src, { idleMs: 1_000, onTimeout: (ms) => new Cut(ms) });
    src.write("some");
    body.destroy();
    await sleep(10);
    assert.ok(src.destroyed);

    const done = new PassThrough();
    const whole = new ProgressTimedBody(done, { idleMs: 1_000, onTimeout: (ms) => new Cut(ms) });
    done.end("all of it");
    assert.equal((await read(whole)).toString(), "all of it");
    assert.equal(done.readableEnded, true);
  });
});

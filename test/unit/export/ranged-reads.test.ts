import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { buffer } from "node:stream/consumers";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Readable } from "node:stream";
import { RangePermits, rangedBody, readRange } from "../../../src/export/ranged-reads.ts";
import type { ByteRange, ObjectSource } from "../../../src/export/ranged-reads.ts";
import {
  DestinationError,
  LakefsAuthError,
  LeaseLostError,
  SourceReadError,
  isSourceFailure,
} from "../../../src/errors.ts";

const tick = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Whether every permit is free: taking them all at once resolves without waiting. */
async function allFree(permits: RangePermits, n: number): Promise<boolean> {
  const ac = new AbortController();
  const taken = Promise.all(Array.from({ length: n }, () => permits.take(ac.signal)));
  const timer = setTimeout(() => ac.abort(), 200);
  try {
    const releases = await taken;
    for (const r of releases) r();
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

describe("rangedBody: an object's bytes read by parallel ranges", () => {
  it("gives the object's bytes in order whatever the sizes, delays and failed attempts, within the parallelism and the permits, and returns every permit", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          size: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 60_000 })),
          rangeBytes: fc.integer({ min: 1, max: 9_000 }),
          parallel: fc.integer({ min: 1, max: 6 }),
          permits: fc.integer({ min: 1, max: 8 }),
          bodies: fc.integer({ min: 1, max: 3 }),
          seed: fc.integer(),
        }),
        async ({ size, rangeBytes, parallel, permits: n, bodies, seed }) => {
          fc.pre(size === 0 || Math.ceil(size / rangeBytes) <= 200);
          let state = seed >>> 0;
          const random = () => ((state = (state * 1103515245 + 12345) >>> 0) % 1000) / 1000;
          const permits = new RangePermits(n);
          let reading = 0;
          let peak = 0;
          const perBody: number[] = [];
          const run = async (b: number) => {
            const source = randomBytes(size);
            perBody[b] = 0;
            let mine = 0;
            const read = async (range: ByteRange) => {
              reading++;
              mine++;
              peak = Math.max(peak, reading);
              perBody[b] = Math.max(perBody[b]!, mine);
              try {
                // Attempts fail now and then; the caller's retry reads the same range again.
                for (;;) {
                  await tick(Math.floor(random() * 3));
                  if (random() >= 0.2) break;
                }
                return Buffer.from(source.subarray(range.start, range.end));
              } finally {
                reading--;
                mine--;
              }
            };
            const body = rangedBody({ size, rangeBytes, parallel, permits, read });
            assert.ok((await buffer(body)).equals(source));
          };
          await Promise.all(Array.from({ length: bodies }, (_, b) => run(b)));
          assert.ok(peak <= n, `${peak} reads at once with ${n} permits`);
          for (const p of perBody) assert.ok(p <= parallel, `${p} reads of one body > ${parallel}`);
          assert.ok(await allFree(permits, n), "a permit was never returned");
        },
      ),
      { numRuns: 150 },
    );
  });

  it("a range that keeps failing fails the stream, and its permits come back", async () => {
    const permits = new RangePermits(3);
    const body = rangedBody({
      size: 100,
      rangeBytes: 10,
      parallel: 3,
      permits,
      read: async (range) => {
        await tick(1);
        if (range.start === 30) throw new Error("gone for good");
        return Buffer.alloc(range.end - range.start);
      },
    });
    await assert.rejects(buffer(body), /gone for good/);
    await tick(20);
    assert.ok(await allFree(permits, 3));
  });

  it("destroying the stream aborts the reads in flight and returns their permits", async () => {
    const permits = new RangePermits(4);
    const aborted: number[] = [];
    const body = rangedBody({
      size: 1000,
      rangeBytes: 10,
      parallel: 4,
      permits,
      read: (range, signal) =>
        new Promise<Buffer>((resolve, reject) => {
          if (range.start === 0) return resolve(Buffer.alloc(10));
          signal.addEventListener("abort", () => {
            aborted.push(range.start);
            reject(new Error("aborted"));
          });
        }),
    });
    for await (const chunk of body) {
      assert.equal((chunk as Buffer).length, 10);
      break; // a consumer that lets go after the first range
    }
    await tick(20);
    assert.deepEqual(
      aborted.sort((a, b) => a - b),
      // The fifth range waits for the permit the first range holds until the reader asks again.
      [10, 20, 30],
    );
    assert.ok(await allFree(permits, 4));
  });

  // Found by a review: a permit went back when a range was pushed into the stream's buffer,
  // not when the reader took it, so slow readers held more ranges than the permits allow.
  it("regression: ranges read but not yet taken by slow readers never exceed the permits", async () => {
    const permits = new RangePermits(2);
    let readNotTaken = 0;
    let peak = 0;
    const bodies = Array.from({ length: 4 }, () =>
      rangedBody({
        size: 100,
        rangeBytes: 10,
        parallel: 3,
        permits,
        read: async (range) => {
          await tick(1);
          readNotTaken++;
          peak = Math.max(peak, readNotTaken);
          return Buffer.alloc(range.end - range.start, range.start);
        },
      }),
    );
    await Promise.all(
      bodies.map(async (body) => {
        for await (const chunk of body) {
          readNotTaken--;
          assert.equal((chunk as Buffer).length, 10);
          await tick(3); // a slow reader
        }
      }),
    );
    assert.ok(peak <= 2, `${peak} ranges read and not taken with 2 permits`);
    assert.ok(await allFree(permits, 2));
  });
});

/** A source that answers every open with `contentRange` and `bytes`. */
function answering(contentRange: string | undefined, bytes: Buffer): ObjectSource {
  return {
    via: "lakefs",
    open: () => Promise.resolve({ body: Readable.from([bytes]), contentRange }),
  };
}

describe("readRange: a range is accepted only as the bytes it asked for", () => {
  const range = { start: 48, end: 64 };
  const sixteen = Buffer.alloc(16, 7);

  it("takes the range when Content-Range names exactly it, of the recorded size", async () => {
    const got = await readRange(answering("bytes 48-63/100", sixteen), range, 100, "p");
    assert.ok(got.equals(sixteen));
  });

  // Found by a review: the length alone was checked, so any 16 bytes passed.
  for (const [name, contentRange] of [
    ["regression: another range of the right length (shifted by one)", "bytes 49-64/100"],
    ["regression: a longer object than lakeFS records (changed in place)", "bytes 48-63/103"],
    ["a whole-object answer to a Range request (no Content-Range)", undefined],
  ] as const) {
    it(`refuses ${name}, for good`, async () => {
      const err = await readRange(answering(contentRange, sixteen), range, 100, "p").then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof SourceReadError, String(err));
      assert.equal(err.retriable, false);
    });
  }

  it("a short body is retriable (the range is read again)", async () => {
    const err = await readRange(
      answering("bytes 48-63/100", Buffer.alloc(9)),
      range,
      100,
      "p",
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof SourceReadError);
    assert.equal(err.retriable, true);
  });
});

// Found by a review: lakeFS refusing the credentials mid-read became a retriable destination
// error, because only some source errors were kept as they are.
describe("isSourceFailure: a body's own failure keeps its code", () => {
  it("regression: lakeFS's auth refusal is the source's, and stays permanent", () => {
    const auth = new LakefsAuthError("lakeFS rejected the credentials");
    assert.ok(isSourceFailure(auth));
    assert.equal(auth.retriable, false);
  });
  it("the destination's own errors and the fence are not", () => {
    assert.ok(!isSourceFailure(new DestinationError("refused", false)));
    assert.ok(!isSourceFailure(new LeaseLostError("lost")));
    assert.ok(!isSourceFailure(new Error("plain")));
  });
});

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { buffer } from "node:stream/consumers";
import { describe, it } from "node:test";
import fc from "fast-check";
import { RangePermits, rangedBody } from "../../../src/export/ranged-reads.ts";
import type { ByteRange } from "../../../src/export/ranged-reads.ts";

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
      [10, 20, 30, 40],
    );
    assert.ok(await allFree(permits, 4));
  });
});

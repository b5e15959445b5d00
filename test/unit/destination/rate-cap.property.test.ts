import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { RateCap } from "../../../src/destination/rate-cap.ts";

/** A clock that moves only when the cap sleeps: what it lets through is decided by rates alone. */
function fakeClock() {
  let t = 0;
  return {
    now: () => t,
    sleep: (ms: number) => {
      t += ms;
      return Promise.resolve();
    },
  };
}

describe("group-wide write caps (properties)", () => {
  it("within any window, requests and bytes stay within the daemon's share plus one second's burst", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1_000, max: 1_000_000 }),
        fc.integer({ min: 1, max: 5 }),
        fc.array(fc.integer({ min: 0, max: 3_000_000 }), { minLength: 1, maxLength: 120 }),
        async (rps, bps, members, sizes) => {
          const clock = fakeClock();
          const cap = new RateCap({
            requestsPerSecond: rps,
            bytesPerSecond: bps,
            share: () => members,
            ...clock,
          });
          const taken: { at: number; bytes: number }[] = [];
          for (const bytes of sizes) {
            await cap.take(bytes);
            taken.push({ at: clock.now(), bytes });
          }
          const share = { requests: rps / members, bytes: bps / members };
          const sums = [0];
          for (const t of taken) sums.push(sums.at(-1)! + t.bytes);
          for (let i = 0; i < taken.length; i++) {
            for (let j = i; j < taken.length; j++) {
              const seconds = (taken[j]!.at - taken[i]!.at) / 1000;
              const requests = j - i + 1;
              // Sleeps round up to whole milliseconds: a request's worth of slack per step.
              assert.ok(
                requests <= share.requests * seconds + Math.max(share.requests, 1) + 1,
                `${requests} requests in ${seconds} s at ${share.requests}/s`,
              );
              // A body bigger than a second's worth goes alone once the bucket is full, so
              // the bytes before the window's last request are what the rate bounds.
              const before = sums[j]! - sums[i]!;
              assert.ok(
                before <= share.bytes * (seconds + 1) + share.bytes,
                `${before} bytes in ${seconds} s at ${share.bytes}/s`,
              );
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("no cap: nothing waits", async () => {
    const clock = fakeClock();
    const cap = new RateCap({ requestsPerSecond: 0, bytesPerSecond: 0, share: () => 3, ...clock });
    for (let i = 0; i < 1000; i++) await cap.take(1 << 30);
    assert.equal(clock.now(), 0);
  });

  it("more members, a smaller share: the same requests take proportionally longer", async () => {
    const time = async (members: number) => {
      const clock = fakeClock();
      const cap = new RateCap({
        requestsPerSecond: 100,
        bytesPerSecond: 0,
        share: () => members,
        ...clock,
      });
      for (let i = 0; i < 500; i++) await cap.take(0);
      return clock.now();
    };
    const one = await time(1);
    const three = await time(3);
    assert.ok(one >= 3_900 && one <= 4_100, `${one} ms for 500 at 100/s with a second's burst`);
    assert.ok(three >= 3 * one * 0.9, `${three} ms with three members against ${one} ms`);
  });
});

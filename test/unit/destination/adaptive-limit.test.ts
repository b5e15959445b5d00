import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { AdaptiveLimit } from "../../../src/destination/adaptive-limit.ts";
import type { RequestOutcome, Slot } from "../../../src/destination/adaptive-limit.ts";
import { AbortedError } from "../../../src/errors.ts";

/** Lets every settled acquisition resume. */
const settle = () => new Promise<void>((r) => setImmediate(r));

type Action =
  | { kind: "request" }
  | { kind: "answer"; pick: number; outcome: RequestOutcome }
  | { kind: "abort"; pick: number };

const actions = fc.array(
  fc.oneof(
    { weight: 3, arbitrary: fc.constant<Action>({ kind: "request" }) },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant("answer" as const),
        pick: fc.nat(),
        outcome: fc.constantFrom<RequestOutcome>("ok", "ok", "ok", "throttled", "other"),
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("abort" as const), pick: fc.nat() }) },
  ),
  { maxLength: 120 },
);

describe("AdaptiveLimit: additive increase, multiplicative decrease of requests in flight", () => {
  it("never starts a request beyond the limit, halves at most once per generation, keeps within [min, ceiling), and serves waiters first come first served", async () => {
    await fc.assert(
      fc.asyncProperty(actions, fc.integer({ min: 1, max: 4 }), async (script, min) => {
        const limit = new AdaptiveLimit({ min });
        let ceiling = 0;
        const held: { slot: Slot; generation: number }[] = [];
        const waiting: { id: number; abort: AbortController; got?: Slot; failed?: unknown }[] = [];
        const granted: number[] = [];
        let generation = 0;
        let nextId = 0;
        const collect = () => {
          for (let i = 0; i < waiting.length;) {
            const w = waiting[i]!;
            if (w.got) {
              granted.push(w.id);
              held.push({ slot: w.got, generation: limit.generation });
              waiting.splice(i, 1);
            } else if (w.failed) waiting.splice(i, 1);
            else i++;
          }
        };
        for (const a of script) {
          if (a.kind === "request") {
            const w: (typeof waiting)[number] = { id: nextId++, abort: new AbortController() };
            waiting.push(w);
            limit.acquire(w.abort.signal).then(
              (s) => {
                // Started: within the limit there was when it was granted.
                const l = limit.limit;
                assert.ok(l === undefined || limit.inFlight <= l, `${limit.inFlight} > ${l}`);
                w.got = s;
              },
              (err: unknown) => {
                assert.ok(err instanceof AbortedError);
                w.failed = err;
              },
            );
          } else if (a.kind === "abort" && waiting.length > 0) {
            waiting[a.pick % waiting.length]!.abort.abort();
          } else if (a.kind === "answer" && held.length > 0) {
            const [h] = held.splice(a.pick % held.length, 1);
            const before = limit.limit;
            if (a.outcome === "throttled") ceiling = Math.max(ceiling, limit.inFlight);
            // The answer to a request the slot's task sent, then the task ends.
            limit.observe(a.outcome, h!.generation);
            const after = limit.limit;
            const inFlight = limit.inFlight;
            h!.slot.release();
            if (a.outcome === "throttled") {
              const overLimit = before !== undefined && inFlight + 1 > before;
              if (h!.generation === generation && !overLimit) {
                // A throttle of this generation: halved (or to min), and a new generation.
                const base = before ?? Math.max(inFlight, 1);
                assert.equal(after, Math.max(min, Math.floor(base / 2)));
                generation++;
              } else assert.equal(after, before, "an older generation's answer, or over the limit");
            } else if (a.outcome === "other") assert.equal(after, before);
            else if (before !== undefined)
              assert.ok(after === undefined || after === before || after === before + 1);
            else assert.equal(after, undefined);
            if (after !== undefined) {
              assert.ok(after >= min);
              assert.ok(after === min || after < ceiling, `${after} not below ${ceiling}`);
            }
          }
          await settle();
          collect();
        }
        // Everything held is answered: no waiter is left behind.
        while (held.length > 0 || waiting.length > 0) {
          assert.ok(held.length > 0, `${waiting.length} waiters and nothing in flight`);
          const h = held.shift()!;
          limit.observe("ok", h.generation);
          h.slot.release();
          await settle();
          collect();
        }
        assert.equal(limit.inFlight, 0);
        // First come, first served: grants in request order among those never aborted.
        assert.deepEqual(
          granted,
          [...granted].sort((x, y) => x - y),
        );
      }),
      { numRuns: 200 },
    );
  });

  it("recovers: after a storm, enough successes lift the limit", async () => {
    const limit = new AdaptiveLimit();
    const slots = await Promise.all(Array.from({ length: 16 }, () => limit.acquire()));
    const sent = limit.generation;
    limit.observe("throttled", sent);
    assert.equal(limit.limit, 8);
    limit.observe("throttled", sent); // same generation: no second halving
    assert.equal(limit.limit, 8);
    for (const s of slots) {
      limit.observe("ok", limit.generation);
      s.release();
    }
    let rounds = 0;
    while (limit.limit !== undefined) {
      const s = await limit.acquire();
      limit.observe("ok", limit.generation);
      s.release();
      assert.ok(++rounds < 200, "the limit never lifted");
    }
    // Grew back one at a time: 8 → 16 takes 8 + 9 + … + 15 successes, 16 of them above.
    assert.equal(rounds, 8 + 9 + 10 + 11 + 12 + 13 + 14 + 15 - 16);
  });

  // Found by a review: 32 tasks let in before the first cut kept retrying into 503s, each
  // retry a request of the new generation, and the limit fell 16 → 8 → 4 with 32 still in flight.
  it("regression: retries of tasks let in before a cut do not cut again", async () => {
    const limit = new AdaptiveLimit();
    const slots = await Promise.all(Array.from({ length: 32 }, () => limit.acquire()));
    for (let round = 0; round < 3; round++)
      for (let i = 0; i < 32; i++) limit.observe("throttled", limit.generation);
    assert.equal(limit.limit, 16);
    for (const s of slots.splice(0, 16)) s.release();
    // Now within the limit: a throttle is new pressure again.
    limit.observe("throttled", limit.generation);
    assert.equal(limit.limit, 8);
    for (const s of slots) s.release();
  });

  it("a throttle while limited halves the limit, not what is in flight", async () => {
    const limit = new AdaptiveLimit();
    const first = await Promise.all(Array.from({ length: 8 }, () => limit.acquire()));
    limit.observe("throttled", limit.generation);
    assert.equal(limit.limit, 4);
    for (const s of first) s.release();
    const second = await limit.acquire();
    limit.observe("throttled", limit.generation);
    second.release();
    assert.equal(limit.limit, 2);
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { RequestTimeoutError } from "../../../src/errors.ts";
import {
  MAX_ESCALATION,
  assertDeadlines,
  defaultDeadlines,
  escalation,
  firstByteDeadline,
  requestTimeout,
} from "../../../src/http/deadlines.ts";

const MiB = 1024 * 1024;

describe("request deadlines", () => {
  it("give a small request the 2 s S3 advises, then 4 s, 8 s and 16 s on its retries", () => {
    const d = defaultDeadlines;
    assert.deepEqual(
      [1, 2, 3, 4, 5, 12].map((attempt) => firstByteDeadline(d, {}, attempt)),
      [2_000, 4_000, 8_000, 16_000, 16_000, 16_000],
    );
  });

  it("grow with the bytes a server copies and the entries it works through", () => {
    const d = { ...defaultDeadlines, firstByteMs: 1_000, workBytesPerSecond: 8 * MiB };
    assert.equal(firstByteDeadline(d, { bytes: 512 * MiB }), 1_000 + 64_000);
    assert.equal(firstByteDeadline(d, { entries: 1000 }), 1_000 + 1000 * d.workMsPerEntry);
    assert.equal(
      firstByteDeadline(d, { bytes: 8 * MiB, entries: 10 }, 2),
      2 * (1_000 + 1_000 + 200),
    );
  });

  it("never shrink with more work or a later attempt", () => {
    fc.assert(
      fc.property(
        fc.nat(10 * 1024 * MiB),
        fc.nat(10 * 1024 * MiB),
        fc.nat(10_000),
        fc.integer({ min: 1, max: 20 }),
        (a, b, entries, attempt) => {
          const d = defaultDeadlines;
          const [lo, hi] = a <= b ? [a, b] : [b, a];
          const ms = firstByteDeadline(d, { bytes: lo, entries }, attempt);
          assert.ok(ms <= firstByteDeadline(d, { bytes: hi, entries }, attempt));
          assert.ok(ms <= firstByteDeadline(d, { bytes: lo, entries }, attempt + 1));
          assert.ok(ms >= d.firstByteMs);
          assert.ok(escalation(attempt) <= MAX_ESCALATION);
        },
      ),
    );
  });

  it("treat a nonsense attempt number as the first", () => {
    for (const attempt of [0, -3, Number.NaN, Number.POSITIVE_INFINITY])
      assert.equal(escalation(attempt), 1);
  });

  it("cut requests fail with a retriable coded error that says what they waited for", () => {
    const err = requestTimeout("S3 request HEAD /b/k", "first byte", 2_000);
    assert.ok(err instanceof RequestTimeoutError);
    assert.equal(err.code, "LM_REQUEST_TIMEOUT");
    assert.equal(err.retriable, true);
    assert.equal(
      err.message,
      "S3 request HEAD /b/k timed out after 2.0 s waiting for the first byte of the answer",
    );
    assert.match(
      requestTimeout("x", "request body", 15_000).message,
      /after 15 s waiting for the server to take more of the request body$/,
    );
  });

  it("refuse a deadline that is not a positive number, naming its key", () => {
    assert.throws(
      () => assertDeadlines({ ...defaultDeadlines, idleMs: 0 }, "deadlines"),
      /deadlines\.idleMs must be a positive number, got 0/,
    );
  });
});

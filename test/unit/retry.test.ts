import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LakefsAuthError, LakefsHttpError } from "../../src/errors.ts";
import { withRetry } from "../../src/retry.ts";

const fast = { minTimeoutMs: 1, maxTimeoutMs: 2, retries: 4, maxRetryTimeMs: 5_000 };

describe("withRetry", () => {
  it("retries retriable failures until the operation succeeds", async () => {
    let calls = 0;
    // Injected fault: a 503 twice, then success.
    const result = await withRetry(
      () => {
        calls++;
        if (calls < 3) return Promise.reject(new LakefsHttpError("busy", 503));
        return Promise.resolve("ok");
      },
      { operation: "flaky", policy: fast },
    );
    assert.equal(result, "ok");
    assert.equal(calls, 3);
  });

  it("fails at once on a permanent error", async () => {
    let calls = 0;
    await assert.rejects(
      withRetry(
        () => {
          calls++;
          return Promise.reject(new LakefsAuthError("bad key"));
        },
        { operation: "auth", policy: fast },
      ),
      { code: "LM_LAKEFS_AUTH" },
    );
    assert.equal(calls, 1);
  });

  it("gives up after the configured retries with the last error", async () => {
    let calls = 0;
    await assert.rejects(
      withRetry(
        () => {
          calls++;
          return Promise.reject(new LakefsHttpError("still busy", 500));
        },
        { operation: "down", policy: { ...fast, retries: 2 } },
      ),
      { code: "LM_LAKEFS_HTTP", status: 500 },
    );
    assert.equal(calls, 3);
  });

  it("stops with LM_ABORTED once its signal is aborted", async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(
      withRetry(() => Promise.resolve(1), { operation: "x", signal: ac.signal }),
      {
        code: "LM_ABORTED",
      },
    );
  });
});

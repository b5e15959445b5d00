import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ApiError } from "@google-cloud/storage";
import { toDestinationError } from "../../../src/gcs/gcs-error.ts";
import { GcsAnswer } from "../../../src/gcs/http.ts";

describe("GCS errors", () => {
  it("classifies answers by the JSON API's reason and status into neutral reasons", () => {
    const cases: [unknown, boolean, string][] = [
      [new GcsAnswer(429, "rateLimitExceeded", "slow"), true, "SlowDown"],
      [new GcsAnswer(503, "backendError", "x"), true, "Unavailable"],
      [new GcsAnswer(500, "", "x"), true, "Unavailable"],
      [new GcsAnswer(403, "forbidden", "x"), false, "AccessDenied"],
      [new GcsAnswer(401, "required", "x"), false, "AuthenticationFailed"],
      [new GcsAnswer(412, "conditionNotMet", "x"), false, "PreconditionFailed"],
      [new GcsAnswer(400, "invalid", "x"), false, "InvalidRequest"],
      [new GcsAnswer(408, "", "x"), true, "Timeout"],
      [Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }), true, "Network"],
      [new TypeError("bad header"), false, "InvalidRequest"],
    ];
    for (const [err, retriable, reason] of cases) {
      const e = toDestinationError(err, "write x");
      assert.equal(e.code, "LM_DESTINATION");
      assert.equal(e.retriable, retriable, e.message);
      assert.equal(e.reason, reason, e.message);
    }
    const lib = Object.assign(new ApiError("no"), { code: 403, errors: [{ reason: "forbidden" }] });
    assert.equal(toDestinationError(lib, "x").reason, "AccessDenied");
  });

  it("reads a 404 as the operation means it: the object, or the bucket", () => {
    const notFound = new GcsAnswer(404, "notFound", "Not Found");
    assert.equal(toDestinationError(notFound, "copy").reason, "NotFound");
    const bucket = toDestinationError(notFound, "list", "ContainerNotFound");
    assert.equal(bucket.reason, "ContainerNotFound");
    assert.equal(bucket.retriable, false);
    assert.equal(bucket.storeCode, "notFound");
    assert.equal(bucket.httpStatus, 404);
  });
});

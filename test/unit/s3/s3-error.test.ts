import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { S3ServiceException } from "@aws-sdk/client-s3";
import { toDestinationError } from "../../../src/s3/s3-error.ts";

function s3Error(name: string, status: number): S3ServiceException {
  return new S3ServiceException({
    name,
    $fault: status >= 500 ? "server" : "client",
    $metadata: { httpStatusCode: status },
    message: name,
  });
}

describe("S3 errors", () => {
  it("classifies failures by S3's code and status into neutral reasons, never by message text", () => {
    const cases: [unknown, boolean, string | undefined, string][] = [
      [s3Error("SlowDown", 503), true, "SlowDown", "SlowDown"],
      [s3Error("InternalError", 200), true, "InternalError", "Unavailable"],
      [s3Error("Unknown", 503), true, "Unknown", "Unavailable"],
      [s3Error("AccessDenied", 403), false, "AccessDenied", "AccessDenied"],
      [s3Error("NoSuchBucket", 404), false, "NoSuchBucket", "ContainerNotFound"],
      [s3Error("NoSuchKey", 404), false, "NoSuchKey", "NotFound"],
      [s3Error("PreconditionFailed", 412), false, "PreconditionFailed", "PreconditionFailed"],
      [s3Error("MetadataTooLarge", 400), false, "MetadataTooLarge", "InvalidRequest"],
      [
        Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }),
        true,
        undefined,
        "Network",
      ],
      [
        new TypeError('Invalid character in header content ["x-amz-meta-k"]'),
        false,
        undefined,
        "InvalidRequest",
      ],
    ];
    for (const [err, retriable, storeCode, reason] of cases) {
      const e = toDestinationError(err, "copy x");
      assert.equal(e.code, "LM_DESTINATION");
      assert.equal(e.retriable, retriable, e.message);
      assert.equal(e.storeCode, storeCode);
      assert.equal(e.reason, reason, e.message);
    }
    assert.equal(toDestinationError(s3Error("NoSuchKey", 404), "x").httpStatus, 404);
  });
});

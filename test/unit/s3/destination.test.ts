import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { S3ServiceException } from "@aws-sdk/client-s3";
import { S3_LIMITS, partSizeFor, toDestinationError } from "../../../src/s3/destination.ts";

const MiB = 1024 * 1024;

function s3Error(name: string, status: number): S3ServiceException {
  return new S3ServiceException({
    name,
    $fault: status >= 500 ? "server" : "client",
    $metadata: { httpStatusCode: status },
    message: name,
  });
}

describe("S3 destination", () => {
  it("picks part sizes that keep any object within S3's 10,000 parts", () => {
    assert.equal(partSizeFor(100 * MiB, 16 * MiB), 16 * MiB);
    for (const size of [160 * 1024 * MiB, 1024 * 1024 * MiB, S3_LIMITS.maxObjectBytes]) {
      const part = partSizeFor(size, 16 * MiB);
      assert.ok(Math.ceil(size / part) <= S3_LIMITS.maxParts, `${size} in ${part}-byte parts`);
      assert.equal(part % MiB, 0);
    }
    assert.equal(partSizeFor(10 * MiB, 1), S3_LIMITS.minPartBytes, "never below S3's 5 MiB");
  });

  it("classifies failures by S3's code and status, never by message text", () => {
    const cases: [unknown, boolean, string | undefined][] = [
      [s3Error("SlowDown", 503), true, "SlowDown"],
      [s3Error("InternalError", 200), true, "InternalError"],
      [s3Error("Unknown", 503), true, "Unknown"],
      [s3Error("AccessDenied", 403), false, "AccessDenied"],
      [s3Error("NoSuchBucket", 404), false, "NoSuchBucket"],
      [s3Error("MetadataTooLarge", 400), false, "MetadataTooLarge"],
      [Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }), true, undefined],
      [new TypeError('Invalid character in header content ["x-amz-meta-k"]'), false, undefined],
    ];
    for (const [err, retriable, s3Code] of cases) {
      const e = toDestinationError(err, "copy x");
      assert.equal(e.code, "LM_DESTINATION");
      assert.equal(e.retriable, retriable, e.message);
      assert.equal(e.s3Code, s3Code);
    }
    assert.equal(toDestinationError(s3Error("NoSuchKey", 404), "x").httpStatus, 404);
  });
});

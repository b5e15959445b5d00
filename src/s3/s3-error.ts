import { S3ServiceException } from "@aws-sdk/client-s3";
import { DestinationError, errorMessage } from "../errors.ts";

/** S3 error codes that say the same request may succeed later, whatever the HTTP status. */
const TRANSIENT_CODES = new Set([
  "SlowDown",
  "InternalError",
  "ServiceUnavailable",
  "RequestTimeout",
  "RequestTimeTooSkewed",
  "Throttling",
  "ThrottlingException",
  "OperationAborted",
  // A multipart upload that is gone: most often a lost answer to CompleteMultipartUpload whose
  // retry finds it completed. Redoing the whole upload is always right.
  "NoSuchUpload",
]);

/** An S3 error answer read without the SDK (the lean request path): S3's code, the HTTP status. */
export class S3Answer extends Error {
  readonly s3Code: string;
  readonly status: number;
  constructor(s3Code: string, status: number, message: string) {
    super(message);
    this.name = s3Code;
    this.s3Code = s3Code;
    this.status = status;
  }
}

const transient = (code: string, status: number) =>
  TRANSIENT_CODES.has(code) || status === 0 || status === 429 || status >= 500;

/**
 * An S3 SDK failure as a DestinationError carrying S3's code and status. Retriable: throttling,
 * 5xx, and transport failures (resets, timeouts, cut bodies). Errors raised before a request is
 * sent (a value Node refuses in a header) are TypeErrors or RangeErrors: never retried.
 */
export function toDestinationError(err: unknown, what: string): DestinationError {
  if (err instanceof DestinationError) return err;
  if (err instanceof S3ServiceException || err instanceof S3Answer) {
    const status = err instanceof S3Answer ? err.status : (err.$metadata.httpStatusCode ?? 0);
    return new DestinationError(
      `${what}: ${err.name} (${status}) ${err.message}`,
      transient(err.name, status),
      { cause: err, s3Code: err.name, httpStatus: status },
    );
  }
  const retriable = !(err instanceof TypeError || err instanceof RangeError);
  return new DestinationError(`${what}: ${errorMessage(err)}`, retriable, { cause: err });
}

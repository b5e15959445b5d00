import { S3ServiceException } from "@aws-sdk/client-s3";
import { DestinationError, RequestTimeoutError, errorMessage } from "../errors.ts";
import type { DestinationReason } from "../errors.ts";

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

/**
 * S3's error codes (the S3 API reference's "List of error codes") by the neutral reason the
 * rest of the project decides on. A code not named here is classified by its HTTP status.
 */
const REASON_OF_CODE: Readonly<Record<string, DestinationReason>> = {
  NoSuchKey: "NotFound",
  NotFound: "NotFound",
  NoSuchBucket: "ContainerNotFound",
  PreconditionFailed: "PreconditionFailed",
  ConditionalRequestConflict: "Conflict",
  AccessDenied: "AccessDenied",
  AllAccessDisabled: "AccessDenied",
  InvalidAccessKeyId: "AuthenticationFailed",
  AuthorizationHeaderMalformed: "AuthenticationFailed",
  PermanentRedirect: "WrongEndpoint",
  SlowDown: "SlowDown",
  Throttling: "SlowDown",
  ThrottlingException: "SlowDown",
  RequestTimeout: "Timeout",
  InternalError: "Unavailable",
  ServiceUnavailable: "Unavailable",
  OperationAborted: "Unavailable",
  NoSuchUpload: "Unavailable",
  RequestTimeTooSkewed: "Unavailable",
};

function reasonOfStatus(status: number): DestinationReason {
  if (status === 0) return "Network";
  if (status === 404) return "NotFound";
  if (status === 412) return "PreconditionFailed";
  if (status === 409) return "Conflict";
  if (status === 429) return "SlowDown";
  if (status >= 500) return "Unavailable";
  if (status === 400) return "InvalidRequest";
  return "Unknown";
}

/** The neutral reason of an S3 answer: by its code when S3 named one, else by its status. */
export function s3Reason(s3Code: string, status: number): DestinationReason {
  return REASON_OF_CODE[s3Code] ?? reasonOfStatus(status);
}

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

/** The HTTP status of an S3 SDK or lean-path error, when there was an answer. */
export function s3Status(err: unknown): number | undefined {
  if (err instanceof S3Answer) return err.status;
  if (err instanceof S3ServiceException) return err.$metadata.httpStatusCode;
  return undefined;
}

/**
 * An S3 SDK failure as a DestinationError carrying its neutral reason and S3's own code and
 * status. Retriable: throttling, 5xx, and transport failures (resets, timeouts, cut bodies).
 * Errors raised before a request is sent (a value Node refuses in a header) are TypeErrors or
 * RangeErrors: never retried.
 */
export function toDestinationError(err: unknown, what: string): DestinationError {
  if (err instanceof DestinationError) return err;
  if (err instanceof S3ServiceException || err instanceof S3Answer) {
    const status = s3Status(err) ?? 0;
    return new DestinationError(
      `${what}: ${err.name} (${status}) ${err.message}`,
      transient(err.name, status),
      { cause: err, reason: s3Reason(err.name, status), storeCode: err.name, httpStatus: status },
    );
  }
  const programmer = err instanceof TypeError || err instanceof RangeError;
  const reason: DestinationReason = programmer
    ? "InvalidRequest"
    : err instanceof RequestTimeoutError
      ? "Timeout"
      : "Network";
  return new DestinationError(`${what}: ${errorMessage(err)}`, !programmer, {
    cause: err,
    reason,
  });
}

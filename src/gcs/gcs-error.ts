import { DestinationError, RequestTimeoutError, errorMessage } from "../errors.ts";
import type { DestinationReason } from "../errors.ts";
import { GcsAnswer } from "./http.ts";

/**
 * Cloud Storage's JSON API error reasons ("HTTP status and error codes for JSON" in its
 * documentation) by the neutral reason the project decides on; a reason not named here is
 * classified by the HTTP status.
 */
const REASON_OF: Readonly<Record<string, DestinationReason>> = {
  conditionNotMet: "PreconditionFailed",
  conflict: "Conflict",
  forbidden: "AccessDenied",
  insufficientPermissions: "AccessDenied",
  accountDisabled: "AccessDenied",
  authError: "AuthenticationFailed",
  required: "AuthenticationFailed",
  rateLimitExceeded: "SlowDown",
  userRateLimitExceeded: "SlowDown",
  backendError: "Unavailable",
  internalError: "Unavailable",
};

function reasonOfStatus(status: number, notFound: DestinationReason): DestinationReason {
  if (status === 0) return "Network";
  if (status === 404) return notFound;
  if (status === 412) return "PreconditionFailed";
  if (status === 409) return "Conflict";
  if (status === 401) return "AuthenticationFailed";
  if (status === 403) return "AccessDenied";
  if (status === 429) return "SlowDown";
  if (status === 408) return "Timeout";
  if (status >= 500) return "Unavailable";
  if (status === 400) return "InvalidRequest";
  return "Unknown";
}

/** The status and reason of a store answer: ours (GcsAnswer) or the client library's ApiError. */
export function gcsAnswer(err: unknown): { status: number; reason: string } | undefined {
  if (err instanceof GcsAnswer) return { status: err.status, reason: err.reason };
  if (err instanceof Error && typeof (err as { code?: unknown }).code === "number") {
    const e = err as Error & { code: number; errors?: { reason?: string }[] };
    return { status: e.code, reason: e.errors?.[0]?.reason ?? "" };
  }
  return undefined;
}

export function gcsStatus(err: unknown): number | undefined {
  return gcsAnswer(err)?.status;
}

/**
 * A Cloud Storage failure as a DestinationError. A 404 means what the operation makes it mean:
 * a missing object, or (for a listing or a write, which need no object) a missing bucket.
 * Retriable: 408, 429, 5xx and transport failures. TypeErrors and RangeErrors raised before a
 * request is sent are programmer mistakes, never retried.
 */
export function toDestinationError(
  err: unknown,
  what: string,
  notFound: DestinationReason = "NotFound",
): DestinationError {
  if (err instanceof DestinationError) return err;
  const answer = gcsAnswer(err);
  if (answer) {
    const { status, reason: storeReason } = answer;
    const reason =
      status === 404 ? notFound : (REASON_OF[storeReason] ?? reasonOfStatus(status, notFound));
    const retriable = status === 408 || status === 429 || status >= 500;
    return new DestinationError(
      `${what}: ${storeReason || "error"} (${status}) ${errorMessage(err)}`,
      retriable,
      { cause: err, reason, storeCode: storeReason || undefined, httpStatus: status },
    );
  }
  const programmer = err instanceof TypeError || err instanceof RangeError;
  const timeout =
    err instanceof RequestTimeoutError ||
    /Timeout/i.test(String((err as { code?: unknown })?.code));
  const reason: DestinationReason = programmer ? "InvalidRequest" : timeout ? "Timeout" : "Network";
  return new DestinationError(`${what}: ${errorMessage(err)}`, !programmer, { cause: err, reason });
}

import { isRestError } from "@azure/storage-blob";
import { DestinationError, RequestTimeoutError, errorMessage } from "../errors.ts";
import type { DestinationReason } from "../errors.ts";

/**
 * Azure Blob Storage's error codes (its REST reference's "Blob Storage error codes" and
 * "Common REST API error codes") by the neutral reason the rest of the project decides on. A
 * code not named here is classified by its HTTP status.
 */
const REASON_OF_CODE: Readonly<Record<string, DestinationReason>> = {
  BlobNotFound: "NotFound",
  ResourceNotFound: "NotFound",
  ContainerNotFound: "ContainerNotFound",
  ContainerBeingDeleted: "ContainerNotFound",
  ConditionNotMet: "PreconditionFailed",
  TargetConditionNotMet: "PreconditionFailed",
  BlobAlreadyExists: "PreconditionFailed",
  LeaseIdMissing: "Conflict",
  AuthorizationFailure: "AccessDenied",
  AuthorizationPermissionMismatch: "AccessDenied",
  AuthorizationResourceTypeMismatch: "AccessDenied",
  AuthorizationServiceMismatch: "AccessDenied",
  AuthorizationSourceIPMismatch: "AccessDenied",
  AuthorizationProtocolMismatch: "AccessDenied",
  InsufficientAccountPermissions: "AccessDenied",
  AccountIsDisabled: "AccessDenied",
  AuthenticationFailed: "AuthenticationFailed",
  InvalidAuthenticationInfo: "AuthenticationFailed",
  NoAuthenticationInformation: "AuthenticationFailed",
  ServerBusy: "SlowDown",
  OperationTimedOut: "Timeout",
  InternalError: "Unavailable",
  InvalidMetadata: "InvalidRequest",
  MetadataTooLarge: "InvalidRequest",
  RequestBodyTooLarge: "InvalidRequest",
};

function reasonOfStatus(status: number): DestinationReason {
  if (status === 0) return "Network";
  if (status === 404) return "NotFound";
  if (status === 403) return "AccessDenied";
  if (status === 412) return "PreconditionFailed";
  if (status === 409) return "Conflict";
  if (status === 429) return "SlowDown";
  if (status >= 500) return "Unavailable";
  if (status === 400) return "InvalidRequest";
  return "Unknown";
}

/**
 * The neutral reason of an Azure answer. A copy source that cannot be read is refused as
 * CannotVerifyCopySource with the status the source gave (404 gone, 403 not readable).
 */
export function azureReason(code: string, status: number): DestinationReason {
  if (code === "CannotVerifyCopySource") return status === 404 ? "NotFound" : "AccessDenied";
  return REASON_OF_CODE[code] ?? reasonOfStatus(status);
}

/** The HTTP status of an SDK error, when there was an answer. */
export function azureStatus(err: unknown): number | undefined {
  return isRestError(err) ? err.statusCode : undefined;
}

/** The Azure error code of an SDK error, when the store gave one. */
export function azureCode(err: unknown): string | undefined {
  return isRestError(err) ? err.code : undefined;
}

/**
 * An Azure SDK failure as a DestinationError carrying its neutral reason and Azure's own code
 * and status. Retriable: throttling, 5xx, Azure's timeouts and transport failures; a request
 * the SDK never sent because of a programmer's mistake (a TypeError) is not.
 */
export function toDestinationError(err: unknown, what: string): DestinationError {
  if (err instanceof DestinationError) return err;
  if (isRestError(err) && err.statusCode !== undefined) {
    const status = err.statusCode;
    const code = err.code ?? "";
    const reason = azureReason(code, status);
    const transient =
      status === 429 || status >= 500 || reason === "SlowDown" || reason === "Timeout";
    const first = (err.message.split("\n")[0] ?? "").trim();
    return new DestinationError(`${what}: ${code || "Error"} (${status}) ${first}`, transient, {
      cause: err,
      reason,
      storeCode: code || undefined,
      httpStatus: status,
    });
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

/** Every code a MirrorError carries; `LM_INTERNAL` is what the CLI prints for anything else. */
export type ErrorCode =
  | "LM_ERROR"
  | "LM_INTERNAL"
  | "LM_CONFIG"
  | "LM_USAGE"
  | "LM_LAKEFS_UNREACHABLE"
  | "LM_LAKEFS_AUTH"
  | "LM_LAKEFS_NOT_FOUND"
  | "LM_LAKEFS_HTTP"
  | "LM_DESTINATION"
  | "LM_SOURCE_OBJECT"
  | "LM_SOURCE_READ"
  | "LM_OBJECT_REFUSED"
  | "LM_TABLE_REWRITE"
  | "LM_CHECKPOINT"
  | "LM_LEDGER"
  | "LM_LEASE_HELD"
  | "LM_LEASE_LOST"
  | "LM_LANE_BUSY"
  | "LM_LANE_OVERLAP"
  | "LM_EXPORT_FAILED"
  | "LM_EVENT_INVALID"
  | "LM_HTTP_REQUEST"
  | "LM_REQUEST_TIMEOUT"
  | "LM_CLOSED"
  | "LM_ABORTED";

/** The code of an error that lakefs-mirror did not raise on purpose (a bug, or a dependency's). */
export const INTERNAL_ERROR_CODE: ErrorCode = "LM_INTERNAL";

/**
 * Every failure lakefs-mirror raises on purpose is a MirrorError with a fixed `code`.
 * Callers branch on `code`, never on message text; the retry wrapper reads `retriable`.
 * Programmer mistakes stay plain TypeErrors.
 */
export class MirrorError extends Error {
  readonly code: ErrorCode = "LM_ERROR";
  readonly retriable: boolean = false;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A configuration value is missing or malformed. */
export class ConfigError extends MirrorError {
  override readonly code = "LM_CONFIG";
}

/** Command-line arguments do not make a valid request. */
export class UsageError extends MirrorError {
  override readonly code = "LM_USAGE";
}

/** lakeFS could not be reached (connection refused, reset, DNS, timeout). */
export class LakefsUnreachableError extends MirrorError {
  override readonly code = "LM_LAKEFS_UNREACHABLE";
  override readonly retriable = true;
}

/** lakeFS rejected the credentials (401/403). */
export class LakefsAuthError extends MirrorError {
  override readonly code = "LM_LAKEFS_AUTH";
}

/** A repository, branch, commit or object that lakeFS does not have (404). */
export class LakefsNotFoundError extends MirrorError {
  override readonly code = "LM_LAKEFS_NOT_FOUND";
  readonly what: "repository" | "branch" | "ref" | "commit" | "object" | "resource";
  constructor(message: string, what: LakefsNotFoundError["what"], options?: ErrorOptions) {
    super(message, options);
    this.what = what;
  }
}

/** lakeFS answered with an error status; 429 and 5xx are worth retrying. */
export class LakefsHttpError extends MirrorError {
  override readonly code = "LM_LAKEFS_HTTP";
  override readonly retriable: boolean;
  readonly status: number;
  constructor(message: string, status: number, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
    this.retriable = status === 429 || status >= 500;
  }
}

/**
 * Why a destination operation failed, in words every backend maps its store's own codes to
 * (S3's in src/s3/s3-error.ts). Callers decide on this, never on a store's code.
 */
export type DestinationReason =
  | "NotFound"
  | "ContainerNotFound"
  | "PreconditionFailed"
  | "Conflict"
  | "AccessDenied"
  | "AuthenticationFailed"
  | "WrongEndpoint"
  | "SlowDown"
  | "Unavailable"
  | "Timeout"
  | "InvalidRequest"
  | "Network"
  | "Unknown";

/**
 * The destination object store failed or refused an operation. `reason` is the backend-neutral
 * cause that decisions read; `storeCode` and `httpStatus` are the store's own answer when there
 * was one (`SlowDown`/503, `NoSuchBucket`/404…), kept for logs and messages.
 */
export class DestinationError extends MirrorError {
  override readonly code = "LM_DESTINATION";
  override readonly retriable: boolean;
  readonly reason: DestinationReason;
  readonly storeCode: string | undefined;
  readonly httpStatus: number | undefined;
  constructor(
    message: string,
    retriable: boolean,
    options?: ErrorOptions & {
      reason?: DestinationReason | undefined;
      storeCode?: string | undefined;
      httpStatus?: number | undefined;
    },
  ) {
    super(message, options);
    this.retriable = retriable;
    this.reason = options?.reason ?? "Unknown";
    this.storeCode = options?.storeCode;
    this.httpStatus = options?.httpStatus;
  }
}

/** An object listed in a commit could not be read (gone from storage, expired). */
export class SourceObjectError extends MirrorError {
  override readonly code = "LM_SOURCE_OBJECT";
}

/**
 * Reading an object's bytes failed in a way lakeFS's own errors do not name: a pre-signed read
 * the store answered with an error status (`status`) or whose connection broke, or a ranged
 * read that broke off, came short, or carried other bytes than it asked for. Retried when
 * `status` is undefined (a broken or short body), 429 or 5xx.
 */
export class SourceReadError extends MirrorError {
  override readonly code = "LM_SOURCE_READ";
  override readonly retriable: boolean;
  readonly status: number | undefined;
  constructor(message: string, status: number | undefined, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
    this.retriable = status === undefined || status === 429 || status >= 500;
  }
}

/**
 * One object that can never be written as it is: a path reserved at the destination root, user
 * metadata S3 cannot carry, a size above S3's limits. Permanent: it goes to the FAILURE file.
 */
export class ObjectRefusedError extends MirrorError {
  override readonly code = "LM_OBJECT_REFUSED";
}

/**
 * A table file (Iceberg metadata, manifest, position-delete file) cannot be rewritten to point
 * at the mirror: it holds a path outside the repository, or it is malformed or of a kind the
 * rewriter does not read. Permanent: the export names `file` (and `path`) in its FAILURE file.
 */
export class TableRewriteError extends MirrorError {
  override readonly code = "LM_TABLE_REWRITE";
  /** The lakeFS path of the file being rewritten. */
  readonly file: string;
  /** The path inside it that could not be mapped, when that is what went wrong. */
  readonly path: string | undefined;
  constructor(message: string, file: string, path?: string, options?: ErrorOptions) {
    super(message, options);
    this.file = file;
    this.path = path;
  }
}

/** The checkpoint store cannot be opened or used (locked by another process, closed). */
export class CheckpointError extends MirrorError {
  override readonly code = "LM_CHECKPOINT";
}

/** The lane ledger at a destination cannot be read or belongs to something else. */
export class LedgerError extends MirrorError {
  override readonly code = "LM_LEDGER";
}

/**
 * Another daemon holds the lease on a destination: this one must not write there until it
 * expires or is handed over.
 */
export class LeaseHeldError extends MirrorError {
  override readonly code = "LM_LEASE_HELD";
  override readonly retriable = true;
  readonly owner: string;
  readonly expiresAt: Date;
  constructor(message: string, owner: string, expiresAt: Date, options?: ErrorOptions) {
    super(message, options);
    this.owner = owner;
    this.expiresAt = expiresAt;
  }
}

/** This daemon's lease on a destination expired or was taken over: it must stop writing. */
export class LeaseLostError extends MirrorError {
  override readonly code = "LM_LEASE_LOST";
}

/**
 * A one-off export into a prefix that a daemon's lane mirrors, while the lane's lease is held
 * by someone else: writing now would make the lane's ledger untrue, so nothing was written.
 */
export class LaneBusyError extends MirrorError {
  override readonly code = "LM_LANE_BUSY";
  readonly owner: string;
  readonly expiresAt: Date;
  constructor(message: string, owner: string, expiresAt: Date, options?: ErrorOptions) {
    super(message, options);
    this.owner = owner;
    this.expiresAt = expiresAt;
  }
}

/**
 * Two lanes meet at one destination: its ledger or lease names another lane, an enclosing
 * prefix holds a lane's records, or a lane's records lie below it. A listing of the outer one
 * would see, and could delete, the inner one's keys, so the export refuses to run.
 */
export class DestinationOverlapError extends MirrorError {
  override readonly code = "LM_LANE_OVERLAP";
  /** The lane that refused, and the lane whose records it found (`repository/branch`). */
  readonly lane: string;
  readonly other: string;
  /** Where the other lane's records are (`s3://bucket/prefix/`). */
  readonly otherDestination: string;
  constructor(
    message: string,
    lanes: { lane: string; other: string; otherDestination: string },
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.lane = lanes.lane;
    this.other = lanes.other;
    this.otherDestination = lanes.otherDestination;
  }
}

/** An export ran and wrote a FAILURE status file. */
export class ExportFailedError extends MirrorError {
  override readonly code = "LM_EXPORT_FAILED";
  override readonly retriable = true;
}

/** A webhook or Kafka message is not a lakeFS action event (the field named is wrong). */
export class EventInvalidError extends MirrorError {
  override readonly code = "LM_EVENT_INVALID";
}

/** An HTTP request to the daemon that it answers with a client error (`status`). */
export class HttpRequestError extends MirrorError {
  override readonly code = "LM_HTTP_REQUEST";
  readonly status: number;
  constructor(status: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
  }
}

/**
 * A request to lakeFS or S3 was cut by one of its deadlines (see src/http/deadlines.ts): no
 * connection, no first byte of the answer, or a body that stopped moving. Retriable: the next
 * attempt goes on a new connection, as S3's performance guidelines advise for slow requests.
 */
export class RequestTimeoutError extends MirrorError {
  override readonly code = "LM_REQUEST_TIMEOUT";
  override readonly retriable = true;
  /** What the request was waiting for when it was cut. */
  readonly waitingFor: RequestWait;
  readonly timeoutMs: number;
  constructor(message: string, waitingFor: RequestWait, timeoutMs: number, options?: ErrorOptions) {
    super(message, options);
    this.waitingFor = waitingFor;
    this.timeoutMs = timeoutMs;
  }
}

export type RequestWait = "connection" | "first byte" | "request body" | "response body";

/** A part of the daemon was used after it was closed (or before it opened). */
export class ClosedError extends MirrorError {
  override readonly code = "LM_CLOSED";
}

/** The operation was aborted by shutdown or a caller's signal. */
export class AbortedError extends MirrorError {
  override readonly code = "LM_ABORTED";
}

export function isRetriable(err: unknown): boolean {
  return err instanceof MirrorError && err.retriable;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * A failure of where a streamed body comes from (lakeFS, a pre-signed read), as the body's own
 * error: a destination keeps it as it is (its code and whether it is retriable) rather than
 * calling it its own. Everything but the destination's own errors, the fence and an abort.
 */
export function isSourceFailure(err: unknown): err is MirrorError {
  return (
    err instanceof MirrorError &&
    !(err instanceof DestinationError) &&
    !(err instanceof LeaseLostError) &&
    !(err instanceof AbortedError) &&
    !(err instanceof ObjectRefusedError)
  );
}

/**
 * Every failure lakefs-mirror raises on purpose is a MirrorError with a fixed `code`.
 * Callers branch on `code`, never on message text; the retry wrapper reads `retriable`.
 * Programmer mistakes stay plain TypeErrors.
 */
export class MirrorError extends Error {
  readonly code: string = "LM_ERROR";
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

/** The destination object store failed or refused an operation. */
export class DestinationError extends MirrorError {
  override readonly code = "LM_DESTINATION";
  override readonly retriable: boolean;
  constructor(message: string, retriable: boolean, options?: ErrorOptions) {
    super(message, options);
    this.retriable = retriable;
  }
}

/** An object listed in a commit could not be read (gone from storage, expired). */
export class SourceObjectError extends MirrorError {
  override readonly code = "LM_SOURCE_OBJECT";
}

/** The checkpoint store cannot be opened or used (locked by another process, closed). */
export class CheckpointError extends MirrorError {
  override readonly code = "LM_CHECKPOINT";
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

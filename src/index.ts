/**
 * lakefs-mirror as a library: the export engine behind the CLI and the daemon, with the three
 * modes of lakeFS's Spark exporter and the reconciling full export, the lakeFS client, the
 * destination contract with its S3 backend, the status-file helpers, and the error classes.
 *
 *   import { Exporter, LakefsClient, S3Destination, createS3Client } from "lakefs-mirror";
 *
 * Everything else in the package is internal and may change without notice.
 */
export { Exporter } from "./export/exporter.ts";
export type {
  CoverOptions,
  ExportProgress,
  ExportResult,
  ExportTask,
  ExporterOptions,
  ReconcileOptions,
} from "./export/exporter.ts";
export type { CopyMode } from "./export/copier.ts";
export { parseDeleteLimit } from "./export/reconcile.ts";
export type { DeleteLimit } from "./export/reconcile.ts";
export { roundPresets } from "./export/rounds.ts";
export type {
  RoundFunction,
  RoundPosition,
  RoundPreset,
  RoundPresetName,
  RoundRule,
} from "./export/rounds.ts";
export {
  SUCCESS_TEXT,
  listStatusFiles,
  parseStatusFileName,
  statusFileName,
} from "./export/status-file.ts";
export type { ExportStatus, ParsedStatusFile } from "./export/status-file.ts";
export { LEDGER_PATH, RESERVED_PREFIX } from "./export/reserved.ts";
export { LakefsClient } from "./lakefs/client.ts";
export type { LakefsClientOptions } from "./lakefs/client.ts";
export type { Commit, ObjectStats, Ref, Repository } from "./lakefs/types.ts";
export type {
  DeleteRefusal,
  Destination,
  DestinationCapabilities,
  HeadResult,
  ListedObject,
  ObjectMeta,
  StorageAddress,
  StorageLocation,
  VersionedText,
  WriteCondition,
} from "./destination/destination.ts";
export { DestinationFactory } from "./destination/factory.ts";
export type { ConnectBackend, DestinationSession } from "./destination/factory.ts";
export { normalizeLocation, parseLocation, parseStorageAddress } from "./destination/schemes.ts";
export type { GatewayReader } from "./lakefs/gateway.ts";
export { lakefsGateway } from "./s3/gateway.ts";
export { createS3Client } from "./s3/client.ts";
export type { S3ClientOptions } from "./s3/client.ts";
export { S3Destination } from "./s3/destination.ts";
export type { TransferSizes } from "./s3/destination.ts";
export { formatS3Uri, parseS3Uri } from "./s3/uri.ts";
export type { S3Location } from "./s3/uri.ts";
export { verifyMirror } from "./verify/verify.ts";
export type { Difference, VerifyOptions, VerifyResult } from "./verify/verify.ts";
export {
  AbortedError,
  ConfigError,
  DestinationError,
  INTERNAL_ERROR_CODE,
  LakefsAuthError,
  LakefsHttpError,
  LakefsNotFoundError,
  LakefsUnreachableError,
  MirrorError,
  ObjectRefusedError,
  RequestTimeoutError,
  SourceObjectError,
  isRetriable,
} from "./errors.ts";
export type { DestinationReason, ErrorCode, RequestWait } from "./errors.ts";
export { defaultDeadlines } from "./http/deadlines.ts";
export type { Deadlines } from "./http/deadlines.ts";

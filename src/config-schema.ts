import type { CopyMode } from "./export/copier.ts";
import { copyModes } from "./export/copier.ts";
import type { RoundPresetName, RoundRule } from "./export/rounds.ts";
import { defaultDeadlines } from "./http/deadlines.ts";
import { defaultLakefsTimeouts } from "./lakefs/transport.ts";
import { defaultRetryPolicy } from "./retry.ts";
import type { RetryPolicy } from "./retry.ts";
import { defaultS3Timeouts } from "./s3/client.ts";
import { defaultTransferSizes } from "./s3/destination.ts";
import type { MirrorSpec } from "./config-mirrors.ts";

export type { MirrorSpec } from "./config-mirrors.ts";

/** The configuration's shape and its convict schema: keys, defaults, env variables, formats. */

export interface Config {
  lakefs: {
    endpoint: string;
    gatewayEndpoint: string;
    accessKeyId: string;
    secretAccessKey: string;
    connectTimeoutMs: number;
    firstByteTimeoutMs: number;
    headersTimeoutMs: number;
    bodyTimeoutMs: number;
  };
  s3: {
    endpoint: string;
    region: string;
    forcePathStyle: boolean;
    maxAttempts: number;
    accessKeyId: string;
    secretAccessKey: string;
    sessionToken: string;
    connectTimeoutMs: number;
    firstByteTimeoutMs: number;
    idleTimeoutMs: number;
    workBytesPerSecond: number;
    workMsPerEntry: number;
    leanRequests: boolean;
  };
  gcs: {
    endpoint: string;
    authWithEndpoint: boolean;
    projectId: string;
    keyFile: string;
    maxAttempts: number;
    deleteConcurrency: number;
  };
  azure: {
    endpoint: string;
    connectionString: string;
    accountName: string;
    accountKey: string;
    sasToken: string;
    maxAttempts: number;
    tryTimeoutMs: number;
  };
  retry: RetryPolicy;
  export: {
    concurrency: number;
    adaptiveConcurrency: boolean;
    maxRequestsPerSecond: number;
    maxBytesPerSecond: number;
    copyMode: CopyMode;
    rounds: RoundPresetName | RoundRule[];
    deletesLast: boolean | null;
    icebergRewrite: boolean | null;
    deferredInMemory: number;
    spillDirectory: string;
    maxDeletes: string;
    serverSideCopySources: string[];
    multipartThresholdBytes: number;
    multipartPartSizeBytes: number;
    parallelReads: number;
    rangesInFlight: number;
    presignedReads: boolean;
    copyMultipartThresholdBytes: number;
    copyPartSizeBytes: number;
    copyPartConcurrency: number;
  };
  mirrors: MirrorSpec[];
  server: { host: string; port: number; bodyLimitBytes: number; statusToken: string };
  webhook: { token: string; forwardToKafka: boolean };
  kafka: {
    brokers: string[];
    topic: string;
    groupId: string;
    clientId: string;
    workTopic: string;
    deadLetterTopic: string;
    partitions: number;
    sessionTimeoutMs: number;
    heartbeatIntervalMs: number;
    maxUncommittedPerPartition: number;
    reconnectMaxSeconds: number;
    metadataMaxAgeMs: number;
  };
  work: {
    splitAbove: number;
    itemObjects: number;
    initialItems: number;
    itemTimeoutSeconds: number;
    maxItemAttempts: number;
    pollMs: number;
    leaseViewMs: number;
    itemsInParallel: number;
  };
  lease: { enabled: boolean; ttlSeconds: number; owner: string };
  checkpoint: { path: string };
  reconcile: { intervalSeconds: number };
  scheduler: {
    maxParallelLanes: number;
    retryBaseSeconds: number;
    retryMaxSeconds: number;
    stallSeconds: number;
  };
  status: { keep: number };
  shutdown: { graceSeconds: number };
  log: { level: string };
}

export const schema = {
  lakefs: {
    endpoint: {
      doc: "lakeFS server URL",
      format: "http-url",
      default: "http://127.0.0.1:8000",
      env: "LAKEFS_ENDPOINT",
    },
    gatewayEndpoint: {
      doc: "lakeFS S3 gateway URL, when it differs from lakefs.endpoint (used by verify)",
      format: String,
      default: "",
      env: "LAKEFS_S3_GATEWAY_ENDPOINT",
    },
    accessKeyId: {
      doc: "lakeFS access key ID",
      format: String,
      default: "",
      env: "LAKEFS_ACCESS_KEY_ID",
    },
    secretAccessKey: {
      doc: "lakeFS secret access key",
      format: String,
      default: "",
      env: "LAKEFS_SECRET_ACCESS_KEY",
      sensitive: true,
    },
    connectTimeoutMs: {
      doc: "time to open a connection to lakeFS",
      format: "positive-int",
      default: defaultLakefsTimeouts.connectTimeoutMs,
    },
    firstByteTimeoutMs: {
      doc: "time from a lakeFS read (every GET) being sent to its answer's headers; doubles on each retry, up to 8 times",
      format: "positive-int",
      default: defaultLakefsTimeouts.firstByteTimeoutMs,
    },
    headersTimeoutMs: {
      doc: "time from a lakeFS write (commit, upload, import…), which is never retried and may work long, to its answer's headers",
      format: "positive-int",
      default: defaultLakefsTimeouts.headersTimeoutMs,
    },
    bodyTimeoutMs: {
      doc: "longest a lakeFS response body may stop moving while it is being read",
      format: "positive-int",
      default: defaultLakefsTimeouts.bodyTimeoutMs,
    },
  },
  s3: {
    endpoint: {
      doc: "S3-compatible endpoint; empty for AWS",
      format: String,
      default: "",
      env: "AWS_ENDPOINT_URL",
    },
    region: { doc: "S3 region", format: String, default: "us-east-1", env: "AWS_REGION" },
    forcePathStyle: {
      doc: "path-style bucket addressing",
      format: Boolean,
      default: true,
      env: "S3_FORCE_PATH_STYLE",
    },
    maxAttempts: { doc: "attempts per S3 request", format: "nat", default: 3 },
    accessKeyId: {
      doc: "S3 access key ID; empty to use the AWS SDK's default credential chain (instance roles, profiles…)",
      format: String,
      default: "",
      env: "AWS_ACCESS_KEY_ID",
    },
    secretAccessKey: {
      doc: "S3 secret access key",
      format: String,
      default: "",
      env: "AWS_SECRET_ACCESS_KEY",
      sensitive: true,
    },
    sessionToken: {
      doc: "S3 session token",
      format: String,
      default: "",
      env: "AWS_SESSION_TOKEN",
      sensitive: true,
    },
    connectTimeoutMs: {
      doc: "time to open a connection to S3",
      format: "positive-int",
      default: defaultS3Timeouts.connectTimeoutMs,
    },
    firstByteTimeoutMs: {
      doc: "time from an S3 request being sent (body included) to the first byte of its answer, before the work allowance; doubles on each retry, up to 8 times",
      format: "positive-int",
      default: defaultDeadlines.firstByteMs,
    },
    idleTimeoutMs: {
      doc: "longest an S3 request or response body may stop moving while the other side waits on it",
      format: "positive-int",
      default: defaultDeadlines.idleMs,
    },
    workBytesPerSecond: {
      doc: "slowest rate at which S3 may copy or store bytes before it answers: CopyObject, UploadPartCopy and the tail of an upload get their bytes' time at this rate on top of s3.firstByteTimeoutMs",
      format: "positive-int",
      default: defaultDeadlines.workBytesPerSecond,
    },
    workMsPerEntry: {
      doc: "time S3 may take per key of a DeleteObjects and per part of a CompleteMultipartUpload, on top of s3.firstByteTimeoutMs",
      format: "positive-int",
      default: defaultDeadlines.workMsPerEntry,
    },
    leanRequests: {
      doc: "send CopyObject and HeadObject without the SDK's per-request middleware (same client, credentials, endpoint, retries)",
      format: Boolean,
      default: true,
      env: "S3_LEAN_REQUESTS",
    },
  },
  gcs: {
    endpoint: {
      doc: "Cloud Storage JSON API endpoint (fake-gcs-server: http://127.0.0.1:4443); empty for Google's. A custom endpoint gets no credentials unless gcs.authWithEndpoint",
      format: String,
      default: "",
      env: "GCS_ENDPOINT",
    },
    authWithEndpoint: {
      doc: "send credentials to a custom gcs.endpoint too (a private endpoint of the real service)",
      format: Boolean,
      default: false,
    },
    projectId: {
      doc: "Google Cloud project for requests that need one; empty: the credentials' own",
      format: String,
      default: "",
      env: "GOOGLE_CLOUD_PROJECT",
    },
    keyFile: {
      doc: "service account key file (JSON); empty: Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's login, the metadata server)",
      format: String,
      default: "",
      env: "LAKEFS_MIRROR_GCS_KEY_FILE",
    },
    maxAttempts: {
      doc: "attempts per Cloud Storage request the client library makes (the export's own retries come on top)",
      format: "positive-int",
      default: 3,
    },
    deleteConcurrency: {
      doc: "object deletes in flight at once within one batch of deletes",
      format: "positive-int",
      default: 16,
    },
  },
  azure: {
    endpoint: {
      doc: "Blob service URL that requests for https://<account>.blob.core.windows.net/... locations go to (an emulator such as Azurite, a proxy); the URI still names the account. Empty: the account's own host",
      format: "http-url-or-empty",
      default: "",
      env: "AZURE_BLOB_ENDPOINT",
    },
    connectionString: {
      doc: "Azure Storage connection string (AccountName with AccountKey or SharedAccessSignature); the destination URI says where requests go",
      format: String,
      default: "",
      env: "AZURE_STORAGE_CONNECTION_STRING",
      sensitive: true,
    },
    accountName: {
      doc: "the storage account azure.accountKey belongs to; empty: the destination's",
      format: String,
      default: "",
      env: "AZURE_STORAGE_ACCOUNT",
    },
    accountKey: {
      doc: "Azure storage account key (Shared Key); without it, a connection string or SAS: DefaultAzureCredential",
      format: String,
      default: "",
      env: "AZURE_STORAGE_KEY",
      sensitive: true,
    },
    sasToken: {
      doc: "Azure shared access signature (the query string, with or without its '?')",
      format: String,
      default: "",
      env: "AZURE_STORAGE_SAS_TOKEN",
      sensitive: true,
    },
    maxAttempts: {
      doc: "attempts per Azure request (the SDK's retries)",
      format: "positive-int",
      default: 3,
    },
    tryTimeoutMs: {
      doc: "longest one Azure request attempt may take",
      format: "positive-int",
      default: 10 * 60_000,
    },
  },
  retry: {
    retries: {
      doc: "retries of a failed lakeFS read or S3 write, after the first attempt",
      format: "nat",
      default: defaultRetryPolicy.retries,
    },
    minTimeoutMs: {
      doc: "first wait before a retry",
      format: "nat",
      default: defaultRetryPolicy.minTimeoutMs,
    },
    maxTimeoutMs: {
      doc: "longest wait between retries",
      format: "nat",
      default: defaultRetryPolicy.maxTimeoutMs,
    },
    maxRetryTimeMs: {
      doc: "no retry starts this long after the first attempt",
      format: "nat",
      default: defaultRetryPolicy.maxRetryTimeMs,
    },
  },
  export: {
    concurrency: {
      doc: "objects copied at once",
      format: "positive-int",
      default: 32,
      env: "LAKEFS_MIRROR_CONCURRENCY",
    },
    adaptiveConcurrency: {
      doc: "on throttling answers (SlowDown, 503, 429) a store gets fewer writes at once, growing back while they succeed",
      format: Boolean,
      default: true,
    },
    maxRequestsPerSecond: {
      doc: "most object writes, copies and delete batches per second to one store, for the group as a whole (each daemon takes its share); 0: no cap",
      format: "nat",
      default: 0,
    },
    maxBytesPerSecond: {
      doc: "most bytes per second written or copied to one store, for the group as a whole (each daemon takes its share); 0: no cap",
      format: "nat",
      default: 0,
    },
    copyMode: {
      doc: "auto | server-side | stream",
      format: [...copyModes],
      default: "auto" as CopyMode,
    },
    rounds: {
      doc: 'which paths go in later rounds: "spark" (_SUCCESS last), "delta", "iceberg", or [{pattern, round}]',
      format: "rounds",
      default: "spark" as RoundPresetName | RoundRule[],
    },
    deletesLast: {
      doc: "deletes after every copy of an export; null: as the rounds preset says (delta, iceberg: yes)",
      format: "nullable-boolean",
      default: null as boolean | null,
    },
    icebergRewrite: {
      doc: "rewrite the absolute paths in Apache Iceberg metadata to the mirror's, so that the mirrored table refers to the mirror; null: as the rounds preset says (iceberg: yes)",
      format: "nullable-boolean",
      default: null as boolean | null,
    },
    deferredInMemory: {
      doc: "later-round tasks (and deletes, when they go last) held in memory; beyond, they spill to files in spillDirectory",
      format: "positive-int",
      default: 10_000,
    },
    spillDirectory: {
      doc: "where an export's spilled tasks go (a directory per export, removed when it ends); empty: the OS's temporary directory",
      format: String,
      default: "",
      env: "LAKEFS_MIRROR_SPILL_DIR",
    },
    maxDeletes: {
      doc: "most keys a reconciling full export may delete: a count or a percentage of the keys under the prefix",
      format: "delete-limit",
      default: "50%",
    },
    serverSideCopySources: {
      doc: "locations (s3://bucket/prefix/) besides each repository's storage namespace that server-side copies may read",
      format: "storage-locations",
      default: [] as string[],
    },
    multipartThresholdBytes: {
      doc: "stream multipart threshold",
      format: "positive-int",
      default: defaultTransferSizes.multipartThresholdBytes,
    },
    multipartPartSizeBytes: {
      doc: "stream part size",
      format: "positive-int",
      default: defaultTransferSizes.multipartPartSizeBytes,
    },
    parallelReads: {
      doc: "streamed objects at or above multipartThresholdBytes are read by ranges of multipartPartSizeBytes, this many at once; 1: one read per object",
      format: "positive-int",
      default: 4,
    },
    rangesInFlight: {
      doc: "ranges one export holds in memory at once, over all its objects",
      format: "positive-int",
      default: 16,
    },
    presignedReads: {
      doc: "streamed copies read by URLs lakeFS pre-signs for its store (the bytes skip the lakeFS server); off, or where lakeFS cannot sign: through lakeFS",
      format: Boolean,
      default: false,
      env: "LAKEFS_MIRROR_PRESIGNED_READS",
    },
    copyMultipartThresholdBytes: {
      doc: "server-side copies at or above this size use UploadPartCopy",
      format: "positive-int",
      default: defaultTransferSizes.copyMultipartThresholdBytes,
    },
    copyPartSizeBytes: {
      doc: "UploadPartCopy part size",
      format: "positive-int",
      default: defaultTransferSizes.copyPartSizeBytes,
    },
    copyPartConcurrency: {
      doc: "UploadPartCopy parts of one object in flight at once",
      format: "positive-int",
      default: defaultTransferSizes.copyPartConcurrency,
    },
  },
  mirrors: { doc: "what to mirror where", format: "mirrors", default: [] as MirrorSpec[] },
  server: {
    host: {
      doc: "HTTP listen address",
      format: String,
      default: "127.0.0.1",
      env: "LAKEFS_MIRROR_HOST",
    },
    port: { doc: "HTTP port", format: "port", default: 8081, env: "LAKEFS_MIRROR_PORT" },
    bodyLimitBytes: {
      doc: "largest webhook body accepted",
      format: "positive-int",
      default: 1024 * 1024,
    },
    statusToken: {
      doc: "bearer token /status and /metrics ask for; empty leaves them open (set it whenever server.host is not a loopback address)",
      format: String,
      default: "",
      env: "LAKEFS_MIRROR_STATUS_TOKEN",
      sensitive: true,
    },
  },
  webhook: {
    token: {
      doc: 'bearer token webhooks must present; "disabled" turns authentication off',
      format: String,
      default: "",
      env: "LAKEFS_MIRROR_WEBHOOK_TOKEN",
      sensitive: true,
    },
    forwardToKafka: {
      doc: "publish webhook events to kafka.topic instead of exporting",
      format: Boolean,
      default: false,
    },
  },
  kafka: {
    brokers: {
      doc: "Kafka bootstrap brokers",
      format: "brokers",
      default: [] as string[],
      env: "KAFKA_BROKERS",
    },
    topic: {
      doc: "topic of commit events",
      format: String,
      default: "",
      env: "LAKEFS_MIRROR_KAFKA_TOPIC",
    },
    groupId: { doc: "consumer group", format: String, default: "lakefs-mirror" },
    clientId: { doc: "Kafka client id", format: String, default: "lakefs-mirror" },
    workTopic: {
      doc: "topic of work items: the group shares one lane's big export through it; empty: every export runs in one daemon",
      format: String,
      default: "",
      env: "LAKEFS_MIRROR_KAFKA_WORK_TOPIC",
    },
    deadLetterTopic: {
      doc: "where messages that cannot be recorded go, with the reason; empty to only log them",
      format: String,
      default: "",
    },
    partitions: {
      doc: "partitions of kafka.topic when lakefs-mirror creates it (lanes spread over them)",
      format: "positive-int",
      default: 6,
    },
    sessionTimeoutMs: {
      doc: "consumer group session timeout: how soon a dead daemon's partitions move",
      format: "positive-int",
      default: 30_000,
    },
    heartbeatIntervalMs: {
      doc: "consumer group heartbeat interval",
      format: "positive-int",
      default: 3_000,
    },
    maxUncommittedPerPartition: {
      doc: "events of one partition waiting for their export before the partition is paused",
      format: "positive-int",
      default: 1000,
    },
    reconnectMaxSeconds: {
      doc: "longest wait between attempts to reach Kafka",
      format: "positive-int",
      default: 30,
    },
    metadataMaxAgeMs: {
      doc: "how often topic metadata is read again: how soon partitions added to kafka.topic are shared out",
      format: "positive-int",
      default: 300_000,
    },
  },
  work: {
    splitAbove: {
      doc: "a first export or diff with more entries than this is split into work items (needs kafka.workTopic and leases)",
      format: "positive-int",
      default: 100_000,
    },
    itemObjects: {
      doc: "about this many objects per work item",
      format: "positive-int",
      default: 10_000,
    },
    initialItems: {
      doc: "work items a split export starts with, cut at the commit's top-level prefixes; bigger ones are cut further by count",
      format: "positive-int",
      default: 64,
    },
    itemTimeoutSeconds: {
      doc: "a work item with no record is issued again once its run has had no new record for this long",
      format: "positive-int",
      default: 600,
    },
    maxItemAttempts: {
      doc: "issues of a work item before its owner does it itself; if that fails too, its range goes into the FAILURE file",
      format: "positive-int",
      default: 3,
    },
    pollMs: {
      doc: "how often a split export's owner reads its items' records",
      format: "positive-int",
      default: 1_000,
    },
    leaseViewMs: {
      doc: "how long a worker trusts one reading of the owner's lease; a split export's later rounds wait this long after round 0",
      format: "positive-int",
      default: 10_000,
    },
    itemsInParallel: {
      doc: "work items one daemon runs at once",
      format: "positive-int",
      default: 2,
    },
  },
  lease: {
    enabled: {
      doc: "take a lease at each destination before writing (needs S3 conditional writes)",
      format: Boolean,
      default: true,
    },
    ttlSeconds: {
      doc: "a lease whose holder stops renewing it can be taken over after this long",
      format: "positive-int",
      default: 60,
    },
    owner: {
      doc: "this daemon's name in leases; empty: the host name and an identity kept in the checkpoint store",
      format: String,
      default: "",
      env: "LAKEFS_MIRROR_LEASE_OWNER",
    },
  },
  checkpoint: {
    path: {
      doc: "LevelDB directory",
      format: String,
      default: "./.lakefs-mirror/checkpoint",
      env: "LAKEFS_MIRROR_CHECKPOINT_PATH",
    },
  },
  reconcile: {
    intervalSeconds: {
      doc: "how often branch HEADs are polled; 0 only at start-up",
      format: "nat",
      default: 60,
    },
  },
  scheduler: {
    maxParallelLanes: { doc: "lanes exporting at once", format: "positive-int", default: 4 },
    retryBaseSeconds: {
      doc: "first back-off after a failed export",
      format: "positive-int",
      default: 5,
    },
    retryMaxSeconds: { doc: "longest back-off", format: "positive-int", default: 300 },
    stallSeconds: {
      doc: "an export that ends no task for this long is stalled: /status, lakefs_mirror_lane_stalled, a log line",
      format: "positive-int",
      default: 300,
    },
  },
  status: {
    keep: {
      doc: "status files kept per lane by the daemon (0 keeps all)",
      format: "nat",
      default: 10,
    },
  },
  shutdown: {
    graceSeconds: {
      doc: "time running copies get to finish on SIGTERM",
      format: "nat",
      default: 30,
    },
  },
  log: {
    level: {
      doc: "pino log level",
      format: ["trace", "debug", "info", "warn", "error", "fatal", "silent"],
      default: "info",
      env: "LOG_LEVEL",
    },
  },
};

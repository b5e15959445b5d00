import convict from "convict";
import { errorMessage } from "./errors.ts";
import type { CopyMode } from "./export/copier.ts";
import { copyModes } from "./export/copier.ts";
import type { RoundRule } from "./export/rounds.ts";
import { defaultRoundRules, Rounds } from "./export/rounds.ts";
import { defaultTransferSizes } from "./s3/destination.ts";
import { parseS3Uri } from "./s3/uri.ts";

/** The configuration's shape and its convict schema: keys, defaults, env variables, formats. */

export interface MirrorSpec {
  repository: string;
  /** Branch names or globs (`*` any run of characters, `?` one). */
  branches: string[];
  /** `s3://bucket/prefix/`, may use `{repository}` and `{branch}`. */
  destination: string;
}

export interface Config {
  lakefs: { endpoint: string; accessKeyId: string; secretAccessKey: string };
  s3: {
    endpoint: string;
    region: string;
    forcePathStyle: boolean;
    maxAttempts: number;
    accessKeyId: string;
    secretAccessKey: string;
    sessionToken: string;
  };
  export: {
    concurrency: number;
    copyMode: CopyMode;
    rounds: RoundRule[];
    multipartThresholdBytes: number;
    multipartPartSizeBytes: number;
    copyMultipartThresholdBytes: number;
    copyPartSizeBytes: number;
  };
  mirrors: MirrorSpec[];
  server: { host: string; port: number; bodyLimitBytes: number };
  webhook: { token: string; forwardToKafka: boolean };
  kafka: {
    brokers: string[];
    topic: string;
    groupId: string;
    clientId: string;
    deadLetterTopic: string;
  };
  checkpoint: { path: string };
  reconcile: { intervalSeconds: number };
  scheduler: { maxParallelLanes: number; retryBaseSeconds: number; retryMaxSeconds: number };
  status: { keep: number };
  shutdown: { graceSeconds: number };
  log: { level: string };
}

function assertMirrors(value: unknown): asserts value is MirrorSpec[] {
  if (!Array.isArray(value))
    throw new Error("must be a list of {repository, branches, destination}");
  value.forEach((m: unknown, i) => {
    const at = `mirrors[${i}]`;
    if (typeof m !== "object" || m === null) throw new Error(`${at} must be an object`);
    const { repository, branches, destination, ...rest } = m as Record<string, unknown>;
    const extra = Object.keys(rest);
    if (extra.length) throw new Error(`${at} has unknown key(s): ${extra.join(", ")}`);
    if (typeof repository !== "string" || !repository)
      throw new Error(`${at}.repository must be a repository name`);
    if (
      !Array.isArray(branches) ||
      branches.length === 0 ||
      !branches.every((b) => typeof b === "string" && b)
    ) {
      throw new Error(`${at}.branches must be a non-empty list of branch names or globs`);
    }
    if (typeof destination !== "string") throw new Error(`${at}.destination must be an s3:// URI`);
    try {
      parseS3Uri(destination.replaceAll("{repository}", "r").replaceAll("{branch}", "b"));
    } catch (err) {
      throw new Error(`${at}.destination: ${errorMessage(err)}`, { cause: err });
    }
  });
}

function registerFormats(): void {
  convict.addFormat({
    name: "http-url",
    validate(v: unknown) {
      let url: URL;
      try {
        url = new URL(String(v));
      } catch (err) {
        throw new Error(`must be an http(s) URL, got "${String(v)}"`, { cause: err });
      }
      if (url.protocol !== "http:" && url.protocol !== "https:")
        throw new Error(`must be an http(s) URL, got "${String(v)}"`);
    },
  });
  convict.addFormat({ name: "mirrors", validate: (v: unknown) => assertMirrors(v) });
  convict.addFormat({
    name: "rounds",
    validate(v: unknown) {
      if (!Array.isArray(v)) throw new Error("must be a list of {pattern, round}");
      new Rounds(v as RoundRule[]);
    },
  });
  convict.addFormat({
    name: "brokers",
    validate(v: unknown) {
      if (!Array.isArray(v) || !v.every((b) => typeof b === "string" && /^[^\s:]+:\d+$/.test(b))) {
        throw new Error("must be a list of host:port");
      }
    },
    coerce: (v: string) =>
      v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean),
  });
}

let formatsRegistered = false;

/** convict formats are process-wide: registered once, on first use rather than at import. */
export function addFormats(): void {
  if (formatsRegistered) return;
  registerFormats();
  formatsRegistered = true;
}

export const schema = {
  lakefs: {
    endpoint: {
      doc: "lakeFS server URL",
      format: "http-url",
      default: "http://127.0.0.1:8000",
      env: "LAKEFS_ENDPOINT",
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
  },
  export: {
    concurrency: {
      doc: "objects copied at once",
      format: "nat",
      default: 32,
      env: "LAKEFS_MIRROR_CONCURRENCY",
    },
    copyMode: {
      doc: "auto | server-side | stream",
      format: [...copyModes],
      default: "auto" as CopyMode,
    },
    rounds: {
      doc: "path patterns exported in later rounds",
      format: "rounds",
      default: defaultRoundRules,
    },
    multipartThresholdBytes: {
      doc: "stream multipart threshold",
      format: "nat",
      default: defaultTransferSizes.multipartThresholdBytes,
    },
    multipartPartSizeBytes: {
      doc: "stream part size",
      format: "nat",
      default: defaultTransferSizes.multipartPartSizeBytes,
    },
    copyMultipartThresholdBytes: {
      doc: "server-side copies at or above this size use UploadPartCopy",
      format: "nat",
      default: defaultTransferSizes.copyMultipartThresholdBytes,
    },
    copyPartSizeBytes: {
      doc: "UploadPartCopy part size",
      format: "nat",
      default: defaultTransferSizes.copyPartSizeBytes,
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
    bodyLimitBytes: { doc: "largest webhook body accepted", format: "nat", default: 1024 * 1024 },
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
    deadLetterTopic: {
      doc: "where malformed messages go; empty to only log them",
      format: String,
      default: "",
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
    maxParallelLanes: { doc: "lanes exporting at once", format: "nat", default: 4 },
    retryBaseSeconds: { doc: "first back-off after a failed export", format: "nat", default: 5 },
    retryMaxSeconds: { doc: "longest back-off", format: "nat", default: 300 },
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

import type { S3Client } from "@aws-sdk/client-s3";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import type { DestinationSession } from "../destination/factory.ts";
import type { Deadlines } from "../http/deadlines.ts";
import { createS3Client } from "./client.ts";
import { S3Destination } from "./destination.ts";
import { LeanS3 } from "./lean.ts";

/** The S3 request deadlines the configuration sets (see src/http/deadlines.ts). */
export function s3DeadlinesOf(config: Config): Deadlines {
  const s = config.s3;
  return {
    firstByteMs: s.firstByteTimeoutMs,
    idleMs: s.idleTimeoutMs,
    workBytesPerSecond: s.workBytesPerSecond,
    workMsPerEntry: s.workMsPerEntry,
  };
}

/** The destination S3 client the configuration describes (the `s3` section). */
export function s3ClientOf(config: Config, logger: Logger): S3Client {
  return createS3Client({
    endpoint: config.s3.endpoint || undefined,
    region: config.s3.region,
    forcePathStyle: config.s3.forcePathStyle,
    maxAttempts: config.s3.maxAttempts,
    maxSockets: Math.max(16, config.export.concurrency * 2),
    connectTimeoutMs: config.s3.connectTimeoutMs,
    deadlines: s3DeadlinesOf(config),
    logger: logger.child({ component: "s3" }),
    // Explicit keys from the configuration; without them the SDK's own chain (roles, profiles).
    credentials: config.s3.accessKeyId
      ? {
          accessKeyId: config.s3.accessKeyId,
          secretAccessKey: config.s3.secretAccessKey,
          ...(config.s3.sessionToken ? { sessionToken: config.s3.sessionToken } : {}),
        }
      : undefined,
  });
}

/**
 * Every S3 destination of a process shares one client (and its connection pool) and one lean
 * request path, whatever bucket it writes.
 */
export function connectS3(config: Config, logger: Logger): DestinationSession {
  const s3 = s3ClientOf(config, logger);
  const lean = config.s3.leanRequests
    ? new LeanS3(s3, {
        maxSockets: Math.max(16, config.export.concurrency * 2),
        connectTimeoutMs: config.s3.connectTimeoutMs,
        deadlines: s3DeadlinesOf(config),
      })
    : undefined;
  const sizes = {
    multipartThresholdBytes: config.export.multipartThresholdBytes,
    multipartPartSizeBytes: config.export.multipartPartSizeBytes,
    copyMultipartThresholdBytes: config.export.copyMultipartThresholdBytes,
    copyPartSizeBytes: config.export.copyPartSizeBytes,
    copyPartConcurrency: config.export.copyPartConcurrency,
  };
  return {
    open: (location) =>
      new S3Destination(s3, { bucket: location.container, prefix: location.prefix }, sizes, lean),
    async close() {
      s3.destroy();
      await lean?.close();
    },
  };
}

import type { S3Client } from "@aws-sdk/client-s3";
import type { Config } from "./config.ts";
import type { ExporterOptions } from "./export/exporter.ts";
import { LakefsClient } from "./lakefs/client.ts";
import { createS3Client } from "./s3/client.ts";
import { S3Destination } from "./s3/destination.ts";
import { LeanS3 } from "./s3/lean.ts";
import type { S3Location } from "./s3/uri.ts";
import type { Logger } from "pino";

/** The clients one command needs, built from the configuration; close() releases them. */
export interface Clients {
  lakefs: LakefsClient;
  s3: S3Client;
  /** The lakeFS S3 gateway, read the way any S3 reader of lakeFS reads it. */
  gateway: S3Client;
  destination(location: S3Location): S3Destination;
  close(): Promise<void>;
}

/** What the configuration says about how an export runs, as the Exporter takes it. */
export function exporterSettings(
  config: Config,
): Pick<
  ExporterOptions,
  "concurrency" | "copyMode" | "rounds" | "deletesLast" | "retry" | "serverSideSources"
> {
  const { concurrency, copyMode, rounds, deletesLast, serverSideCopySources } = config.export;
  return {
    concurrency,
    copyMode,
    rounds: typeof rounds === "string" ? rounds : [...rounds],
    ...(deletesLast !== null ? { deletesLast } : {}),
    retry: config.retry,
    serverSideSources: serverSideCopySources,
  };
}

export function createClients(config: Config, logger: Logger): Clients {
  const lakefs = new LakefsClient({
    endpoint: config.lakefs.endpoint,
    accessKeyId: config.lakefs.accessKeyId,
    secretAccessKey: config.lakefs.secretAccessKey,
    logger: logger.child({ component: "lakefs" }),
    connections: Math.max(16, config.export.concurrency * 2),
    retry: config.retry,
    connectTimeoutMs: config.lakefs.connectTimeoutMs,
    headersTimeoutMs: config.lakefs.headersTimeoutMs,
    bodyTimeoutMs: config.lakefs.bodyTimeoutMs,
  });
  const s3 = createS3Client({
    endpoint: config.s3.endpoint || undefined,
    region: config.s3.region,
    forcePathStyle: config.s3.forcePathStyle,
    maxAttempts: config.s3.maxAttempts,
    maxSockets: Math.max(16, config.export.concurrency * 2),
    connectTimeoutMs: config.s3.connectTimeoutMs,
    idleTimeoutMs: config.s3.idleTimeoutMs,
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
  const gateway = createS3Client({
    endpoint: config.lakefs.gatewayEndpoint || config.lakefs.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    maxSockets: Math.max(16, config.export.concurrency * 2),
    connectTimeoutMs: config.lakefs.connectTimeoutMs,
    idleTimeoutMs: config.lakefs.headersTimeoutMs,
    credentials: {
      accessKeyId: config.lakefs.accessKeyId,
      secretAccessKey: config.lakefs.secretAccessKey,
    },
    logger: logger.child({ component: "lakefs-gateway" }),
  });
  const lean = config.s3.leanRequests
    ? new LeanS3(s3, {
        maxSockets: Math.max(16, config.export.concurrency * 2),
        connectTimeoutMs: config.s3.connectTimeoutMs,
        idleTimeoutMs: config.s3.idleTimeoutMs,
      })
    : undefined;
  return {
    lakefs,
    s3,
    gateway,
    destination: (location) =>
      new S3Destination(
        s3,
        location,
        {
          multipartThresholdBytes: config.export.multipartThresholdBytes,
          multipartPartSizeBytes: config.export.multipartPartSizeBytes,
          copyMultipartThresholdBytes: config.export.copyMultipartThresholdBytes,
          copyPartSizeBytes: config.export.copyPartSizeBytes,
          copyPartConcurrency: config.export.copyPartConcurrency,
        },
        lean,
      ),
    async close() {
      s3.destroy();
      gateway.destroy();
      await lean?.close();
      await lakefs.close();
    },
  };
}

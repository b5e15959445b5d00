import type { Logger } from "pino";
import type { Config } from "./config.ts";
import type { Destination } from "./destination/destination.ts";
import { DestinationFactory } from "./destination/factory.ts";
import type { ExporterOptions } from "./export/exporter.ts";
import { LakefsClient } from "./lakefs/client.ts";
import type { GatewayReader } from "./lakefs/gateway.ts";
import { s3DeadlinesOf } from "./s3/backend.ts";
import { createS3Client } from "./s3/client.ts";
import { lakefsGateway } from "./s3/gateway.ts";

/** The clients one command needs, built from the configuration; close() releases them. */
export interface Clients {
  lakefs: LakefsClient;
  /** The lakeFS S3 gateway, read the way any S3 reader of lakeFS reads it. */
  gateway: GatewayReader;
  /** A destination by URI (`s3://bucket/prefix/`); the backend's clients are shared. */
  destination(uri: string): Destination;
  /** How many daemons share the group-wide write caps (export.maxRequestsPerSecond, …). */
  shareCapsWith?(members: () => number): void;
  close(): Promise<void>;
}

/**
 * The host (with its port) of lakeFS's S3 gateway, as a table written through it may record in
 * HTTP paths: `lakefs.gatewayEndpoint`, else `lakefs.endpoint` (lakeFS serves both on one port).
 */
function gatewayHostsOf(config: Config): string[] {
  const url = config.lakefs.gatewayEndpoint || config.lakefs.endpoint;
  try {
    return url ? [new URL(url).host] : [];
  } catch {
    return [];
  }
}

/** What the configuration says about how an export runs, as the Exporter takes it. */
export function exporterSettings(
  config: Config,
): Pick<
  ExporterOptions,
  | "concurrency"
  | "copyMode"
  | "rounds"
  | "deletesLast"
  | "icebergRewrite"
  | "gatewayHosts"
  | "deferredInMemory"
  | "spillDirectory"
  | "retry"
  | "serverSideSources"
  | "rangedReads"
  | "presignedReads"
> {
  const { concurrency, copyMode, rounds, deletesLast, icebergRewrite, serverSideCopySources } =
    config.export;
  return {
    concurrency,
    copyMode,
    rounds: typeof rounds === "string" ? rounds : [...rounds],
    ...(deletesLast !== null ? { deletesLast } : {}),
    ...(icebergRewrite !== null ? { icebergRewrite } : {}),
    gatewayHosts: gatewayHostsOf(config),
    deferredInMemory: config.export.deferredInMemory,
    ...(config.export.spillDirectory ? { spillDirectory: config.export.spillDirectory } : {}),
    retry: config.retry,
    serverSideSources: serverSideCopySources,
    rangedReads: {
      thresholdBytes: config.export.multipartThresholdBytes,
      rangeBytes: config.export.multipartPartSizeBytes,
      parallel: config.export.parallelReads,
      inFlight: config.export.rangesInFlight,
    },
    presignedReads: config.export.presignedReads,
  };
}

export { s3DeadlinesOf } from "./s3/backend.ts";

export function createClients(config: Config, logger: Logger): Clients {
  const s3Deadlines = s3DeadlinesOf(config);
  const lakefs = new LakefsClient({
    endpoint: config.lakefs.endpoint,
    accessKeyId: config.lakefs.accessKeyId,
    secretAccessKey: config.lakefs.secretAccessKey,
    logger: logger.child({ component: "lakefs" }),
    connections: Math.max(16, config.export.concurrency * 2),
    retry: config.retry,
    connectTimeoutMs: config.lakefs.connectTimeoutMs,
    firstByteTimeoutMs: config.lakefs.firstByteTimeoutMs,
    headersTimeoutMs: config.lakefs.headersTimeoutMs,
    bodyTimeoutMs: config.lakefs.bodyTimeoutMs,
  });
  const destinations = new DestinationFactory(config, logger);
  const gateway = createS3Client({
    endpoint: config.lakefs.gatewayEndpoint || config.lakefs.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    maxSockets: Math.max(16, config.export.concurrency * 2),
    connectTimeoutMs: config.lakefs.connectTimeoutMs,
    // The gateway answers reads as the API does; its writes (used by tests and the demo) are
    // retried by the SDK, so the S3 deadlines' work allowances cover them.
    deadlines: {
      ...s3Deadlines,
      firstByteMs: config.lakefs.firstByteTimeoutMs,
      idleMs: config.lakefs.bodyTimeoutMs,
    },
    credentials: {
      accessKeyId: config.lakefs.accessKeyId,
      secretAccessKey: config.lakefs.secretAccessKey,
    },
    logger: logger.child({ component: "lakefs-gateway" }),
  });
  return {
    lakefs,
    gateway: lakefsGateway(gateway),
    destination: (uri) => destinations.open(uri),
    shareCapsWith: (members) => destinations.shareCapsWith(members),
    async close() {
      gateway.destroy();
      await destinations.close();
      await lakefs.close();
    },
  };
}

import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { S3Client } from "@aws-sdk/client-s3";
import type { Logger } from "pino";
import { defaultDeadlines } from "../http/deadlines.ts";
import type { Deadlines } from "../http/deadlines.ts";
import { DeadlineHttpHandler } from "./deadline-handler.ts";

export interface S3ClientOptions {
  /** An S3-compatible endpoint (MinIO, …). Unset: AWS, or the SDK's own AWS_ENDPOINT_URL. */
  endpoint?: string | undefined;
  region?: string | undefined;
  /** Path-style addressing, which MinIO and most S3-compatible servers need. */
  forcePathStyle?: boolean | undefined;
  /** Sockets per host: at least the export concurrency, or copies queue for a socket. */
  maxSockets?: number | undefined;
  /** Attempts per request inside the SDK (the exporter retries whole copies on top). */
  maxAttempts?: number | undefined;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined;
  /** Time to open a connection. */
  connectTimeoutMs?: number | undefined;
  /**
   * Request deadlines (see src/http/deadlines.ts): the first byte of an answer, a body that
   * stops moving, the work a server may do before it answers. A request cut by one fails
   * (retriable) instead of hanging its lane.
   */
  deadlines?: Partial<Deadlines> | undefined;
  /** The progress timeout alone: the same as `deadlines.idleMs`, which wins when both are set. */
  idleTimeoutMs?: number | undefined;
  /** The SDK's own warnings (a failed streaming request, say) go here instead of the console. */
  logger?: Logger | undefined;
}

export const defaultS3Timeouts = { connectTimeoutMs: 5_000 };

export function createS3Client(options: S3ClientOptions = {}): S3Client {
  const maxSockets = options.maxSockets ?? 64;
  const agentOptions = { keepAlive: true, maxSockets };
  const log = options.logger;
  return new S3Client({
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
    region: options.region ?? "us-east-1",
    forcePathStyle: options.forcePathStyle ?? true,
    maxAttempts: options.maxAttempts ?? 3,
    // Checksums only where S3 requires them (DeleteObjects): computing a CRC of every streamed
    // body costs CPU, and S3-compatible servers differ in which trailing checksums they accept.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    logger: {
      trace: () => undefined,
      debug: () => undefined,
      info: () => undefined,
      warn: (...args: unknown[]) => log?.debug({ sdk: args.map(String).join(" ") }, "S3 SDK"),
      error: (...args: unknown[]) => log?.debug({ sdk: args.map(String).join(" ") }, "S3 SDK"),
    },
    requestHandler: new DeadlineHttpHandler({
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent(agentOptions),
      connectTimeoutMs: options.connectTimeoutMs ?? defaultS3Timeouts.connectTimeoutMs,
      deadlines: {
        ...defaultDeadlines,
        ...(options.idleTimeoutMs !== undefined ? { idleMs: options.idleTimeoutMs } : {}),
        ...options.deadlines,
      },
    }),
  });
}

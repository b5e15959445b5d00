import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { S3Client } from "@aws-sdk/client-s3";
import { NodeHttpHandler } from "@smithy/node-http-handler";

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
}

export function createS3Client(options: S3ClientOptions = {}): S3Client {
  const maxSockets = options.maxSockets ?? 64;
  const agentOptions = { keepAlive: true, maxSockets };
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
    requestHandler: new NodeHttpHandler({
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent(agentOptions),
      connectionTimeout: 10_000,
      requestTimeout: 0,
    }),
  });
}

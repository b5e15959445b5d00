import type { DestinationCapabilities } from "../destination/destination.ts";
import { ObjectRefusedError } from "../errors.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** The sizes S3 allows (its documented multipart limits). */
export const S3_LIMITS = {
  maxParts: 10_000,
  minPartBytes: 5 * MiB,
  maxPartBytes: 5 * GiB,
  maxObjectBytes: 5 * 1024 * GiB,
} as const;

/**
 * The part size for an object of `size` bytes: the configured size, raised so that the object
 * fits in S3's 10,000 parts, rounded up to whole MiB.
 */
export function partSizeFor(size: number, configured: number): number {
  const needed = Math.ceil(size / S3_LIMITS.maxParts);
  const part = Math.max(configured, S3_LIMITS.minPartBytes, needed);
  return Math.ceil(part / MiB) * MiB;
}

export function assertStorable(size: number, path: string): void {
  if (size > S3_LIMITS.maxObjectBytes) {
    throw new ObjectRefusedError(`${path} is ${size} bytes, more than S3's largest object (5 TiB)`);
  }
}

/**
 * What an S3 destination declares (see DestinationCapabilities): CopyObject and UploadPartCopy
 * from any S3 bucket the credentials can read; DeleteObjects takes 1,000 keys; user metadata
 * names are HTTP tokens that S3 stores lower-cased; the ETag of an object written in one
 * request is its MD5, which is also lakeFS's checksum of an S3-stored object.
 */
export const S3_CAPABILITIES: DestinationCapabilities = Object.freeze({
  serverSideCopyFrom: Object.freeze(["s3"]),
  maxObjectBytes: S3_LIMITS.maxObjectBytes,
  maxParts: S3_LIMITS.maxParts,
  minPartBytes: S3_LIMITS.minPartBytes,
  maxPartBytes: S3_LIMITS.maxPartBytes,
  contentIdIsChecksum: true,
  maxDeleteBatch: 1000,
  metadata: Object.freeze({ names: "http-token", lowerCased: true }),
});

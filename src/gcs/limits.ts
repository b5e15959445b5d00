import type { DestinationCapabilities } from "../destination/destination.ts";
import { ObjectRefusedError } from "../errors.ts";

const KiB = 1024;
const TiB = 1024 ** 4;

/**
 * Google Cloud Storage's sizes ("Quotas & limits" and "Resumable uploads" in its documentation):
 * objects up to 5 TiB; every chunk of a resumable upload but the last a multiple of 256 KiB.
 * A resumable upload has no limit on its number of chunks: `maxChunks` is how many of the
 * smallest chunks the largest object takes, the most an upload can ever need.
 */
export const GCS_LIMITS = {
  maxObjectBytes: 5 * TiB,
  chunkMultipleBytes: 256 * KiB,
  maxChunks: (5 * TiB) / (256 * KiB),
  /** Object names: at most 1,024 bytes of UTF-8 ("Object naming requirements"). */
  maxNameBytes: 1024,
} as const;

/**
 * The chunk size of a resumable upload: the configured part size rounded up to a multiple of
 * 256 KiB (never less than one such multiple). A chunk is held in memory while it is sent.
 */
export function chunkSizeFor(configured: number): number {
  const m = GCS_LIMITS.chunkMultipleBytes;
  return Math.max(m, Math.ceil(configured / m) * m);
}

/** Refuses what GCS would refuse anyway, before any byte is sent. */
export function assertStorable(key: string, size: number, path: string): void {
  if (size > GCS_LIMITS.maxObjectBytes)
    throw new ObjectRefusedError(
      `${path} is ${size} bytes, more than GCS's largest object (5 TiB)`,
    );
  if (Buffer.byteLength(key) > GCS_LIMITS.maxNameBytes)
    throw new ObjectRefusedError(`${path}: the object name ${key} is longer than 1,024 bytes`);
  if (/[\r\n]/.test(key))
    throw new ObjectRefusedError(`${path}: a GCS object name cannot hold a line break`);
}

/**
 * What a GCS destination declares (see DestinationCapabilities). Copies server-side (rewrite)
 * from any `gs://` bucket the credentials can read. The contentId is the object's MD5
 * (`md5Hash`, hex), which every object written here has (a one-request upload, a resumable
 * upload and a rewrite of such an object all get one) and which equals lakeFS's checksum of an
 * object uploaded whole; only composite objects lack it (see contentIdOf). Custom metadata
 * keeps names as given, case included. deleteBatch takes as many paths as S3's does, so
 * callers batch the same; the deletes inside go a few at a time (see GcsDestination).
 */
export const GCS_CAPABILITIES: DestinationCapabilities = Object.freeze({
  serverSideCopyFrom: Object.freeze(["gs"]),
  maxObjectBytes: GCS_LIMITS.maxObjectBytes,
  maxParts: GCS_LIMITS.maxChunks,
  minPartBytes: GCS_LIMITS.chunkMultipleBytes,
  maxPartBytes: GCS_LIMITS.maxObjectBytes,
  contentIdIsChecksum: true,
  maxDeleteBatch: 1000,
  metadata: Object.freeze({ names: "http-token", lowerCased: false }),
});

/**
 * An object's contentId from its resource: the hex of `md5Hash`, else (a composite object,
 * which has only a CRC32C) `crc32c-<hex>`, which no MD5 checksum equals, so content is then
 * compared by reading it.
 */
export function contentIdOf(resource: { md5Hash?: string; crc32c?: string }): string {
  if (resource.md5Hash) return Buffer.from(resource.md5Hash, "base64").toString("hex");
  if (resource.crc32c) return `crc32c-${Buffer.from(resource.crc32c, "base64").toString("hex")}`;
  return "";
}

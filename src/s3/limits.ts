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

import type { DestinationCapabilities } from "../destination/destination.ts";
import { ObjectRefusedError } from "../errors.ts";

const MiB = 1024 * 1024;

/**
 * The sizes Azure Blob Storage allows a block blob (service version 2019-12-12 and later, which
 * the SDK sends): 50,000 committed blocks of up to 4,000 MiB each, so at most 200,000,000 MiB
 * (about 190.7 TiB); one Put Blob takes up to 5,000 MiB; Put Block From URL copies up to
 * 4,000 MiB a block.
 */
export const AZURE_LIMITS = {
  maxBlocks: 50_000,
  maxBlockBytes: 4000 * MiB,
  maxObjectBytes: 50_000 * 4000 * MiB,
  maxPutBlobBytes: 5000 * MiB,
} as const;

/**
 * The block size for an object of `size` bytes: the configured size, raised so that the object
 * fits in 50,000 blocks, rounded up to whole MiB (never above the 4,000 MiB a block takes, which
 * the largest storable object needs exactly).
 */
export function blockSizeFor(size: number, configured: number): number {
  const needed = Math.ceil(size / AZURE_LIMITS.maxBlocks);
  const block = Math.ceil(Math.max(configured, needed, 1) / MiB) * MiB;
  return Math.min(block, AZURE_LIMITS.maxBlockBytes);
}

export function assertStorable(size: number, path: string): void {
  if (size > AZURE_LIMITS.maxObjectBytes)
    throw new ObjectRefusedError(
      `${path} is ${size} bytes, more than Azure's largest block blob (50,000 blocks of 4,000 MiB)`,
    );
}

/**
 * What an Azure destination declares (see DestinationCapabilities). Server-side copies from
 * blobs of the same account (Put Block From URL; an account's key or SAS cannot authorize
 * another's); a blob batch takes 256 subrequests; metadata names are C# identifiers, which
 * src/azure/metadata-names.ts maps to and from. Every blob this backend writes carries the MD5
 * of its bytes (Azure computes it for a Put Blob; the block upload and the copy set it), and its
 * contentId is that MD5, so it equals lakeFS's checksum where that is an MD5 of the bytes.
 */
export const AZURE_CAPABILITIES: DestinationCapabilities = Object.freeze({
  serverSideCopyFrom: Object.freeze(["azure"]),
  maxObjectBytes: AZURE_LIMITS.maxObjectBytes,
  maxParts: AZURE_LIMITS.maxBlocks,
  minPartBytes: 1,
  maxPartBytes: AZURE_LIMITS.maxBlockBytes,
  contentIdIsChecksum: true,
  maxDeleteBatch: 256,
  metadata: Object.freeze({ names: "c-identifier", lowerCased: true }),
});

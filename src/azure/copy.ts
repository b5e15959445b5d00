import { randomBytes } from "node:crypto";
import type { BlobHTTPHeaders, BlockBlobClient } from "@azure/storage-blob";
import { DestinationError } from "../errors.ts";
import type { AzureAccount } from "./account.ts";
import { blockSizeFor } from "./limits.ts";
import { blockId } from "./upload.ts";

export interface BlockCopy {
  account: AzureAccount;
  source: { container: string; key: string };
  /** For messages. */
  what: string;
  target: BlockBlobClient;
  size: number;
  headers: BlobHTTPHeaders;
  metadata: Record<string, string>;
  blockBytes: number;
  concurrency: number;
  signal?: AbortSignal | undefined;
  fence?: (() => void) | undefined;
}

/**
 * Copies a blob of the same account by Put Block From URL, block by block, and Put Block List
 * with the new Content-Type, metadata and the source's Content-MD5: the blob appears at once
 * with its final properties (Copy Blob From URL would keep the source's Content-Type, and a
 * second request to replace it leaves a moment where the mirror shows the old one). The
 * source is read first: a missing one is "NotFound", one of another size than lakeFS says is
 * "PreconditionFailed"; neither is retried, and the caller streams instead.
 */
export async function copyBlocks(c: BlockCopy): Promise<void> {
  const { signal, fence } = c;
  const blob = c.account.container(c.source.container).getBlobClient(c.source.key);
  const props = await blob.getProperties({ abortSignal: signal });
  if (props.contentLength !== c.size)
    throw new DestinationError(
      `${c.what}: the source has ${props.contentLength} bytes, lakeFS says ${c.size}`,
      false,
      { reason: "PreconditionFailed" },
    );
  const source = await c.account.copySource(blob, signal);
  const blockSize = blockSizeFor(c.size, c.blockBytes);
  const tag = randomBytes(8).toString("hex");
  const count = Math.ceil(c.size / blockSize);
  const ids = Array.from({ length: count }, (_, i) => blockId(tag, i));
  let next = 0;
  let stopped = false;
  const worker = async () => {
    while (next < count && !stopped) {
      const i = next++;
      const offset = i * blockSize;
      fence?.();
      await c.target.stageBlockFromURL(
        ids[i]!,
        source.url,
        offset,
        Math.min(blockSize, c.size - offset),
        {
          abortSignal: signal,
          ...(source.sourceAuthorization
            ? { sourceAuthorization: source.sourceAuthorization }
            : {}),
        },
      );
    }
  };
  // One failed block stops the others from starting more.
  const stopOnError = () =>
    worker().catch((err: unknown) => {
      stopped = true;
      throw err;
    });
  await Promise.all(Array.from({ length: Math.min(c.concurrency, count) }, stopOnError));
  fence?.();
  await c.target.commitBlockList(ids, {
    blobHTTPHeaders: {
      ...c.headers,
      ...(props.contentMD5 ? { blobContentMD5: props.contentMD5 } : {}),
    },
    metadata: c.metadata,
    abortSignal: signal,
  });
}

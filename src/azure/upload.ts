import { createHash, randomBytes } from "node:crypto";
import type { Hash } from "node:crypto";
import { Readable, Transform } from "node:stream";
import type { BlobHTTPHeaders, BlockBlobClient } from "@azure/storage-blob";
import {
  DestinationError,
  LeaseLostError,
  ObjectRefusedError,
  isSourceFailure,
} from "../errors.ts";
import { toDestinationError } from "./azure-error.ts";
import { AZURE_LIMITS, assertStorable, blockSizeFor } from "./limits.ts";

export interface BlockUpload {
  blob: BlockBlobClient;
  /** The lakeFS path, for refusals. */
  path: string;
  /** For messages: `upload https://…`. */
  what: string;
  body: Readable;
  size: number;
  headers: BlobHTTPHeaders;
  /** Metadata as stored (names already mapped). */
  metadata: Record<string, string>;
  /** Streams at or above this size go up as blocks. */
  thresholdBytes: number;
  blockBytes: number;
  /** Blocks in flight at once (each buffers one block). */
  concurrency: number;
  signal?: AbortSignal | undefined;
  fence?: (() => void) | undefined;
}

/**
 * Block IDs of one upload: base64 of a fixed-length text (Azure wants every ID of a blob the
 * same length), a random upload tag so that concurrent uploads of one key never commit each
 * other's blocks, and the block's number.
 */
export function blockId(tag: string, index: number): string {
  return Buffer.from(`${tag}-${String(index).padStart(6, "0")}`).toString("base64");
}

/**
 * Passes `fence` with each chunk, hashes the bytes and counts them: a body longer than `size`,
 * or one that ends short, fails the stream, so the request never completes with wrong bytes.
 */
function checkedBody(size: number, hash: Hash, fence: (() => void) | undefined): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      try {
        fence?.();
        seen += chunk.length;
        if (seen > size)
          throw new DestinationError(`body longer than ${size} bytes`, true, { reason: "Network" });
        hash.update(chunk);
        done(null, chunk);
      } catch (err) {
        done(err as Error);
      }
    },
    flush(done) {
      done(
        seen === size
          ? null
          : new DestinationError(`body ended at ${seen} of ${size} bytes`, true, {
              reason: "Network",
            }),
      );
    },
  });
}

/**
 * Uploads a stream of known size: one Put Blob below the threshold, else Put Block for each
 * block and Put Block List, with blocks large enough for Azure's 50,000 and at most
 * `concurrency` of them buffered. The fence is passed with every chunk and before each
 * request, Put Block List included: that request makes the blob appear, so a process that lost
 * its lease never finishes an upload. The blob gets the MD5 of its bytes as Content-MD5 (Put
 * Blob computes it; Put Block List is given it), its contentId.
 */
export async function uploadBlocks(u: BlockUpload): Promise<void> {
  const { body, signal, fence } = u;
  const ac = new AbortController();
  const onAbort = () => ac.abort(signal?.reason);
  if (signal?.aborted) onAbort();
  signal?.addEventListener("abort", onAbort, { once: true });
  let bodyError: Error | undefined;
  const onBodyError = (err: Error) => {
    bodyError ??= err;
    ac.abort(err);
  };
  body.on("error", onBodyError);
  const hash = createHash("md5");
  try {
    assertStorable(u.size, u.path);
    const checked = checkedBody(u.size, hash, fence);
    checked.on("error", onBodyError);
    body.on("error", (err) => checked.destroy(err));
    body.pipe(checked);
    fence?.();
    if (u.size < Math.min(u.thresholdBytes, AZURE_LIMITS.maxPutBlobBytes)) {
      let taken = false;
      await u.blob.upload(
        () => {
          if (taken)
            return new Readable({
              read() {
                this.destroy(new Error("a streamed body cannot be sent twice"));
              },
            });
          taken = true;
          return checked;
        },
        u.size,
        { blobHTTPHeaders: u.headers, metadata: u.metadata, abortSignal: ac.signal },
      );
      if (bodyError) throw bodyError;
      return;
    }
    const ids = await stageAll(u, checked, ac.signal);
    if (bodyError) throw bodyError;
    fence?.();
    await u.blob.commitBlockList(ids, {
      blobHTTPHeaders: { ...u.headers, blobContentMD5: hash.digest() },
      metadata: u.metadata,
      abortSignal: ac.signal,
    });
  } catch (err) {
    body.destroy();
    const cause = bodyError ?? err;
    // The body's own failure is the source's (lakeFS, a pre-signed read): thrown as it is.
    if (isSourceFailure(bodyError)) throw bodyError;
    if (cause instanceof ObjectRefusedError || cause instanceof LeaseLostError) throw cause;
    if (err instanceof ObjectRefusedError || err instanceof LeaseLostError) throw err;
    throw toDestinationError(cause, u.what);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** Stages the body's blocks, at most `concurrency` in flight; their IDs in order. */
async function stageAll(u: BlockUpload, body: Readable, signal: AbortSignal): Promise<string[]> {
  const blockSize = blockSizeFor(u.size, u.blockBytes);
  const tag = randomBytes(8).toString("hex");
  const ids: string[] = [];
  const inFlight = new Set<Promise<void>>();
  let failed: Error | undefined;
  const stage = (index: number, block: Buffer) => {
    const id = blockId(tag, index);
    ids.push(id);
    u.fence?.();
    const p: Promise<void> = u.blob
      .stageBlock(id, block, block.length, { abortSignal: signal })
      .then(() => undefined)
      .catch((err: unknown) => {
        failed ??= err instanceof Error ? err : new Error(String(err));
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  try {
    for await (const chunk of body) {
      const c = chunk as Buffer;
      pending.push(c);
      pendingBytes += c.length;
      while (pendingBytes >= blockSize) {
        const all = Buffer.concat(pending);
        stage(ids.length, all.subarray(0, blockSize));
        pending = [all.subarray(blockSize)];
        pendingBytes = all.length - blockSize;
        while (inFlight.size >= u.concurrency && !failed) await Promise.race(inFlight);
        if (failed) throw failed;
      }
    }
    if (pendingBytes > 0 || ids.length === 0) stage(ids.length, Buffer.concat(pending));
  } finally {
    await Promise.all(inFlight);
  }
  if (failed) throw failed;
  return ids;
}

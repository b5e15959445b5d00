import { setMaxListeners } from "node:events";
import type { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import type { CompletedPart, S3Client } from "@aws-sdk/client-s3";
import { DestinationError } from "../errors.ts";

export interface MultipartTarget {
  bucket: string;
  key: string;
  meta: { contentType: string | undefined; metadata: Record<string, string> };
  signal?: AbortSignal | undefined;
  /**
   * Throws when this process may no longer write (its lease is gone). Checked right before
   * every request of the upload: CreateMultipartUpload, each part, and CompleteMultipartUpload,
   * the one that makes the object appear. A refusal aborts the upload instead of completing it.
   */
  fence?: (() => void) | undefined;
}

/** One part: its number, and how to send it (returns the part's ETag). */
export interface Part {
  number: number;
  send: (uploadId: string, signal: AbortSignal) => Promise<string | undefined>;
}

/**
 * Runs one multipart upload of the parts `parts` yields, in order, `concurrency` at a time.
 * `parts` is given the upload's own signal, which aborts on the caller's abort and on the first
 * failure. The first failure stops new parts and aborts those in flight; once every part
 * request has settled the upload is aborted, never completed, so nothing appears at the key
 * and no part lands after this returns. Nothing is visible at the key before
 * CompleteMultipartUpload succeeds (S3's multipart semantics), which is why it passes the fence
 * last of all.
 */
export async function multipartUpload(
  s3: S3Client,
  t: MultipartTarget,
  concurrency: number,
  parts: (signal: AbortSignal) => Iterator<Part> | AsyncIterator<Part>,
): Promise<void> {
  const fence = t.fence ?? (() => undefined);
  const stop = new AbortController();
  const signal = t.signal ? AbortSignal.any([t.signal, stop.signal]) : stop.signal;
  // Each part in flight listens on it.
  setMaxListeners(0, signal);
  fence();
  const { UploadId } = await s3.send(
    new CreateMultipartUploadCommand({
      Bucket: t.bucket,
      Key: t.key,
      ContentType: t.meta.contentType,
      Metadata: t.meta.metadata,
    }),
    { abortSignal: signal },
  );
  if (!UploadId) throw new DestinationError(`s3://${t.bucket}/${t.key}: no UploadId`, true);
  let failed: Error | undefined;
  const fail = (err: unknown) => {
    failed ??= err instanceof Error ? err : new Error(String(err));
    stop.abort(failed);
  };
  try {
    const done: CompletedPart[] = [];
    const source = parts(signal);
    // Workers pull from one iterator: an async generator queues concurrent next() calls, so
    // each part is taken once, and at most `concurrency` parts are held at a time.
    const worker = async () => {
      try {
        while (failed === undefined) {
          const next = await source.next();
          if (next.done === true || failed !== undefined) return;
          fence();
          const etag = await next.value.send(UploadId, signal);
          done.push({ PartNumber: next.value.number, ETag: etag });
        }
      } catch (err) {
        fail(err);
      }
    };
    await Promise.all(Array.from({ length: Math.max(concurrency, 1) }, worker));
    // No next() is pending now: this only lets a generator left at a part run its `finally`.
    await source.return?.();
    if (failed === undefined && t.signal?.aborted) fail(t.signal.reason);
    if (failed !== undefined) throw failed;
    done.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    fence();
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: t.bucket,
        Key: t.key,
        UploadId,
        MultipartUpload: { Parts: done },
      }),
      { abortSignal: signal },
    );
  } catch (err) {
    await s3
      .send(new AbortMultipartUploadCommand({ Bucket: t.bucket, Key: t.key, UploadId }))
      .catch(() => undefined);
    throw err;
  }
}

/**
 * The parts of a streamed body of `size` bytes, `partSize` each (the last one shorter). The
 * body is destroyed when the upload's signal aborts, so a worker waiting for bytes is released.
 * A body that ends early or runs long fails the upload: completing it would store an object of
 * the wrong length.
 */
export async function* streamParts(
  s3: S3Client,
  t: { bucket: string; key: string },
  body: Readable,
  size: number,
  partSize: number,
  signal: AbortSignal,
): AsyncGenerator<Part> {
  const onAbort = () => body.destroy(signal.reason instanceof Error ? signal.reason : undefined);
  if (signal.aborted) onAbort();
  signal.addEventListener("abort", onAbort, { once: true });
  const part = (number: number, data: Buffer): Part => ({
    number,
    send: async (UploadId, abortSignal) =>
      (
        await s3.send(
          new UploadPartCommand({
            Bucket: t.bucket,
            Key: t.key,
            UploadId,
            PartNumber: number,
            Body: data,
            ContentLength: data.length,
          }),
          { abortSignal },
        )
      ).ETag,
  });
  try {
    let held: Buffer[] = [];
    let heldBytes = 0;
    let total = 0;
    let number = 0;
    for await (const chunk of body as AsyncIterable<Buffer | string>) {
      let rest = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      total += rest.length;
      if (total > size) throw new DestinationError(`body of ${t.key} exceeds ${size} bytes`, true);
      while (heldBytes + rest.length >= partSize) {
        const take = partSize - heldBytes;
        held.push(rest.subarray(0, take));
        // A chunk that is a whole part (ranged reads hand on part-sized ranges) goes as it is.
        yield part(++number, held.length === 1 ? held[0]! : Buffer.concat(held, partSize));
        held = [];
        heldBytes = 0;
        rest = rest.subarray(take);
      }
      if (rest.length > 0) {
        held.push(rest);
        heldBytes += rest.length;
      }
    }
    if (total !== size)
      throw new DestinationError(`body of ${t.key} ended after ${total} of ${size} bytes`, true);
    if (heldBytes > 0 || number === 0) yield part(++number, Buffer.concat(held, heldBytes));
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  UploadPartCopyCommand,
} from "@aws-sdk/client-s3";
import type { CompletedPart, S3Client } from "@aws-sdk/client-s3";
import { TaskPool } from "../export/pool.ts";

/** `CopySource` is `bucket/key` with the key URL-encoded, keeping its slashes. */
export function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split("/").map(encodeURIComponent).join("/")}`;
}

export interface PartCopy {
  source: { bucket: string; key: string };
  bucket: string;
  key: string;
  size: number;
  meta: { contentType: string | undefined; metadata: Record<string, string> };
  partSize: number;
  /** Parts in flight at once. */
  concurrency: number;
  signal?: AbortSignal | undefined;
}

/**
 * A server-side copy in parts (UploadPartCopy), for objects CopyObject cannot take (over
 * 5 GiB) or that a caller wants copied in parallel. Parts go `concurrency` at a time; the
 * first failure stops new ones, and the upload is aborted once those in flight have settled,
 * so no part lands after this returns.
 */
export async function copyInParts(s3: S3Client, c: PartCopy): Promise<void> {
  const { UploadId } = await s3.send(
    new CreateMultipartUploadCommand({
      Bucket: c.bucket,
      Key: c.key,
      ContentType: c.meta.contentType,
      Metadata: c.meta.metadata,
    }),
    { abortSignal: c.signal },
  );
  try {
    const parts: CompletedPart[] = [];
    let failed: Error | undefined;
    // The first failure stops new parts; those in flight settle before the upload is aborted.
    const pool = new TaskPool(Math.max(c.concurrency, 1));
    for (let start = 0, n = 1; start < c.size; start += c.partSize, n++) {
      if (failed !== undefined) break;
      const end = Math.min(start + c.partSize, c.size) - 1;
      await pool.submit(async () => {
        try {
          const res = await s3.send(
            new UploadPartCopyCommand({
              Bucket: c.bucket,
              Key: c.key,
              UploadId,
              PartNumber: n,
              CopySource: copySource(c.source.bucket, c.source.key),
              CopySourceRange: `bytes=${start}-${end}`,
            }),
            { abortSignal: c.signal },
          );
          parts.push({ PartNumber: n, ETag: res.CopyPartResult?.ETag });
        } catch (err) {
          failed ??= err instanceof Error ? err : new Error(String(err));
        }
      });
    }
    await pool.drain();
    if (failed !== undefined) throw failed;
    parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: c.bucket,
        Key: c.key,
        UploadId,
        MultipartUpload: { Parts: parts },
      }),
      { abortSignal: c.signal },
    );
  } catch (err) {
    await s3
      .send(new AbortMultipartUploadCommand({ Bucket: c.bucket, Key: c.key, UploadId }))
      .catch(() => undefined);
    throw err;
  }
}

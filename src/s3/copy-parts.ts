import { UploadPartCopyCommand } from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import { multipartUpload } from "./multipart.ts";
import type { Part } from "./multipart.ts";

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
  /** Passed right before every part and the Complete (see MultipartTarget). */
  fence?: (() => void) | undefined;
}

/**
 * A server-side copy in parts (UploadPartCopy), for objects CopyObject cannot take (over
 * 5 GiB) or that a caller wants copied in parallel. A large copy can take minutes: every part
 * and the Complete pass the fence, so a holder that lost its lease meanwhile (paused, or its
 * clock moved on) aborts the upload instead of landing it over a newer holder's writes.
 */
export async function copyInParts(s3: S3Client, c: PartCopy): Promise<void> {
  const CopySource = copySource(c.source.bucket, c.source.key);
  function* parts(): Generator<Part> {
    for (let start = 0, n = 1; start < c.size; start += c.partSize, n++) {
      const number = n;
      const range = `bytes=${start}-${Math.min(start + c.partSize, c.size) - 1}`;
      yield {
        number,
        send: async (UploadId, abortSignal) =>
          (
            await s3.send(
              new UploadPartCopyCommand({
                Bucket: c.bucket,
                Key: c.key,
                UploadId,
                PartNumber: number,
                CopySource,
                CopySourceRange: range,
              }),
              { abortSignal },
            )
          ).CopyPartResult?.ETag,
      };
    }
  }
  await multipartUpload(
    s3,
    { bucket: c.bucket, key: c.key, meta: c.meta, signal: c.signal, fence: c.fence },
    c.concurrency,
    parts,
  );
}

import { Transform } from "node:stream";
import type { Readable } from "node:stream";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import type { ObjectMeta } from "../destination/destination.ts";
import { LeaseLostError, ObjectRefusedError, isSourceFailure } from "../errors.ts";
import { withWriteFence } from "../http/timed-streams.ts";
import { assertStorable, partSizeFor } from "./limits.ts";
import { multipartUpload, streamParts } from "./multipart.ts";
import { toDestinationError } from "./s3-error.ts";

export interface StreamUpload {
  bucket: string;
  key: string;
  /** The lakeFS path, for refusals. */
  path: string;
  /** For messages: `upload s3://bucket/key`. */
  what: string;
  body: Readable;
  size: number;
  meta: ObjectMeta;
  multipartThresholdBytes: number;
  multipartPartSizeBytes: number;
  multipartQueueSize: number;
  signal?: AbortSignal | undefined;
  fence?: (() => void) | undefined;
}

/**
 * Uploads a stream of known size: one PutObject, or a multipart upload above the threshold
 * with parts large enough for S3's 10,000-part limit. Parts in flight are bounded so that a
 * huge object's larger parts do not multiply the memory one upload holds.
 *
 * `fence` throws when this process may no longer write. A PutObject passes it before it is
 * sent and with every chunk of its body, so a process paused in the middle of an upload
 * cannot finish it when it wakes: the refused chunk aborts the request before S3 has the body
 * whole. A multipart upload passes it before each part and before CompleteMultipartUpload,
 * the request that makes the object appear, and is aborted when it refuses.
 */
export async function uploadStream(s3: S3Client, u: StreamUpload): Promise<void> {
  const { body, signal, fence } = u;
  // The SDK pipes the body into its request, and a pipe does not pass a source's error on:
  // a body cut short (lakeFS's answer broken off) would leave the upload waiting for bytes
  // that never come. The body's error aborts the request instead.
  const ac = new AbortController();
  const onAbort = () => ac.abort(signal?.reason);
  if (signal?.aborted) onAbort();
  signal?.addEventListener("abort", onAbort, { once: true });
  let bodyError: unknown;
  const onBodyError = (err: unknown) => {
    bodyError ??= err;
    ac.abort(err);
  };
  // Kept for the body's whole life: an error after the upload must not go unhandled either.
  body.on("error", onBodyError);
  try {
    assertStorable(u.size, u.path);
    if (u.size < u.multipartThresholdBytes || u.size === 0) {
      fence?.();
      // Passed again by the HTTP handler right before the body's bytes go out: a process
      // paused after this check must not send them when it resumes without the lease.
      await withWriteFence(fence, () =>
        s3.send(
          new PutObjectCommand({
            Bucket: u.bucket,
            Key: u.key,
            Body: fence ? fencedBody(body, fence, onBodyError) : body,
            ContentLength: u.size,
            ContentType: u.meta.contentType,
            Metadata: u.meta.metadata,
          }),
          { abortSignal: ac.signal },
        ),
      );
      return;
    }
    const partSize = partSizeFor(u.size, u.multipartPartSizeBytes);
    const budget = u.multipartPartSizeBytes * u.multipartQueueSize;
    const target = { bucket: u.bucket, key: u.key };
    // An own loop rather than lib-storage's Upload: that one sends its parts and its Complete
    // without the caller's signal (an abort leaves them running) and offers no hook between
    // the last part and the Complete, where the fence must be passed.
    await multipartUpload(
      s3,
      { ...target, meta: u.meta, signal: ac.signal, fence },
      Math.max(1, Math.min(u.multipartQueueSize, Math.floor(budget / partSize))),
      (partSignal) => streamParts(s3, target, body, u.size, partSize, partSignal),
    );
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

/** `body` with `fence` passed before each chunk; a refusal errors the stream (see uploadStream). */
function fencedBody(body: Readable, fence: () => void, onError: (err: unknown) => void): Readable {
  const fenced = new Transform({
    transform(chunk: Buffer, _enc, done) {
      try {
        fence();
        done(null, chunk);
      } catch (err) {
        done(err as Error);
      }
    },
  });
  body.on("error", (err) => fenced.destroy(err));
  fenced.once("error", (err) => {
    onError(err);
    body.destroy();
  });
  return body.pipe(fenced);
}

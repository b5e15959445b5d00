import type { Readable } from "node:stream";
import {
  CopyObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import { ObjectRefusedError } from "../errors.ts";
import { S3_LIMITS, assertStorable, partSizeFor } from "./limits.ts";
import { copyInParts, copySource } from "./copy-parts.ts";
import type { LeanS3 } from "./lean.ts";
import { toDestinationError } from "./s3-error.ts";
import type { S3Location } from "./uri.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

export interface TransferSizes {
  /** Streamed objects at or above this size go up as multipart uploads. */
  multipartThresholdBytes: number;
  multipartPartSizeBytes: number;
  /** Parts of one streamed upload in flight at once (each buffers one part). */
  multipartQueueSize: number;
  /**
   * Server-side copies at or above this size go as parts (UploadPartCopy); CopyObject takes at
   * most 5 GiB. Below it one CopyObject keeps the source's ETag, which is how --sync and
   * verify compare content without reading it.
   */
  copyMultipartThresholdBytes: number;
  copyPartSizeBytes: number;
  /** Parts of one server-side copy in flight at once. */
  copyPartConcurrency: number;
}

export const defaultTransferSizes: TransferSizes = {
  multipartThresholdBytes: 64 * MiB,
  multipartPartSizeBytes: 16 * MiB,
  multipartQueueSize: 4,
  copyMultipartThresholdBytes: 5 * GiB,
  copyPartSizeBytes: 512 * MiB,
  copyPartConcurrency: 8,
};

/** What a mirrored object carries besides its bytes, exactly as S3 should store it. */
export interface ObjectMeta {
  contentType: string | undefined;
  /** User metadata by lower-case name, values already header-safe (see gatewayMetadata). */
  metadata: Record<string, string>;
}

export interface ListedObject {
  /** Relative to the destination prefix. */
  path: string;
  size: number;
  etag: string;
}

/** What HEAD tells about a mirrored object. */
export interface HeadResult {
  size: number;
  etag: string;
  contentType: string | undefined;
  metadata: Record<string, string>;
}

/** Writes, deletes and lists objects under one `s3://bucket/prefix/`. */
export class S3Destination {
  readonly bucket: string;
  readonly prefix: string;
  readonly #s3: S3Client;
  readonly #sizes: TransferSizes;

  readonly #lean: LeanS3 | undefined;

  /**
   * `lean`: send CopyObject and HeadObject, an export's per-object requests, by the lean
   * request path built on the same client (see LeanS3); without it every request goes through
   * the SDK, with whatever middleware the client carries.
   */
  constructor(
    s3: S3Client,
    location: S3Location,
    sizes: Partial<TransferSizes> = {},
    lean?: LeanS3,
  ) {
    this.#s3 = s3;
    this.bucket = location.bucket;
    this.prefix = location.prefix;
    this.#sizes = { ...defaultTransferSizes, ...sizes };
    this.#lean = lean;
  }

  key(path: string): string {
    return this.prefix + path;
  }

  /** Copies inside the object store: no bytes pass through this process. */
  async serverSideCopy(
    source: { bucket: string; key: string },
    path: string,
    size: number,
    meta: ObjectMeta,
    signal?: AbortSignal,
  ): Promise<void> {
    assertStorable(size, path);
    const Key = this.key(path);
    const what = `copy s3://${source.bucket}/${source.key} to s3://${this.bucket}/${Key}`;
    try {
      if (size >= this.#sizes.copyMultipartThresholdBytes) {
        await copyInParts(this.#s3, {
          source,
          bucket: this.bucket,
          key: Key,
          size,
          meta,
          partSize: Math.min(
            partSizeFor(size, this.#sizes.copyPartSizeBytes),
            S3_LIMITS.maxPartBytes,
          ),
          concurrency: this.#sizes.copyPartConcurrency,
          signal,
        });
        return;
      }
      const route = await this.#lean?.route(this.bucket);
      if (route) {
        await this.#lean!.copyObject(
          what,
          route,
          {
            copySource: copySource(source.bucket, source.key),
            key: Key,
            contentType: meta.contentType,
            metadata: meta.metadata,
          },
          signal,
        );
        return;
      }
      await this.#s3.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key,
          CopySource: copySource(source.bucket, source.key),
          // REPLACE: the metadata comes from the lakeFS entry, not the physical object.
          MetadataDirective: "REPLACE",
          ContentType: meta.contentType,
          Metadata: meta.metadata,
        }),
        { abortSignal: signal },
      );
    } catch (err) {
      throw toDestinationError(err, what);
    }
  }

  /**
   * Uploads a stream of known size: one PutObject, or a multipart upload above the threshold
   * with parts large enough for S3's 10,000-part limit. Parts in flight are bounded so that a
   * huge object's larger parts do not multiply the memory one upload holds.
   */
  async putStream(
    path: string,
    body: Readable,
    size: number,
    meta: ObjectMeta,
    signal?: AbortSignal,
  ): Promise<void> {
    const Key = this.key(path);
    const what = `upload s3://${this.bucket}/${Key}`;
    const params = {
      Bucket: this.bucket,
      Key,
      Body: body,
      ContentType: meta.contentType,
      Metadata: meta.metadata,
    };
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
      assertStorable(size, path);
      if (size < this.#sizes.multipartThresholdBytes) {
        await this.#s3.send(new PutObjectCommand({ ...params, ContentLength: size }), {
          abortSignal: ac.signal,
        });
        return;
      }
      const partSize = partSizeFor(size, this.#sizes.multipartPartSizeBytes);
      const budget = this.#sizes.multipartPartSizeBytes * this.#sizes.multipartQueueSize;
      // Loaded here: most exports never stream an object this large, and the module costs
      // start-up time to every one-off CLI run.
      const { Upload } = await import("@aws-sdk/lib-storage");
      const upload = new Upload({
        client: this.#s3,
        params,
        partSize,
        queueSize: Math.max(
          1,
          Math.min(this.#sizes.multipartQueueSize, Math.floor(budget / partSize)),
        ),
        leavePartsOnError: false,
      });
      const stop = () => void upload.abort();
      ac.signal.addEventListener("abort", stop, { once: true });
      try {
        await upload.done();
      } finally {
        ac.signal.removeEventListener("abort", stop);
      }
    } catch (err) {
      body.destroy();
      if (err instanceof ObjectRefusedError) throw err;
      throw toDestinationError(bodyError ?? err, what);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  async putText(
    path: string,
    text: string,
    signal?: AbortSignal,
    contentType = "text/plain; charset=utf-8",
  ): Promise<void> {
    const Key = this.key(path);
    try {
      await this.#s3.send(
        new PutObjectCommand({ Bucket: this.bucket, Key, Body: text, ContentType: contentType }),
        { abortSignal: signal },
      );
    } catch (err) {
      throw toDestinationError(err, `write s3://${this.bucket}/${Key}`);
    }
  }

  /**
   * Writes a small object only if its current ETag matches (`ifMatch`) or it does not exist yet
   * (`ifNoneMatch: "*"`), the S3 conditional writes AWS and MinIO honour. Returns the new ETag,
   * or undefined when the condition did not hold (412, or 409 for a concurrent conditional write).
   */
  async putConditional(
    path: string,
    text: string,
    condition: { ifMatch: string } | { ifNoneMatch: "*" },
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const Key = this.key(path);
    try {
      const res = await this.#s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key,
          Body: text,
          ContentType: "application/json",
          ...("ifMatch" in condition
            ? { IfMatch: condition.ifMatch }
            : { IfNoneMatch: condition.ifNoneMatch }),
        }),
        { abortSignal: signal },
      );
      return res.ETag ?? "";
    } catch (err) {
      const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
      if (status === 412 || status === 409) return undefined;
      throw toDestinationError(err, `write s3://${this.bucket}/${Key} conditionally`);
    }
  }

  /** A small object's text with its ETag, or undefined when there is no such key. */
  async getWithEtag(
    path: string,
    signal?: AbortSignal,
  ): Promise<{ text: string; etag: string } | undefined> {
    const Key = this.key(path);
    try {
      const res = await this.#s3.send(new GetObjectCommand({ Bucket: this.bucket, Key }), {
        abortSignal: signal,
      });
      return { text: (await res.Body?.transformToString("utf8")) ?? "", etag: res.ETag ?? "" };
    } catch (err) {
      if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404)
        return undefined;
      throw toDestinationError(err, `read s3://${this.bucket}/${Key}`);
    }
  }

  /** A small object's text, or undefined when there is no such key. */
  async getText(path: string, signal?: AbortSignal): Promise<string | undefined> {
    return (await this.getWithEtag(path, signal))?.text;
  }

  /**
   * Deletes up to 1,000 paths in one DeleteObjects request (the S3 limit). Deleting a missing
   * key is a success in S3, so a re-run is harmless. Returns the paths S3 refused, with why.
   */
  async deleteBatch(
    paths: string[],
    signal?: AbortSignal,
  ): Promise<{ path: string; error: string }[]> {
    if (paths.length === 0) return [];
    if (paths.length > 1000) throw new TypeError("deleteBatch takes at most 1000 paths");
    try {
      const res = await this.#s3.send(
        new DeleteObjectsCommand({
          Bucket: this.bucket,
          Delete: { Objects: paths.map((p) => ({ Key: this.key(p) })), Quiet: true },
        }),
        { abortSignal: signal },
      );
      return (res.Errors ?? []).map((e) => ({
        path: (e.Key ?? "").slice(this.prefix.length),
        error: `${e.Code ?? "Error"}: ${e.Message ?? ""}`.trim(),
      }));
    } catch (err) {
      throw toDestinationError(
        err,
        `delete ${paths.length} keys under s3://${this.bucket}/${this.prefix}`,
      );
    }
  }

  async head(path: string, signal?: AbortSignal): Promise<HeadResult | undefined> {
    try {
      const route = await this.#lean?.route(this.bucket);
      if (route)
        return await this.#lean!.headObject(
          `head s3://${this.bucket}/${this.key(path)}`,
          route,
          this.key(path),
          signal,
        );
      const res = await this.#s3.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(path) }),
        { abortSignal: signal },
      );
      return {
        size: res.ContentLength ?? 0,
        etag: (res.ETag ?? "").replaceAll('"', ""),
        contentType: res.ContentType,
        metadata: res.Metadata ?? {},
      };
    } catch (err) {
      if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404)
        return undefined;
      throw toDestinationError(err, `head s3://${this.bucket}/${this.key(path)}`);
    }
  }

  /** Every object under the prefix (or a sub-prefix of it), a page at a time, in key order. */
  async *list(subPrefix = "", signal?: AbortSignal): AsyncGenerator<ListedObject[]> {
    let ContinuationToken: string | undefined;
    do {
      let res;
      try {
        res = await this.#s3.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.prefix + subPrefix,
            ContinuationToken,
          }),
          { abortSignal: signal },
        );
      } catch (err) {
        throw toDestinationError(err, `list s3://${this.bucket}/${this.prefix}${subPrefix}`);
      }
      yield (res.Contents ?? []).map((o) => ({
        path: (o.Key ?? "").slice(this.prefix.length),
        size: o.Size ?? 0,
        etag: (o.ETag ?? "").replaceAll('"', ""),
      }));
      ContinuationToken = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }
}

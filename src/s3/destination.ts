import type { Readable } from "node:stream";
import {
  CopyObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import type {
  DeleteRefusal,
  Destination,
  HeadResult,
  ListedObject,
  ObjectMeta,
  StorageAddress,
  VersionedText,
  WriteCondition,
} from "../destination/destination.ts";
import { LeaseLostError } from "../errors.ts";
import { S3_CAPABILITIES, S3_LIMITS, assertStorable, partSizeFor } from "./limits.ts";
import { copyInParts, copySource } from "./copy-parts.ts";
import { copyRequestOptions } from "./deadline-handler.ts";
import type { LeanS3 } from "./lean.ts";
import { s3Status, toDestinationError } from "./s3-error.ts";
import { uploadStream } from "./upload.ts";
import { formatS3Uri, s3Object } from "./uri.ts";
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
  /** Keys per ListObjectsV2 page; undefined: S3's own page (1,000, also its most). */
  listPageKeys?: number | undefined;
}

export const defaultTransferSizes: TransferSizes = {
  multipartThresholdBytes: 64 * MiB,
  multipartPartSizeBytes: 16 * MiB,
  multipartQueueSize: 4,
  copyMultipartThresholdBytes: 5 * GiB,
  copyPartSizeBytes: 512 * MiB,
  copyPartConcurrency: 8,
};

/** The S3 backend of the destination contract: objects under one `s3://bucket/prefix/`. */
export class S3Destination implements Destination {
  readonly bucket: string;
  readonly prefix: string;
  readonly uri: string;
  readonly capabilities = S3_CAPABILITIES;
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
    this.uri = formatS3Uri(location);
    this.#sizes = { ...defaultTransferSizes, ...sizes };
    this.#lean = lean;
  }

  key(path: string): string {
    return this.prefix + path;
  }

  describe(path = ""): string {
    return this.uri + path;
  }

  at(prefix: string): S3Destination {
    return new S3Destination(this.#s3, { bucket: this.bucket, prefix }, this.#sizes, this.#lean);
  }

  /** CopyObject (UploadPartCopy above the threshold): no bytes pass through this process. */
  async serverSideCopy(
    from: StorageAddress,
    path: string,
    size: number,
    meta: ObjectMeta,
    signal?: AbortSignal,
    fence?: () => void,
  ): Promise<void> {
    const source = s3Object(from);
    assertStorable(size, path);
    const Key = this.key(path);
    const what = `copy s3://${source.bucket}/${source.key} to ${this.describe(path)}`;
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
          fence,
        });
        return;
      }
      const route = await this.#lean?.route(this.bucket);
      fence?.();
      if (route) {
        await this.#lean!.copyObject(
          what,
          route,
          {
            copySource: copySource(source.bucket, source.key),
            key: Key,
            contentType: meta.contentType,
            metadata: meta.metadata,
            size,
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
        // The request does not say how many bytes S3 copies before it answers; its deadline does.
        copyRequestOptions(size, signal),
      );
    } catch (err) {
      if (err instanceof LeaseLostError) throw err;
      throw toDestinationError(err, what);
    }
  }

  /** See uploadStream: one PutObject, or a multipart upload above the threshold. */
  putStream(
    path: string,
    body: Readable,
    size: number,
    meta: ObjectMeta,
    signal?: AbortSignal,
    fence?: () => void,
  ): Promise<void> {
    return uploadStream(this.#s3, {
      bucket: this.bucket,
      key: this.key(path),
      path,
      what: `upload ${this.describe(path)}`,
      body,
      size,
      meta,
      multipartThresholdBytes: this.#sizes.multipartThresholdBytes,
      multipartPartSizeBytes: this.#sizes.multipartPartSizeBytes,
      multipartQueueSize: this.#sizes.multipartQueueSize,
      signal,
      fence,
    });
  }

  async put(
    path: string,
    body: string | Uint8Array,
    meta: ObjectMeta,
    signal?: AbortSignal,
  ): Promise<void> {
    try {
      await this.#s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.key(path),
          Body: body,
          ContentType: meta.contentType,
          Metadata: meta.metadata,
        }),
        { abortSignal: signal },
      );
    } catch (err) {
      throw toDestinationError(err, `write ${this.describe(path)}`);
    }
  }

  putText(
    path: string,
    text: string,
    signal?: AbortSignal,
    contentType = "text/plain; charset=utf-8",
  ): Promise<void> {
    return this.put(path, text, { contentType, metadata: {} }, signal);
  }

  /**
   * `If-None-Match: *` to create, `If-Match: <ETag>` to replace: the S3 conditional writes AWS
   * and MinIO honour. 412, or 409 for a concurrent conditional write, is a condition that did
   * not hold. A replace of a missing key is 404 NoSuchKey: a DestinationError "NotFound".
   */
  async putConditional(
    path: string,
    text: string,
    condition: WriteCondition,
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    try {
      const res = await this.#s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.key(path),
          Body: text,
          ContentType: "application/json",
          ...("ifVersion" in condition ? { IfMatch: condition.ifVersion } : { IfNoneMatch: "*" }),
        }),
        { abortSignal: signal },
      );
      return res.ETag ?? "";
    } catch (err) {
      const status = s3Status(err);
      if (status === 412 || status === 409) return undefined;
      throw toDestinationError(err, `write ${this.describe(path)} conditionally`);
    }
  }

  /** A small object's text with its ETag as the version, or undefined when there is no such key. */
  async getVersioned(path: string, signal?: AbortSignal): Promise<VersionedText | undefined> {
    try {
      const res = await this.#s3.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.key(path) }),
        { abortSignal: signal },
      );
      return { text: (await res.Body?.transformToString("utf8")) ?? "", version: res.ETag ?? "" };
    } catch (err) {
      if (s3Status(err) === 404) return undefined;
      throw toDestinationError(err, `read ${this.describe(path)}`);
    }
  }

  async getText(path: string, signal?: AbortSignal): Promise<string | undefined> {
    return (await this.getVersioned(path, signal))?.text;
  }

  async read(path: string, signal?: AbortSignal): Promise<Readable | undefined> {
    try {
      const res = await this.#s3.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.key(path) }),
        { abortSignal: signal },
      );
      return res.Body as Readable;
    } catch (err) {
      if (s3Status(err) === 404) return undefined;
      throw toDestinationError(err, `read ${this.describe(path)}`);
    }
  }

  /** DeleteObjects, up to 1,000 keys (the S3 limit); Quiet, so only refusals come back. */
  async deleteBatch(paths: string[], signal?: AbortSignal): Promise<DeleteRefusal[]> {
    if (paths.length === 0) return [];
    if (paths.length > this.capabilities.maxDeleteBatch)
      throw new TypeError(`deleteBatch takes at most ${this.capabilities.maxDeleteBatch} paths`);
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
      throw toDestinationError(err, `delete ${paths.length} keys under ${this.uri}`);
    }
  }

  async head(path: string, signal?: AbortSignal): Promise<HeadResult | undefined> {
    const what = `head ${this.describe(path)}`;
    try {
      const route = await this.#lean?.route(this.bucket);
      if (route) return await this.#lean!.headObject(what, route, this.key(path), signal);
      const res = await this.#s3.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(path) }),
        { abortSignal: signal },
      );
      return {
        size: res.ContentLength ?? 0,
        contentId: (res.ETag ?? "").replaceAll('"', ""),
        contentType: res.ContentType,
        metadata: res.Metadata ?? {},
      };
    } catch (err) {
      if (s3Status(err) === 404) return undefined;
      throw toDestinationError(err, what);
    }
  }

  /** ListObjectsV2, which lists keys in UTF-8 binary order (the S3 API reference). */
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
            MaxKeys: this.#sizes.listPageKeys,
          }),
          { abortSignal: signal },
        );
      } catch (err) {
        throw toDestinationError(err, `list ${this.describe(subPrefix)}`);
      }
      yield (res.Contents ?? []).map((o) => ({
        path: (o.Key ?? "").slice(this.prefix.length),
        size: o.Size ?? 0,
        contentId: (o.ETag ?? "").replaceAll('"', ""),
        lastModified: o.LastModified ?? new Date(0),
      }));
      ContinuationToken = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }
}

import type { Logger } from "pino";
import { DestinationError, SourceObjectError } from "../errors.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import type { ObjectStats } from "../lakefs/types.ts";
import { withRetry } from "../retry.ts";
import type { RetryPolicy } from "../retry.ts";
import type { S3Destination } from "../s3/destination.ts";
import { parsePhysicalAddress } from "../s3/uri.ts";

export type CopyMode = "auto" | "server-side" | "stream";
export const copyModes: readonly CopyMode[] = ["auto", "server-side", "stream"];

export interface CopyOutcome {
  method: "server-side" | "stream";
  bytes: number;
}

/** S3 errors on CopyObject that mean "this client cannot read the source bucket". */
const UNREADABLE_SOURCE =
  /^(AccessDenied|AllAccessDisabled|NoSuchBucket|PermanentRedirect|InvalidAccessKeyId)\b|\((301|403)\)/;

/**
 * Copies one object of a commit to the destination. Server-side when the bytes live in S3
 * that the destination's credentials can read (nothing passes through this process), else
 * streamed from lakeFS's getObject. In `auto`, a source bucket that refuses a server-side copy
 * is remembered and streamed from then on.
 */
export class ObjectCopier {
  readonly #unreadableBuckets = new Set<string>();
  readonly lakefs: LakefsClient;
  readonly repository: string;
  readonly dest: S3Destination;
  readonly mode: CopyMode;
  readonly logger: Logger;
  readonly retry: Partial<RetryPolicy> | undefined;

  constructor(options: {
    lakefs: LakefsClient;
    repository: string;
    dest: S3Destination;
    mode: CopyMode;
    logger: Logger;
    retry?: Partial<RetryPolicy> | undefined;
  }) {
    this.lakefs = options.lakefs;
    this.repository = options.repository;
    this.dest = options.dest;
    this.mode = options.mode;
    this.logger = options.logger;
    this.retry = options.retry;
  }

  async copy(commitId: string, stats: ObjectStats, signal?: AbortSignal): Promise<CopyOutcome> {
    const size = stats.size_bytes ?? 0;
    const meta = { contentType: stats.content_type, metadata: stats.metadata };
    const source =
      this.mode === "stream" ? undefined : parsePhysicalAddress(stats.physical_address);

    if (this.mode === "server-side" && !source) {
      throw new SourceObjectError(
        `${stats.path} is stored at ${stats.physical_address}, which cannot be copied server-side (--copy-mode=server-side)`,
      );
    }
    if (source && !this.#unreadableBuckets.has(source.bucket)) {
      try {
        await this.#retrying(`copy ${stats.path}`, signal, () =>
          this.dest.serverSideCopy(source, stats.path, size, meta, signal),
        );
        return { method: "server-side", bytes: size };
      } catch (err) {
        if (this.mode === "server-side" || !(err instanceof DestinationError) || err.retriable)
          throw err;
        if (UNREADABLE_SOURCE.test(err.message)) {
          this.#unreadableBuckets.add(source.bucket);
          this.logger.warn(
            { sourceBucket: source.bucket, err: err.message },
            "server-side copy refused; streaming objects of this bucket through lakeFS from now on",
          );
        }
        // Anything else (the physical object is gone, say): streaming through lakeFS gives
        // lakeFS's own answer, which becomes the failure line if it fails too.
      }
    }
    await this.#retrying(`stream ${stats.path}`, signal, async () => {
      const { body } = await this.lakefs.getObject(this.repository, commitId, stats.path, signal);
      await this.dest.putStream(stats.path, body, size, meta, signal);
    });
    return { method: "stream", bytes: size };
  }

  #retrying<T>(
    operation: string,
    signal: AbortSignal | undefined,
    fn: () => Promise<T>,
  ): Promise<T> {
    return withRetry(fn, {
      operation,
      signal,
      logger: this.logger,
      ...(this.retry ? { policy: this.retry } : {}),
    });
  }
}

import { Transform } from "node:stream";
import type { Logger } from "pino";
import { DestinationError, ObjectRefusedError } from "../errors.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import type { ObjectStats } from "../lakefs/types.ts";
import { withRetry } from "../retry.ts";
import type { RetryPolicy } from "../retry.ts";
import type { ObjectMeta, S3Destination } from "../s3/destination.ts";
import { gatewayMetadata } from "../s3/metadata.ts";
import { parsePhysicalAddress, parseS3Uri } from "../s3/uri.ts";
import type { S3Location } from "../s3/uri.ts";

export type CopyMode = "auto" | "server-side" | "stream";
export const copyModes: readonly CopyMode[] = ["auto", "server-side", "stream"];

export interface CopyOutcome {
  method: "server-side" | "stream";
  bytes: number;
}

/**
 * S3 answers to CopyObject that mean "these credentials cannot read that source bucket": the
 * bucket is streamed through lakeFS from then on. (`NoSuchKey` is not one: the bytes are gone,
 * and lakeFS's own answer to the stream becomes the failure line.)
 */
const UNREADABLE_SOURCE_CODES = new Set([
  "AccessDenied",
  "AllAccessDisabled",
  "NoSuchBucket",
  "PermanentRedirect",
  "InvalidAccessKeyId",
  "AuthorizationHeaderMalformed",
]);

/** What a mirrored object carries besides its bytes: what the lakeFS S3 gateway serves. */
export function mirrorMeta(stats: ObjectStats): ObjectMeta {
  return {
    contentType: stats.content_type || "application/octet-stream",
    metadata: gatewayMetadata(stats.metadata).metadata,
  };
}

export interface ObjectCopierOptions {
  lakefs: LakefsClient;
  repository: string;
  dest: S3Destination;
  mode: CopyMode;
  logger: Logger;
  retry?: Partial<RetryPolicy> | undefined;
  /**
   * Where server-side copies may read, besides the repository's storage namespace (which is
   * always allowed): `s3://bucket/prefix/` locations, such as the sources of imports.
   */
  serverSideSources?: readonly string[] | undefined;
  /**
   * Checked at the last moment before each write request, retries included, and before each
   * chunk of a streamed body: throws (LeaseLostError) when this process may no longer write.
   */
  fence?: (() => void) | undefined;
}

/**
 * Copies one object of a commit to the destination. Server-side when its bytes live under the
 * repository's storage namespace (or a location the configuration allows) in S3 that the
 * destination's credentials can read: nothing passes through this process. Anything else is
 * streamed through lakeFS's getObject, so lakeFS's own authorization decides what a branch
 * writer can make the mirror read: an entry pointing at some other bucket never makes the
 * mirror copy it with the mirror's own credentials.
 */
export class ObjectCopier {
  readonly #unreadableBuckets = new Set<string>();
  readonly #o: ObjectCopierOptions;
  readonly #extraSources: S3Location[];
  #namespace: Promise<S3Location | undefined> | undefined;

  constructor(options: ObjectCopierOptions) {
    this.#o = options;
    this.#extraSources = (options.serverSideSources ?? []).map((u) => parseS3Uri(u));
  }

  async copy(commitId: string, stats: ObjectStats, signal?: AbortSignal): Promise<CopyOutcome> {
    const size = stats.size_bytes ?? 0;
    const meta = mirrorMeta(stats);
    const mode = this.#o.mode;
    const source = mode === "stream" ? undefined : parsePhysicalAddress(stats.physical_address);
    const allowed = source !== undefined && (await this.#allowed(source, signal));

    if (mode === "server-side" && !allowed) {
      throw new ObjectRefusedError(
        source
          ? `${stats.path} is stored at ${stats.physical_address}, outside the repository's storage namespace and export.serverSideCopySources (--copy-mode=server-side)`
          : `${stats.path} is stored at ${stats.physical_address}, which cannot be copied server-side (--copy-mode=server-side)`,
      );
    }
    if (allowed && !this.#unreadableBuckets.has(source.bucket)) {
      try {
        await this.#retrying(`copy ${stats.path}`, signal, () => {
          this.#o.fence?.();
          return this.#o.dest.serverSideCopy(source, stats.path, size, meta, signal);
        });
        return { method: "server-side", bytes: size };
      } catch (err) {
        if (mode === "server-side" || !(err instanceof DestinationError) || err.retriable)
          throw err;
        if (err.s3Code !== undefined && UNREADABLE_SOURCE_CODES.has(err.s3Code)) {
          this.#unreadableBuckets.add(source.bucket);
          this.#o.logger.warn(
            { sourceBucket: source.bucket, s3Code: err.s3Code, err: err.message },
            "server-side copy refused; streaming objects of this bucket through lakeFS from now on",
          );
        }
        // Anything else (the physical object is gone, say): streaming through lakeFS gives
        // lakeFS's own answer, which becomes the failure line if it fails too.
      }
    }
    await this.#retrying(`stream ${stats.path}`, signal, async () => {
      const { body } = await this.#o.lakefs.getObject(
        this.#o.repository,
        commitId,
        stats.path,
        signal,
      );
      const fence = this.#o.fence;
      if (!fence) return this.#o.dest.putStream(stats.path, body, size, meta, signal);
      fence();
      // A process paused in the middle of an upload must not finish it when it wakes: every
      // chunk passes the fence, and a refused chunk aborts the request before S3 has it whole.
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
      fenced.once("error", () => body.destroy());
      await this.#o.dest.putStream(stats.path, body.pipe(fenced), size, meta, signal);
    });
    return { method: "stream", bytes: size };
  }

  /** Starts learning the repository's storage namespace ahead of the first copy. */
  prepare(signal?: AbortSignal): void {
    if (this.#o.mode !== "stream") this.#storageNamespace(signal).catch(() => undefined);
  }

  async #allowed(source: { bucket: string; key: string }, signal?: AbortSignal) {
    const within = (loc: S3Location) =>
      loc.bucket === source.bucket && source.key.startsWith(loc.prefix);
    if (this.#extraSources.some(within)) return true;
    const ns = await this.#storageNamespace(signal);
    return ns !== undefined && within(ns);
  }

  #storageNamespace(signal?: AbortSignal): Promise<S3Location | undefined> {
    this.#namespace ??= this.#o.lakefs
      .getRepository(this.#o.repository, signal)
      .then((r) => {
        try {
          return parseS3Uri(r.storage_namespace);
        } catch {
          // A namespace outside S3 (local://, gs://…): nothing is copied server-side.
          return undefined;
        }
      })
      .catch((err: unknown) => {
        this.#namespace = undefined;
        throw err;
      });
    return this.#namespace;
  }

  #retrying<T>(
    operation: string,
    signal: AbortSignal | undefined,
    fn: () => Promise<T>,
  ): Promise<T> {
    return withRetry(fn, {
      operation,
      signal,
      logger: this.#o.logger,
      ...(this.#o.retry ? { policy: this.#o.retry } : {}),
    });
  }
}

import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import type { Logger } from "pino";
import type {
  Destination,
  DestinationReason,
  HeadResult,
  ObjectMeta,
  StorageAddress,
  StorageLocation,
} from "../destination/destination.ts";
import { parseLocation, parseStorageAddress, withinLocation } from "../destination/schemes.ts";
import { DestinationError, LakefsHttpError, ObjectRefusedError } from "../errors.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import { gatewayMetadata } from "../lakefs/gateway-metadata.ts";
import type { ObjectStats } from "../lakefs/types.ts";
import { withRetry } from "../retry.ts";
import type { RetryPolicy } from "../retry.ts";
import { scanDeltaLog } from "../iceberg/index.ts";
import type { RewrittenKind, TableRewrite } from "./table-rewrite.ts";
import {
  RangePermits,
  lakefsSource,
  presignedSource,
  rangedBody,
  readRange,
} from "./ranged-reads.ts";
import type { ObjectSource } from "./ranged-reads.ts";

export type CopyMode = "auto" | "server-side" | "stream";
export const copyModes: readonly CopyMode[] = ["auto", "server-side", "stream"];

export interface CopyOutcome {
  /** "unchanged": the destination already held the bytes and metadata (see `unlessSame`). */
  method: "server-side" | "stream" | "unchanged";
  bytes: number;
  /** Where a streamed copy read the bytes: through lakeFS, or by a pre-signed URL. */
  via?: ObjectSource["via"];
}

/** How streamed copies of large objects read them: ranges in parallel. */
export interface RangedReads {
  /** Objects of this size and more are read by ranges. */
  thresholdBytes: number;
  rangeBytes: number;
  /** Ranges of one object read at once. */
  parallel: number;
  /** Ranges held in memory at once by the export, over all its objects. */
  inFlight: number;
}

export interface CopyOptions {
  /**
   * A file the export rewrites is written only if the destination does not already hold its
   * rewrite with the same metadata (a reconcile: the rewrite differs from the source's bytes
   * by design, so the source's size and checksum cannot tell).
   */
  unlessSame?: boolean | undefined;
}

/**
 * Refusals of a server-side copy that mean "these credentials cannot read that source
 * container": the container is streamed through lakeFS from then on. (NotFound is not one: the
 * bytes are gone, and lakeFS's own answer to the stream becomes the failure line.)
 */
const UNREADABLE_SOURCE: ReadonlySet<DestinationReason> = new Set<DestinationReason>([
  "AccessDenied",
  "ContainerNotFound",
  "WrongEndpoint",
  "AuthenticationFailed",
]);

/** Whether an object at the destination carries the Content-Type and metadata it should. */
export function sameMeta(
  held: Pick<HeadResult, "contentType" | "metadata">,
  want: ObjectMeta,
): boolean {
  if (held.contentType !== want.contentType) return false;
  const a = Object.entries(held.metadata).sort();
  const b = Object.entries(want.metadata).sort();
  return a.length === b.length && a.every(([k, v], i) => b[i]?.[0] === k && b[i][1] === v);
}

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
  dest: Destination;
  mode: CopyMode;
  logger: Logger;
  retry?: Partial<RetryPolicy> | undefined;
  /**
   * Where server-side copies may read, besides the repository's storage namespace (which is
   * always allowed): locations such as `s3://bucket/prefix/`, the sources of imports.
   */
  serverSideSources?: readonly string[] | undefined;
  /**
   * Checked at the last moment before each write request, retries included, and before each
   * chunk of a streamed body: throws (LeaseLostError) when this process may no longer write.
   */
  fence?: (() => void) | undefined;
  /**
   * Delta Lake commit files (`_delta_log/<version>.json`) are read and refused when they name
   * files by absolute paths (shallow clones do): the mirrored table would still read those.
   */
  refuseAbsoluteDelta?: boolean | undefined;
  /** Streamed reads of large objects by parallel ranges; undefined: one read per object. */
  rangedReads?: RangedReads | undefined;
  /** Streamed copies read by URLs lakeFS pre-signs, where it signs for the store. */
  presignedReads?: boolean | undefined;
}

const DELTA_COMMIT = /(^|\/)_delta_log\/\d+\.json$/;

/**
 * Copies one object of a commit to the destination. Server-side when its bytes live under the
 * repository's storage namespace (or a location the configuration allows), in a store the
 * destination declares it copies from (`capabilities.serverSideCopyFrom`), and the destination's
 * credentials can read them: nothing passes through this process. Anything else is
 * streamed through lakeFS's getObject, so lakeFS's own authorization decides what a branch
 * writer can make the mirror read: an entry pointing at some other bucket never makes the
 * mirror copy it with the mirror's own credentials.
 */
export class ObjectCopier {
  /** `scheme://container` of sources found unreadable. */
  readonly #unreadable = new Set<string>();
  readonly #o: ObjectCopierOptions;
  readonly #extraSources: StorageLocation[];
  #namespace: Promise<StorageLocation | undefined> | undefined;
  /** Whether lakeFS pre-signs for this repository; undefined until asked. */
  #presigns: boolean | undefined;
  #permits: RangePermits | undefined;

  constructor(options: ObjectCopierOptions) {
    this.#o = options;
    this.#extraSources = (options.serverSideSources ?? []).map((u) => parseLocation(u));
  }

  /**
   * `rewrite`: the export's Iceberg rewrite; a file it rewrites is read from lakeFS, rewritten
   * in memory and written whole (never copied server-side, whatever the copy mode).
   */
  async copy(
    commitId: string,
    stats: ObjectStats,
    signal?: AbortSignal,
    rewrite?: TableRewrite,
    options: CopyOptions = {},
  ): Promise<CopyOutcome> {
    const refused = rewrite?.failureOf(stats.path);
    if (refused) throw refused;
    const kind = rewrite?.kindOf(stats.path);
    if (rewrite && kind)
      return this.#rewritten(commitId, stats, rewrite, kind, signal, options.unlessSame === true);
    if (this.#o.refuseAbsoluteDelta && DELTA_COMMIT.test(stats.path))
      return this.#deltaCommit(commitId, stats, signal);
    const size = stats.size_bytes ?? 0;
    const meta = mirrorMeta(stats);
    const mode = this.#o.mode;
    const source = mode === "stream" ? undefined : this.#copyable(stats.physical_address);
    const allowed = source !== undefined && (await this.#allowed(source, signal));

    if (mode === "server-side" && !allowed) {
      throw new ObjectRefusedError(
        source
          ? `${stats.path} is stored at ${stats.physical_address}, outside the repository's storage namespace and export.serverSideCopySources (--copy-mode=server-side)`
          : `${stats.path} is stored at ${stats.physical_address}, which cannot be copied server-side (--copy-mode=server-side)`,
      );
    }
    if (allowed && !this.#unreadable.has(containerOf(source))) {
      try {
        await this.#retrying(`copy ${stats.path}`, signal, () => {
          this.#o.fence?.();
          return this.#o.dest.serverSideCopy(source, stats.path, size, meta, signal, this.#o.fence);
        });
        return { method: "server-side", bytes: size };
      } catch (err) {
        if (mode === "server-side" || !(err instanceof DestinationError) || err.retriable)
          throw err;
        if (UNREADABLE_SOURCE.has(err.reason)) {
          this.#unreadable.add(containerOf(source));
          this.#o.logger.warn(
            {
              source: containerOf(source),
              reason: err.reason,
              storeCode: err.storeCode,
              err: err.message,
            },
            "server-side copy refused; streaming objects of this container through lakeFS from now on",
          );
        }
        // Anything else (the physical object is gone, say): streaming through lakeFS gives
        // lakeFS's own answer, which becomes the failure line if it fails too.
      }
    }
    const from = await this.#source(commitId, stats.path, signal);
    await this.#retrying(`stream ${stats.path}`, signal, async () => {
      this.#o.fence?.();
      const body = await this.#body(from, stats.path, size, signal);
      // The destination passes the fence before each of its requests, and with each chunk of
      // a single request's body: a process paused in the middle of an upload must not finish it.
      await this.#o.dest.putStream(stats.path, body, size, meta, signal, this.#o.fence);
    });
    return { method: "stream", bytes: size, via: from.via };
  }

  /**
   * Where a streamed copy reads: a URL lakeFS pre-signs for the object when `presignedReads` is
   * on and lakeFS signs for the repository's store (asked once per export), else lakeFS.
   */
  async #source(commitId: string, path: string, signal?: AbortSignal): Promise<ObjectSource> {
    const at = { lakefs: this.#o.lakefs, repository: this.#o.repository, ref: commitId, path };
    if (this.#o.presignedReads && this.#presigns !== false) {
      let signed: ObjectSource | undefined;
      try {
        // lakeFS's client retries the stat itself.
        signed = await presignedSource(at, signal);
      } catch (err) {
        // lakeFS failing to sign (some blockstores answer 500 without signing credentials):
        // this object is read through lakeFS, and the next one asks again.
        if (signal?.aborted || !(err instanceof LakefsHttpError) || err.status < 500) throw err;
        this.#o.logger.warn(
          { path, err: err.message },
          "lakeFS failed to pre-sign a read; reading this object through lakeFS",
        );
        return lakefsSource(at);
      }
      if (signed) {
        this.#presigns = true;
        return signed;
      }
      if (this.#presigns === undefined)
        this.#o.logger.warn(
          { repository: this.#o.repository },
          "lakeFS does not pre-sign reads for this repository's store; reading through lakeFS",
        );
      this.#presigns = false;
    }
    return lakefsSource(at);
  }

  /**
   * The object's bytes: one read, or from `rangedReads.thresholdBytes` on, ranges read in
   * parallel, each retried on its own (a broken-off body reads only its range again).
   */
  async #body(
    source: ObjectSource,
    path: string,
    size: number,
    signal?: AbortSignal,
  ): Promise<Readable> {
    const r = this.#o.rangedReads;
    if (!r || r.parallel < 2 || size < r.thresholdBytes)
      return (await source.open(undefined, signal)).body;
    this.#permits ??= new RangePermits(Math.max(r.inFlight, r.parallel));
    return rangedBody({
      size,
      rangeBytes: r.rangeBytes,
      parallel: r.parallel,
      permits: this.#permits,
      signal,
      read: (range, sig) =>
        this.#retrying(`read ${path} bytes ${range.start}-${range.end - 1}`, sig, () =>
          readRange(source, range, size, path, sig),
        ),
    });
  }

  async #rewritten(
    commitId: string,
    stats: ObjectStats,
    rewrite: TableRewrite,
    kind: RewrittenKind,
    signal: AbortSignal | undefined,
    unlessSame: boolean,
  ): Promise<CopyOutcome> {
    const bytes = await this.#read(commitId, stats.path, signal);
    const out = await rewrite.rewrite(stats.path, kind, bytes);
    const same = unlessSame && (await this.#holds(stats, out, signal));
    if (!same) await this.#write(stats, out, signal);
    // Recorded either way: the files that record this one's size are rewritten with it.
    rewrite.written(stats.path, out.length);
    return same ? { method: "unchanged", bytes: 0 } : { method: "stream", bytes: out.length };
  }

  /** Whether the destination holds exactly these bytes at the path, with the object's metadata. */
  async #holds(stats: ObjectStats, bytes: Uint8Array, signal?: AbortSignal): Promise<boolean> {
    const dest = this.#o.dest;
    const head = await this.#retrying(`head ${stats.path}`, signal, () =>
      dest.head(stats.path, signal),
    );
    if (!head || head.size !== bytes.length || !sameMeta(head, mirrorMeta(stats))) return false;
    let held: Uint8Array | undefined;
    try {
      held = await this.#retrying(`read ${stats.path} at the destination`, signal, async () => {
        const body = await dest.read(stats.path, signal);
        return body ? buffer(body) : undefined;
      });
    } catch (err) {
      // A mirror object that cannot be read back (archived, refused) cannot be compared: it
      // is written again, as it would be without the comparison.
      if (signal?.aborted || !(err instanceof DestinationError) || err.retriable) throw err;
      return false;
    }
    return held !== undefined && Buffer.from(held).equals(bytes);
  }

  /** A Delta commit file, read whole (they are small), refused if it names absolute paths. */
  async #deltaCommit(
    commitId: string,
    stats: ObjectStats,
    signal: AbortSignal | undefined,
  ): Promise<CopyOutcome> {
    const bytes = await this.#read(commitId, stats.path, signal);
    const absolute = scanDeltaLog(bytes);
    if (absolute.length > 0) {
      const table = stats.path.slice(0, stats.path.lastIndexOf("_delta_log/")) || "/";
      const first = absolute[0]!;
      throw new ObjectRefusedError(
        `${stats.path}: the Delta table at ${table} names ${absolute.length} file(s) by absolute path (line ${first.line}, ${first.action} ${first.path}), which its mirror would still read from there; the table is not exported past this version`,
      );
    }
    await this.#write(stats, bytes, signal);
    return { method: "stream", bytes: bytes.length };
  }

  #read(commitId: string, path: string, signal: AbortSignal | undefined): Promise<Uint8Array> {
    return this.#retrying(`read ${path}`, signal, async () => {
      const { body } = await this.#o.lakefs.getObject(this.#o.repository, commitId, path, signal);
      return buffer(body);
    });
  }

  #write(stats: ObjectStats, bytes: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
    return this.#retrying(`write ${stats.path}`, signal, async () => {
      this.#o.fence?.();
      await this.#o.dest.putStream(
        stats.path,
        Readable.from([bytes]),
        bytes.length,
        mirrorMeta(stats),
        signal,
        this.#o.fence,
      );
    });
  }

  /** Starts learning the repository's storage namespace ahead of the first copy. */
  prepare(signal?: AbortSignal): void {
    if (this.#o.mode !== "stream") this.#storageNamespace(signal).catch(() => undefined);
  }

  /** The physical address, when it is in a store the destination copies from. */
  #copyable(address: string): StorageAddress | undefined {
    const source = parseStorageAddress(address);
    if (!source || !this.#o.dest.capabilities.serverSideCopyFrom.includes(source.scheme))
      return undefined;
    return source;
  }

  async #allowed(source: StorageAddress, signal?: AbortSignal) {
    const within = (loc: StorageLocation) => withinLocation(source, loc);
    if (this.#extraSources.some(within)) return true;
    const ns = await this.#storageNamespace(signal);
    return ns !== undefined && within(ns);
  }

  #storageNamespace(signal?: AbortSignal): Promise<StorageLocation | undefined> {
    this.#namespace ??= this.#o.lakefs
      .getRepository(this.#o.repository, signal)
      .then((r) => {
        try {
          return parseLocation(r.storage_namespace);
        } catch {
          // A namespace in no store this build knows (local://…): nothing is copied server-side.
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

function containerOf(address: StorageAddress): string {
  return `${address.scheme}://${address.container}`;
}

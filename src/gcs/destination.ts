import type { Readable } from "node:stream";
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
import {
  DestinationError,
  LeaseLostError,
  ObjectRefusedError,
  isSourceFailure,
} from "../errors.ts";
import { gcsStatus, toDestinationError } from "./gcs-error.ts";
import type { GcsHttp } from "./http.ts";
import { ListOrderCheck } from "./list-order.ts";
import { GCS_CAPABILITIES, assertStorable, chunkSizeFor, contentIdOf } from "./limits.ts";
import { uploadResumable, uploadWhole } from "./upload.ts";
import type { ObjectResource } from "./upload.ts";
import { formatGcsUri, gcsObject } from "./uri.ts";
import type { GcsLocation } from "./uri.ts";

const MiB = 1024 * 1024;

export interface GcsSizes {
  /** Streamed objects at or above this size go up as resumable uploads, in chunks. */
  resumableThresholdBytes: number;
  /** Rounded up to a multiple of 256 KiB (see chunkSizeFor). */
  chunkBytes: number;
  /** Objects per listing page; undefined: the store's own (1,000, also its most). */
  listPageKeys?: number | undefined;
  /** Deletes of one deleteBatch in flight at once. */
  deleteConcurrency: number;
}

export const defaultGcsSizes: GcsSizes = {
  resumableThresholdBytes: 64 * MiB,
  chunkBytes: 16 * MiB,
  deleteConcurrency: 16,
};

/** The Google Cloud Storage backend of the destination contract: one `gs://bucket/prefix/`. */
export class GcsDestination implements Destination {
  readonly bucket: string;
  readonly prefix: string;
  readonly uri: string;
  readonly capabilities = GCS_CAPABILITIES;
  readonly #http: GcsHttp;
  readonly #sizes: GcsSizes;

  constructor(http: GcsHttp, location: GcsLocation, sizes: Partial<GcsSizes> = {}) {
    this.#http = http;
    this.bucket = location.bucket;
    this.prefix = location.prefix;
    this.uri = formatGcsUri(location);
    this.#sizes = { ...defaultGcsSizes, ...sizes };
  }

  key(path: string): string {
    return this.prefix + path;
  }

  describe(path = ""): string {
    return this.uri + path;
  }

  at(prefix: string): GcsDestination {
    return new GcsDestination(this.#http, { bucket: this.bucket, prefix }, this.#sizes);
  }

  async put(
    path: string,
    body: string | Uint8Array,
    meta: ObjectMeta,
    signal?: AbortSignal,
  ): Promise<void> {
    const bytes = typeof body === "string" ? Buffer.from(body) : body;
    await this.#write(path, bytes.length, `write ${this.describe(path)}`, () =>
      uploadWhole(this.#http, this.#target(path, meta, signal), bytes, bytes.length),
    );
  }

  putText(
    path: string,
    text: string,
    signal?: AbortSignal,
    contentType = "text/plain; charset=utf-8",
  ): Promise<void> {
    return this.put(path, text, { contentType, metadata: {} }, signal);
  }

  /** One request below the threshold, a resumable upload at or above it (see ./upload.ts). */
  async putStream(
    path: string,
    body: Readable,
    size: number,
    meta: ObjectMeta,
    signal?: AbortSignal,
    fence?: () => void,
  ): Promise<void> {
    // The body's own error ends the upload with it: a pipe would not pass it on.
    let bodyError: unknown;
    const onBodyError = (err: unknown) => (bodyError ??= err);
    body.on("error", onBodyError);
    try {
      const t = { ...this.#target(path, meta, signal), fence };
      await this.#write(path, size, `upload ${this.describe(path)}`, () =>
        size < this.#sizes.resumableThresholdBytes
          ? uploadWhole(this.#http, t, body, size)
          : uploadResumable(this.#http, t, body, size, chunkSizeFor(this.#sizes.chunkBytes)),
      );
    } catch (err) {
      body.destroy();
      // The body's own failure is the source's (lakeFS, a pre-signed read): thrown as it is.
      if (isSourceFailure(bodyError) && !(err instanceof LeaseLostError)) throw bodyError;
      if (bodyError !== undefined && !(err instanceof LeaseLostError))
        throw toDestinationError(bodyError, `upload ${this.describe(path)}`);
      throw err;
    }
  }

  /**
   * A rewrite (objects.rewrite), one call after another while the store answers with a rewrite
   * token (large objects, or across locations or storage classes), the fence passed before
   * each: the object appears only when the last call is done. The resource sent replaces the
   * source's Content-Type and metadata.
   */
  async serverSideCopy(
    from: StorageAddress,
    path: string,
    size: number,
    meta: ObjectMeta,
    signal?: AbortSignal,
    fence?: () => void,
  ): Promise<void> {
    const source = gcsObject(from);
    const what = `copy gs://${source.bucket}/${source.key} to ${this.describe(path)}`;
    const to = { bucket: this.bucket, key: this.key(path) };
    const resource = JSON.stringify({
      contentType: meta.contentType ?? "application/octet-stream",
      metadata: meta.metadata,
    });
    try {
      assertStorable(to.key, size, path);
      // The source as it is now: an object replaced since lakeFS recorded it (an import's
      // source rewritten in place) must not be copied under lakeFS's name. Its size is checked,
      // and the rewrite pinned to the generation read.
      const src = (await (
        await this.#http.send("GET", this.#http.objectUrl(source.bucket, source.key), { signal })
      ).body.json()) as { size?: string; generation?: string };
      if (Number(src.size) !== size)
        throw new DestinationError(
          `${what}: the source has ${src.size} bytes, lakeFS says ${size}`,
          false,
          { reason: "PreconditionFailed" },
        );
      const pinned: Record<string, string> = src.generation
        ? { ifSourceGenerationMatch: src.generation }
        : {};
      let token: string | undefined;
      do {
        fence?.();
        const res = await this.#http.send(
          "POST",
          this.#http.rewriteUrl(source, to, token ? { ...pinned, rewriteToken: token } : pinned),
          { headers: { "content-type": "application/json" }, body: resource, signal },
        );
        const answer = (await res.body.json()) as { done?: boolean; rewriteToken?: string };
        token = answer.done ? undefined : answer.rewriteToken;
      } while (token);
    } catch (err) {
      if (
        err instanceof LeaseLostError ||
        err instanceof ObjectRefusedError ||
        err instanceof DestinationError
      )
        throw err;
      throw toDestinationError(err, what);
    }
  }

  /**
   * Deletes the paths a few at a time (`deleteConcurrency`), each its own objects.delete: a
   * missing object is a success. A refusal of one path (403) is returned for it; a failure
   * worth retrying (throttling, 5xx, the network) fails the batch, which is safe to repeat.
   */
  async deleteBatch(paths: string[], signal?: AbortSignal): Promise<DeleteRefusal[]> {
    if (paths.length > this.capabilities.maxDeleteBatch)
      throw new TypeError(`deleteBatch takes at most ${this.capabilities.maxDeleteBatch} paths`);
    const refusals: DeleteRefusal[] = [];
    let next = 0;
    const worker = async () => {
      while (next < paths.length) {
        signal?.throwIfAborted();
        const path = paths[next++]!;
        try {
          await this.#http
            .send("DELETE", this.#http.objectUrl(this.bucket, this.key(path)), { signal })
            .then((r) => r.body.text());
        } catch (err) {
          if (gcsStatus(err) === 404) continue;
          const e = toDestinationError(err, `delete ${this.describe(path)}`);
          if (e.retriable) throw e;
          refusals.push({ path, error: e.message });
        }
      }
    };
    const n = Math.min(this.#sizes.deleteConcurrency, paths.length);
    await Promise.all(Array.from({ length: n }, worker));
    return refusals;
  }

  /** objects.list by page, checked to be in UTF-8 byte order (see ListOrderCheck). */
  async *list(subPrefix = "", signal?: AbortSignal): AsyncGenerator<ListedObject[]> {
    const what = `list ${this.describe(subPrefix)}`;
    const order = new ListOrderCheck(what);
    let pageToken: string | undefined;
    do {
      signal?.throwIfAborted();
      let items: ObjectResource[];
      try {
        const query: Record<string, string> = {
          prefix: this.prefix + subPrefix,
          fields: "items(name,size,md5Hash,crc32c,updated),nextPageToken",
          ...(this.#sizes.listPageKeys ? { maxResults: String(this.#sizes.listPageKeys) } : {}),
          ...(pageToken ? { pageToken } : {}),
        };
        const url = `${this.#http.endpoint}/storage/v1/b/${encodeURIComponent(this.bucket)}/o?${new URLSearchParams(query).toString()}`;
        const res = await this.#http.send("GET", url, { signal });
        const page = (await res.body.json()) as {
          items?: ObjectResource[];
          nextPageToken?: string;
        };
        items = page.items ?? [];
        pageToken = page.nextPageToken || undefined;
      } catch (err) {
        throw toDestinationError(err, what, "ContainerNotFound");
      }
      order.accept(items.map((o) => o.name));
      yield items.map((o) => ({
        path: o.name.slice(this.prefix.length),
        size: Number(o.size),
        contentId: contentIdOf(o),
        lastModified: new Date(o.updated ?? 0),
      }));
    } while (pageToken);
  }

  async head(path: string, signal?: AbortSignal): Promise<HeadResult | undefined> {
    try {
      const res = await this.#http.send("GET", this.#http.objectUrl(this.bucket, this.key(path)), {
        signal,
      });
      const o = (await res.body.json()) as ObjectResource;
      return {
        size: Number(o.size),
        contentId: contentIdOf(o),
        contentType: o.contentType,
        metadata: o.metadata ?? {},
      };
    } catch (err) {
      if (gcsStatus(err) === 404) return undefined;
      throw toDestinationError(err, `head ${this.describe(path)}`);
    }
  }

  async read(path: string, signal?: AbortSignal): Promise<Readable | undefined> {
    return (await this.#media(path, signal))?.body;
  }

  async getText(path: string, signal?: AbortSignal): Promise<string | undefined> {
    return (await this.getVersioned(path, signal))?.text;
  }

  /** The text and the generation it was read at (`x-goog-generation`): the version token. */
  async getVersioned(path: string, signal?: AbortSignal): Promise<VersionedText | undefined> {
    const media = await this.#media(path, signal);
    if (!media) return undefined;
    try {
      return { text: await media.body.text(), version: media.generation };
    } catch (err) {
      throw toDestinationError(err, `read ${this.describe(path)}`);
    }
  }

  /**
   * `ifGenerationMatch=0` to create, `ifGenerationMatch=<generation>` to replace: Cloud
   * Storage's preconditions. 412 is a condition that did not hold, a replace of a missing
   * object included (the store does not say which); the new generation is the version.
   */
  async putConditional(
    path: string,
    text: string,
    condition: WriteCondition,
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const bytes = Buffer.from(text);
    const meta = { contentType: "application/json", metadata: {} };
    const ifGenerationMatch = "ifVersion" in condition ? condition.ifVersion : "0";
    try {
      const written = await uploadWhole(
        this.#http,
        { ...this.#target(path, meta, signal), ifGenerationMatch },
        bytes,
        bytes.length,
      );
      return written.generation;
    } catch (err) {
      const status = gcsStatus(err);
      if (status === 412 || status === 409) return undefined;
      throw toDestinationError(
        err,
        `write ${this.describe(path)} conditionally`,
        "ContainerNotFound",
      );
    }
  }

  #target(path: string, meta: ObjectMeta, signal: AbortSignal | undefined) {
    return { bucket: this.bucket, key: this.key(path), meta, signal };
  }

  async #write(
    path: string,
    size: number,
    what: string,
    upload: () => Promise<ObjectResource>,
  ): Promise<void> {
    try {
      assertStorable(this.key(path), size, path);
      await upload();
    } catch (err) {
      if (err instanceof LeaseLostError || err instanceof ObjectRefusedError) throw err;
      // A write needs no object: a 404 is the bucket.
      throw toDestinationError(err, what, "ContainerNotFound");
    }
  }

  async #media(path: string, signal?: AbortSignal) {
    try {
      const res = await this.#http.send(
        "GET",
        this.#http.objectUrl(this.bucket, this.key(path), { alt: "media" }),
        { signal },
      );
      return { body: res.body, generation: String(res.headers["x-goog-generation"] ?? "") };
    } catch (err) {
      if (gcsStatus(err) === 404) return undefined;
      throw toDestinationError(err, `read ${this.describe(path)}`);
    }
  }
}

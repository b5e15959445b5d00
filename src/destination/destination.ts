import type { Readable } from "node:stream";

export type { DestinationReason } from "../errors.ts";

/**
 * The one contract every destination backend (S3 today; Azure Blob Storage and Google Cloud
 * Storage to come) implements. The exporter, ledger, lease, reconcile and verify know only this
 * module: what differs between stores is either hidden behind a method or declared in
 * `capabilities`, which callers read instead of asking which backend they hold.
 *
 * A destination is one prefix of one container (bucket): every `path` is relative to it. Keys
 * keep every character lakeFS allows (spaces, unicode, `%`, `+`, leading dots).
 */
export interface Destination {
  /** `scheme://container/prefix/` in the backend's canonical form: the name in messages and logs. */
  readonly uri: string;
  /** The key prefix inside the container: empty, or ends with "/". */
  readonly prefix: string;
  readonly capabilities: DestinationCapabilities;

  /** A path's full URI (`describe()` is `uri`), for messages. */
  describe(path?: string): string;
  /** A path's key inside the container (`prefix + path`). */
  key(path: string): string;
  /** The same container at another prefix (absolute inside the container, "" or ending in "/"). */
  at(prefix: string): Destination;

  /** Writes a small object whole, with its Content-Type and user metadata. */
  put(
    path: string,
    body: string | Uint8Array,
    meta: ObjectMeta,
    signal?: AbortSignal,
  ): Promise<void>;
  /** Writes a small text object (status files, the ledger). */
  putText(path: string, text: string, signal?: AbortSignal, contentType?: string): Promise<void>;
  /**
   * Uploads a stream of known size: one request, or parts (multipart, blocks) above the
   * backend's threshold, sized for its part limits. `fence` throws when this process may no
   * longer write: it is passed before every request, with every chunk of a single-request body,
   * and before the request that makes a multipart object appear, so a process paused mid-upload
   * cannot finish it when it wakes. A body that errors or ends short fails the upload.
   */
  putStream(
    path: string,
    body: Readable,
    size: number,
    meta: ObjectMeta,
    signal?: AbortSignal,
    fence?: () => void,
  ): Promise<void>;
  /**
   * Copies an object inside the store, no bytes through this process, replacing its Content-Type
   * and metadata with `meta`. Only for sources whose scheme `capabilities.serverSideCopyFrom`
   * names; a source these credentials cannot read fails with reason "AccessDenied" (or
   * "ContainerNotFound", "WrongEndpoint", "AuthenticationFailed"), not retriable.
   */
  serverSideCopy(
    source: StorageAddress,
    path: string,
    size: number,
    meta: ObjectMeta,
    signal?: AbortSignal,
    fence?: () => void,
  ): Promise<void>;
  /**
   * Deletes up to `capabilities.maxDeleteBatch` paths. A missing key is a success, so a re-run
   * is harmless. Returns the paths the store refused, with why.
   */
  deleteBatch(paths: string[], signal?: AbortSignal): Promise<DeleteRefusal[]>;
  /**
   * Every object under the prefix (or a sub-prefix of it), a page at a time, in UTF-8 byte
   * order of the keys: the order lakeFS lists in, which reconcile and verify merge against.
   */
  list(subPrefix?: string, signal?: AbortSignal): AsyncGenerator<ListedObject[]>;
  /** What the store holds for a path, or undefined when there is no such key. */
  head(path: string, signal?: AbortSignal): Promise<HeadResult | undefined>;
  /** An object's bytes, or undefined when there is no such key. */
  read(path: string, signal?: AbortSignal): Promise<Readable | undefined>;
  /** A small object's text, or undefined when there is no such key. */
  getText(path: string, signal?: AbortSignal): Promise<string | undefined>;
  /** A small object's text with its version token (for `putConditional`), or undefined. */
  getVersioned(path: string, signal?: AbortSignal): Promise<VersionedText | undefined>;
  /**
   * Writes a small JSON object only if it does not exist yet (`ifAbsent`) or its version is still
   * `ifVersion`. Returns the new version token, or undefined when the condition did not hold
   * (also when a concurrent conditional write won). A replace of a key that is gone fails with
   * reason "NotFound" on stores that say so (S3 does), or returns undefined.
   */
  putConditional(
    path: string,
    text: string,
    condition: WriteCondition,
    signal?: AbortSignal,
  ): Promise<string | undefined>;
  /**
   * Where writes are paced (AdaptiveDestination, `export.adaptiveConcurrency`): waits for a slot
   * for one task that writes (a copy with its retries, a delete batch), to be released when the
   * task ends. Absent: no pacing. Backends do not implement it; the pacing wraps them.
   */
  writeSlot?(signal?: AbortSignal): Promise<{ release(): void }>;
}

/** What a mirrored object carries besides its bytes. */
export interface ObjectMeta {
  contentType: string | undefined;
  /**
   * User metadata by lower-case name, values header-safe (see gatewayMetadata). A backend whose
   * store cannot keep a name as it is maps it reversibly (and maps it back in `head`), or
   * refuses the object with ObjectRefusedError; it never drops a name silently.
   */
  metadata: Record<string, string>;
}

export interface ListedObject {
  /** Relative to the destination prefix. */
  path: string;
  size: number;
  /**
   * The store's identity of the content (S3: the ETag without quotes). Equal to lakeFS's
   * checksum of the same bytes only where `capabilities.contentIdIsChecksum` says so.
   */
  contentId: string;
  /**
   * When the store wrote it, by the store's clock: the one clock every writer of the
   * destination shares (S3 lists it to the second, MinIO to the millisecond).
   */
  lastModified: Date;
}

/** What a HEAD tells about a mirrored object, metadata names as ObjectMeta has them. */
export interface HeadResult {
  size: number;
  contentId: string;
  contentType: string | undefined;
  metadata: Record<string, string>;
}

export interface VersionedText {
  text: string;
  /** Opaque: S3's ETag, Azure's ETag, a GCS generation. Only given back to putConditional. */
  version: string;
}

export type WriteCondition = { ifAbsent: true } | { ifVersion: string };

export interface DeleteRefusal {
  path: string;
  error: string;
}

/** An object in some store, as a lakeFS physical address or a storage namespace names it. */
export interface StorageAddress {
  /** The store's canonical scheme ("s3" also for `s3a://`). */
  scheme: string;
  /** The bucket or container; for stores with accounts, qualified by the account. */
  container: string;
  key: string;
}

/** A prefix of a container (a destination, a storage namespace, a copy source). */
export interface StorageLocation {
  scheme: string;
  container: string;
  /** Empty, or ends with "/". */
  prefix: string;
}

/**
 * What a backend can do, declared rather than guessed (callers read these, never the type).
 * Sizes are the store's documented limits.
 */
export interface DestinationCapabilities {
  /** Canonical schemes of StorageAddresses that serverSideCopy takes (empty: none). */
  serverSideCopyFrom: readonly string[];
  /** Largest object the store takes. */
  maxObjectBytes: number;
  /** Parts (blocks) of one multipart upload, and their sizes. */
  maxParts: number;
  minPartBytes: number;
  maxPartBytes: number;
  /**
   * Whether an object written in one request, or copied server-side from a lakeFS physical
   * object in one request, has a contentId equal to lakeFS's checksum of its bytes (S3: the
   * ETag is the MD5). False: content is compared by reading it.
   */
  contentIdIsChecksum: boolean;
  /** Most paths one deleteBatch takes. */
  maxDeleteBatch: number;
  metadata: {
    /**
     * Names kept as they are: "http-token" (S3, the lakeFS gateway), "c-identifier" (Azure). Other
     * names are mapped by the backend, reversibly, or the object is refused.
     */
    names: "http-token" | "c-identifier";
    /** Names come back lower-cased. */
    lowerCased: boolean;
  };
}

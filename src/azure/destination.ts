import type { Readable } from "node:stream";
import type { BlobGetPropertiesResponse, BlobItem } from "@azure/storage-blob";
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
import { DestinationError, LeaseLostError, ObjectRefusedError } from "../errors.ts";
import type { AzureAccount } from "./account.ts";
import { azureCode, azureStatus, toDestinationError } from "./azure-error.ts";
import { copyBlocks } from "./copy.ts";
import { deleteInBatches } from "./delete.ts";
import { AZURE_CAPABILITIES } from "./limits.ts";
import { inUtf8Order } from "./list-order.ts";
import { decodeMetadata, encodeMetadata } from "./metadata-names.ts";
import { uploadBlocks } from "./upload.ts";
import { azureLocationOf, formatAzureUri } from "./uri.ts";

const MiB = 1024 * 1024;

export interface AzureTransferSizes {
  /** Streamed objects at or above this size go up as blocks (Put Block, Put Block List). */
  blockThresholdBytes: number;
  /** Raised where an object needs larger blocks to fit in 50,000. */
  blockBytes: number;
  /** Blocks of one streamed upload in flight at once (each buffers one block). */
  blockConcurrency: number;
  /** Blocks of a server-side copy (Put Block From URL, up to 4,000 MiB each). */
  copyBlockBytes: number;
  copyConcurrency: number;
  /** Blobs per listing page; Azure's own page is 5,000, also its most. */
  listPageKeys: number;
}

export const defaultAzureTransferSizes: AzureTransferSizes = {
  blockThresholdBytes: 64 * MiB,
  blockBytes: 16 * MiB,
  blockConcurrency: 4,
  copyBlockBytes: 512 * MiB,
  copyConcurrency: 8,
  listPageKeys: 5000,
};

/** The MD5 Azure keeps for a blob, hex (the contentId), else its ETag without quotes. */
function contentIdOf(md5: Uint8Array | undefined, etag: string | undefined): string {
  return md5?.length ? Buffer.from(md5).toString("hex") : (etag ?? "").replaceAll('"', "");
}

/** A missing blob; a missing container is an error, not an absent key. */
function isMissingBlob(err: unknown): boolean {
  return azureStatus(err) === 404 && azureCode(err) !== "ContainerNotFound";
}

/** The Azure Blob Storage backend of the destination contract: blobs under one prefix. */
export class AzureDestination implements Destination {
  readonly uri: string;
  readonly prefix: string;
  readonly container: string;
  readonly capabilities = AZURE_CAPABILITIES;
  readonly #account: AzureAccount;
  readonly #sizes: AzureTransferSizes;

  constructor(
    account: AzureAccount,
    location: { container: string; prefix: string },
    sizes: Partial<AzureTransferSizes> = {},
  ) {
    this.#account = account;
    this.container = location.container;
    this.prefix = location.prefix;
    this.uri = formatAzureUri({ ...account, ...location });
    this.#sizes = { ...defaultAzureTransferSizes, ...sizes };
  }

  /**
   * The blob name of a path. Azure Blob Storage (and Azurite) takes `\` in a blob name for `/`:
   * a lakeFS path with one would be written to, read from and deleted at another path's blob,
   * someone else's perhaps, so such a path is refused (ObjectRefusedError), never sent.
   */
  key(path: string): string {
    if (path.includes("\\"))
      throw new ObjectRefusedError(
        `${path}: Azure Blob Storage reads "\\" in a blob name as "/", so this path would be stored at ${path.replaceAll("\\", "/")}`,
      );
    return this.prefix + path;
  }

  describe(path = ""): string {
    return this.uri + path;
  }

  at(prefix: string): AzureDestination {
    return new AzureDestination(this.#account, { container: this.container, prefix }, this.#sizes);
  }

  #blob(path: string) {
    return this.#account.container(this.container).getBlockBlobClient(this.key(path));
  }

  #stored(path: string, meta: ObjectMeta) {
    return {
      headers: meta.contentType ? { blobContentType: meta.contentType } : {},
      metadata: encodeMetadata(meta.metadata, path),
    };
  }

  async put(
    path: string,
    body: string | Uint8Array,
    meta: ObjectMeta,
    signal?: AbortSignal,
  ): Promise<void> {
    const { headers, metadata } = this.#stored(path, meta);
    const bytes = typeof body === "string" ? Buffer.from(body) : body;
    try {
      await this.#blob(path).upload(bytes, bytes.length, {
        blobHTTPHeaders: headers,
        metadata,
        abortSignal: signal,
      });
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

  async putStream(
    path: string,
    body: Readable,
    size: number,
    meta: ObjectMeta,
    signal?: AbortSignal,
    fence?: () => void,
  ): Promise<void> {
    let stored;
    try {
      stored = this.#stored(path, meta);
    } catch (err) {
      body.destroy();
      throw err;
    }
    await uploadBlocks({
      blob: this.#blob(path),
      path,
      what: `upload ${this.describe(path)}`,
      body,
      size,
      ...stored,
      thresholdBytes: this.#sizes.blockThresholdBytes,
      blockBytes: this.#sizes.blockBytes,
      concurrency: this.#sizes.blockConcurrency,
      signal,
      fence,
    });
  }

  /**
   * Put Block From URL from a blob of the same account (see copyBlocks). A source in another
   * account or at another endpoint is refused as "AccessDenied" before any request: these
   * credentials cannot authorize reading it, and the caller streams it instead.
   */
  async serverSideCopy(
    from: StorageAddress,
    path: string,
    size: number,
    meta: ObjectMeta,
    signal?: AbortSignal,
    fence?: () => void,
  ): Promise<void> {
    const source = azureLocationOf({ scheme: from.scheme, container: from.container, prefix: "" });
    const what = `copy ${formatAzureUri(source)}${from.key} to ${this.describe(path)}`;
    if (!this.#account.holds(source))
      throw new DestinationError(`${what}: the source is in another storage account`, false, {
        reason: "AccessDenied",
      });
    try {
      await copyBlocks({
        account: this.#account,
        source: { container: source.container, key: from.key },
        what,
        target: this.#blob(path),
        size,
        ...this.#stored(path, meta),
        blockBytes: this.#sizes.copyBlockBytes,
        concurrency: this.#sizes.copyConcurrency,
        signal,
        fence,
      });
    } catch (err) {
      if (err instanceof LeaseLostError || err instanceof ObjectRefusedError) throw err;
      throw toDestinationError(err, what);
    }
  }

  /** Blob batch requests of up to 256 deletes (see deleteInBatches). */
  async deleteBatch(paths: string[], signal?: AbortSignal): Promise<DeleteRefusal[]> {
    if (paths.length > this.capabilities.maxDeleteBatch)
      throw new TypeError(`deleteBatch takes at most ${this.capabilities.maxDeleteBatch} paths`);
    // A path Azure would read as another (see key) is not deleted: that blob is not its.
    const refused: DeleteRefusal[] = [];
    const keyed: { path: string; key: string }[] = [];
    for (const p of paths) {
      try {
        keyed.push({ path: p, key: this.key(p) });
      } catch (err) {
        if (!(err instanceof ObjectRefusedError)) throw err;
        refused.push({ path: p, error: err.message });
      }
    }
    if (keyed.length === 0) return refused;
    const failed = await deleteInBatches(
      this.#account.container(this.container),
      this.#account.batchRefused,
      keyed,
      `delete ${keyed.length} blobs under ${this.uri}`,
      signal,
    );
    return [...refused, ...failed];
  }

  /**
   * List Blobs, flat, put in UTF-8 order: Azurite lists in UTF-16 code-unit order, which
   * differs for keys above U+FFFF (see Utf8Reorder).
   */
  async *list(subPrefix = "", signal?: AbortSignal): AsyncGenerator<ListedObject[]> {
    const what = `list ${this.describe(subPrefix)}`;
    const pages = this.#account
      .container(this.container)
      .listBlobsFlat({ prefix: this.prefix + subPrefix, abortSignal: signal })
      .byPage({ maxPageSize: this.#sizes.listPageKeys });
    const prefixLength = this.prefix.length;
    async function* objects(): AsyncGenerator<ListedObject[]> {
      try {
        for await (const page of pages) {
          yield page.segment.blobItems.map((b: BlobItem) => ({
            path: b.name.slice(prefixLength),
            size: b.properties.contentLength ?? 0,
            contentId: contentIdOf(b.properties.contentMD5, b.properties.etag),
            lastModified: b.properties.lastModified,
          }));
        }
      } catch (err) {
        throw toDestinationError(err, what);
      }
    }
    yield* inUtf8Order(objects(), (o) => o.path, this.#sizes.listPageKeys, what);
  }

  async head(path: string, signal?: AbortSignal): Promise<HeadResult | undefined> {
    let props: BlobGetPropertiesResponse;
    try {
      props = await this.#blob(path).getProperties({ abortSignal: signal });
    } catch (err) {
      if (isMissingBlob(err)) return undefined;
      throw toDestinationError(err, `head ${this.describe(path)}`);
    }
    return {
      size: props.contentLength ?? 0,
      contentId: contentIdOf(props.contentMD5, props.etag),
      contentType: props.contentType,
      metadata: decodeMetadata(props.metadata),
    };
  }

  async read(path: string, signal?: AbortSignal): Promise<Readable | undefined> {
    try {
      const res = await this.#blob(path).download(0, undefined, { abortSignal: signal });
      return res.readableStreamBody as Readable;
    } catch (err) {
      if (isMissingBlob(err)) return undefined;
      throw toDestinationError(err, `read ${this.describe(path)}`);
    }
  }

  async getVersioned(path: string, signal?: AbortSignal): Promise<VersionedText | undefined> {
    const what = `read ${this.describe(path)}`;
    try {
      const res = await this.#blob(path).download(0, undefined, { abortSignal: signal });
      const chunks: Buffer[] = [];
      for await (const c of res.readableStreamBody ?? []) chunks.push(c as Buffer);
      return { text: Buffer.concat(chunks).toString("utf8"), version: res.etag ?? "" };
    } catch (err) {
      if (isMissingBlob(err)) return undefined;
      throw toDestinationError(err, what);
    }
  }

  async getText(path: string, signal?: AbortSignal): Promise<string | undefined> {
    return (await this.getVersioned(path, signal))?.text;
  }

  /**
   * Put Blob with `If-None-Match: *` to create and `If-Match: <ETag>` to replace. Azure answers
   * a create of an existing blob 409 BlobAlreadyExists and a stale ETag 412 ConditionNotMet:
   * a condition that did not hold. A replace of a blob that is gone is 412 too (Azurite) or
   * 404 (a "NotFound" error): either way it never creates the blob.
   */
  async putConditional(
    path: string,
    text: string,
    condition: WriteCondition,
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const bytes = Buffer.from(text);
    try {
      const res = await this.#blob(path).upload(bytes, bytes.length, {
        blobHTTPHeaders: { blobContentType: "application/json" },
        conditions:
          "ifVersion" in condition ? { ifMatch: condition.ifVersion } : { ifNoneMatch: "*" },
        abortSignal: signal,
      });
      return res.etag ?? "";
    } catch (err) {
      const status = azureStatus(err);
      if (status === 412 || (status === 409 && azureCode(err) !== "ContainerNotFound"))
        return undefined;
      throw toDestinationError(err, `write ${this.describe(path)} conditionally`);
    }
  }
}

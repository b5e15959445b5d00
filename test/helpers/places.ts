// A destination prefix in each of the stack's stores (MinIO, Azurite, fake-gcs-server), read and
// written with that store's own client library, never through the product's backends: so that a
// test about destination behaviour runs the same on every store, and its expectations do not
// come from the code under test. Only `destination()` hands out the product's view, for verify.
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import type { ContainerClient } from "@azure/storage-blob";
import type { Bucket } from "@google-cloud/storage";
import pino from "pino";
import { loadConfig } from "../../src/config.ts";
import type { Destination } from "../../src/destination/destination.ts";
import { DestinationFactory } from "../../src/destination/factory.ts";
import { createBucket, uniqueName } from "./stack.ts";
import type { Stack } from "./stack.ts";
import { azureBlobService, gcsStorage } from "./stores.ts";

export const STORE_NAMES = ["s3", "azure", "gcs"] as const;
export type StoreName = (typeof STORE_NAMES)[number];

export interface PlacedHead {
  contentType: string | undefined;
  /** User metadata as the store's client returns it (Azure: the names as stored). */
  metadata: Record<string, string>;
  size: number;
}

/** One prefix of one store; keys are relative to the prefix. */
export interface Place {
  readonly store: StoreName;
  /** The prefix as the CLI takes it, ending in `/`. */
  readonly uri: string;
  /** Environment the CLI needs besides the stack's to reach this store. */
  readonly cliEnv: Record<string, string>;
  /** Every key with `<the store's version or hash> <size>`, so that a rewrite shows. */
  listing(): Promise<Map<string, string>>;
  /** Every key with its size. */
  keys(): Promise<Map<string, number>>;
  put(key: string, body: string | Buffer): Promise<void>;
  remove(key: string): Promise<void>;
  read(key: string): Promise<Buffer | undefined>;
  head(key: string): Promise<PlacedHead | undefined>;
  /** Replaces Content-Type and metadata, keeping the bytes. */
  setMeta(key: string, contentType: string, metadata: Record<string, string>): Promise<void>;
  /** The product's destination at this prefix (for verify). */
  destination(): Destination;
}

/**
 * Places on every store of the stack: `place(store, prefix)` makes a new bucket or container
 * and returns the prefix in it. `close()` releases the clients.
 */
export class Places {
  readonly #stack: Stack;
  readonly #azure;
  readonly #gcs;
  readonly #factory: DestinationFactory;

  constructor(stack: Stack) {
    this.#stack = stack;
    this.#azure = azureBlobService(stack.env);
    this.#gcs = gcsStorage(stack.env);
    const env: Record<string, string> = { ...stack.env };
    delete env.STORAGE_EMULATOR_HOST;
    this.#factory = new DestinationFactory(loadConfig({ env }), pino({ level: "silent" }));
  }

  async place(store: StoreName, prefix: string): Promise<Place> {
    switch (store) {
      case "s3":
        return this.#s3(await createBucket(this.#stack, "place"), prefix);
      case "azure": {
        const name = uniqueName("place");
        const container = this.#azure.getContainerClient(name);
        await container.create();
        return this.#azurePlace(container, prefix);
      }
      case "gcs": {
        const [bucket] = await this.#gcs.createBucket(uniqueName("place"));
        return this.#gcsPlace(bucket, prefix);
      }
    }
  }

  async close(): Promise<void> {
    await this.#factory.close();
  }

  #s3(bucket: string, prefix: string): Place {
    const s3 = this.#stack.s3;
    const uri = `s3://${bucket}/${prefix}`;
    const list = async () => {
      const out: { key: string; etag: string; size: number }[] = [];
      let token: string | undefined;
      do {
        const res = await s3.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
        );
        for (const o of res.Contents ?? [])
          out.push({
            key: (o.Key ?? "").slice(prefix.length),
            etag: o.ETag ?? "",
            size: o.Size ?? 0,
          });
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token);
      return out;
    };
    const head = async (key: string) => {
      try {
        return await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: prefix + key }));
      } catch (err) {
        if ((err as { name?: string }).name === "NotFound") return undefined;
        throw err;
      }
    };
    return {
      store: "s3",
      uri,
      cliEnv: {},
      listing: async () => new Map((await list()).map((o) => [o.key, `${o.etag} ${o.size}`])),
      keys: async () => new Map((await list()).map((o) => [o.key, o.size])),
      put: async (key, body) => {
        await s3.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + key, Body: body }));
      },
      remove: async (key) => {
        await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: prefix + key }));
      },
      read: async (key) => {
        if (!(await head(key))) return undefined;
        const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: prefix + key }));
        return Buffer.from(await res.Body!.transformToByteArray());
      },
      head: async (key) => {
        const h = await head(key);
        return (
          h && {
            contentType: h.ContentType,
            metadata: h.Metadata ?? {},
            size: h.ContentLength ?? 0,
          }
        );
      },
      setMeta: async (key, contentType, metadata) => {
        await s3.send(
          new CopyObjectCommand({
            Bucket: bucket,
            Key: prefix + key,
            CopySource: `${bucket}/${encodeURIComponent(prefix + key)}`,
            MetadataDirective: "REPLACE",
            ContentType: contentType,
            Metadata: metadata,
          }),
        );
      },
      destination: () => this.#factory.open(uri),
    };
  }

  #azurePlace(container: ContainerClient, prefix: string): Place {
    const uri = `${this.#stack.env.AZURITE_BLOB_ENDPOINT}/${container.containerName}/${prefix}`;
    const list = async () => {
      const out: { key: string; etag: string; size: number }[] = [];
      for await (const b of container.listBlobsFlat({ prefix }))
        out.push({
          key: b.name.slice(prefix.length),
          etag: b.properties.etag ?? "",
          size: b.properties.contentLength ?? 0,
        });
      return out;
    };
    const blob = (key: string) => container.getBlockBlobClient(prefix + key);
    return {
      store: "azure",
      uri,
      cliEnv: {},
      listing: async () => new Map((await list()).map((o) => [o.key, `${o.etag} ${o.size}`])),
      keys: async () => new Map((await list()).map((o) => [o.key, o.size])),
      put: async (key, body) => {
        const bytes = typeof body === "string" ? Buffer.from(body) : body;
        await blob(key).upload(bytes, bytes.length);
      },
      remove: async (key) => {
        await blob(key).deleteIfExists();
      },
      read: async (key) => {
        if (!(await blob(key).exists())) return undefined;
        return await blob(key).downloadToBuffer();
      },
      head: async (key) => {
        if (!(await blob(key).exists())) return undefined;
        const p = await blob(key).getProperties();
        return {
          contentType: p.contentType,
          metadata: p.metadata ?? {},
          size: p.contentLength ?? 0,
        };
      },
      setMeta: async (key, contentType, metadata) => {
        const p = await blob(key).getProperties();
        // Set Blob Properties replaces every HTTP header: the MD5 is passed on as it was.
        await blob(key).setHTTPHeaders({
          blobContentType: contentType,
          blobContentMD5: p.contentMD5,
        });
        await blob(key).setMetadata(metadata);
      },
      destination: () => this.#factory.open(uri),
    };
  }

  #gcsPlace(bucket: Bucket, prefix: string): Place {
    const uri = `gs://${bucket.name}/${prefix}`;
    const list = async () => {
      const [files] = await bucket.getFiles({ prefix, autoPaginate: true });
      return files.map((f) => ({
        key: f.name.slice(prefix.length),
        version: `${f.metadata.md5Hash ?? ""}@${f.metadata.generation ?? ""}.${f.metadata.metageneration ?? ""}`,
        size: Number(f.metadata.size ?? 0),
      }));
    };
    const file = (key: string) => bucket.file(prefix + key);
    return {
      store: "gcs",
      uri,
      cliEnv: { GCS_ENDPOINT: this.#stack.env.GCS_ENDPOINT },
      listing: async () => new Map((await list()).map((o) => [o.key, `${o.version} ${o.size}`])),
      keys: async () => new Map((await list()).map((o) => [o.key, o.size])),
      put: async (key, body) => {
        await file(key).save(typeof body === "string" ? Buffer.from(body) : body, {
          resumable: false,
        });
      },
      remove: async (key) => {
        await file(key).delete({ ignoreNotFound: true });
      },
      read: async (key) => {
        const [exists] = await file(key).exists();
        if (!exists) return undefined;
        const [bytes] = await file(key).download();
        return bytes;
      },
      head: async (key) => {
        const [exists] = await file(key).exists();
        if (!exists) return undefined;
        const [m] = await file(key).getMetadata();
        const metadata: Record<string, string> = {};
        for (const [k, v] of Object.entries(m.metadata ?? {}))
          if (v != null) metadata[k] = String(v);
        return { contentType: m.contentType, metadata, size: Number(m.size ?? 0) };
      },
      setMeta: async (key, contentType, metadata) => {
        const [m] = await file(key).getMetadata();
        // The JSON API merges custom metadata: a name left out is removed by setting it to null.
        const merged: Record<string, string | null> = {};
        for (const k of Object.keys(m.metadata ?? {})) merged[k] = null;
        await file(key).setMetadata({ contentType, metadata: { ...merged, ...metadata } });
      },
      destination: () => this.#factory.open(uri),
    };
  }
}

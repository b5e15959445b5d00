import { createHash } from "node:crypto";
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import type { Stack } from "../helpers/stack.ts";
import { isForeign } from "./paths.ts";

/**
 * Both sides of every check, read straight from the servers: what a commit holds from lakeFS
 * (its listing, and the Content-Type and metadata its S3 gateway serves), and what the mirror
 * holds from S3 (ListObjectsV2, HEAD, GET). Nothing here uses lakefs-mirror's own code.
 */

export interface Entry {
  path: string;
  checksum: string;
  size: number;
  physical: string;
  /** Identifies this version of the object: equal fingerprints, equal bytes and metadata. */
  fingerprint: string;
}

export interface Served {
  contentType: string;
  metadata: Record<string, string>;
}

const quoteless = (etag: string) => etag.replaceAll('"', "");
const multipart = (etag: string) => etag.includes("-");

export class Expected {
  readonly #stack: Stack;
  readonly #repo: string;
  readonly #listings = new Map<string, Promise<Map<string, Entry>>>();
  readonly #served = new Map<string, Promise<Served>>();
  readonly #md5 = new Map<string, Promise<string>>();

  constructor(stack: Stack, repo: string) {
    this.#stack = stack;
    this.#repo = repo;
  }

  /** A commit's objects (commits never change, so each is listed once). */
  listing(commit: string): Promise<Map<string, Entry>> {
    let p = this.#listings.get(commit);
    if (!p) {
      p = (async () => {
        const out = new Map<string, Entry>();
        for await (const page of this.#stack.lakefs.listObjects(this.#repo, commit)) {
          for (const o of page) {
            if (o.path_type !== "object") continue;
            out.set(o.path, {
              path: o.path,
              checksum: quoteless(o.checksum),
              size: o.size_bytes ?? 0,
              physical: o.physical_address,
              fingerprint: JSON.stringify([
                o.path,
                o.physical_address,
                o.checksum,
                o.content_type ?? "",
                o.metadata ?? {},
              ]),
            });
          }
        }
        return out;
      })();
      p.catch(() => this.#listings.delete(commit));
      this.#listings.set(commit, p);
    }
    return p;
  }

  /** Content-Type and user metadata as lakeFS's S3 gateway serves this version at `commit`. */
  served(commit: string, e: Entry): Promise<Served> {
    let p = this.#served.get(e.fingerprint);
    if (!p) {
      p = this.#stack.gateway
        .send(new HeadObjectCommand({ Bucket: this.#repo, Key: `${commit}/${e.path}` }))
        .then((h) => ({ contentType: h.ContentType ?? "", metadata: h.Metadata ?? {} }));
      p.catch(() => this.#served.delete(e.fingerprint));
      this.#served.set(e.fingerprint, p);
    }
    return p;
  }

  /** The MD5 of the bytes, for objects whose checksum is a multipart ETag. */
  md5(commit: string, e: Entry): Promise<string> {
    if (!multipart(e.checksum)) return Promise.resolve(e.checksum);
    let p = this.#md5.get(e.fingerprint);
    if (!p) {
      p = this.#stack.gateway
        .send(new GetObjectCommand({ Bucket: this.#repo, Key: `${commit}/${e.path}` }))
        .then(async (r) => md5Of(await r.Body!.transformToByteArray()));
      p.catch(() => this.#md5.delete(e.fingerprint));
      this.#md5.set(e.fingerprint, p);
    }
    return p;
  }

  /** Paths a two-dot diff between the commits names (lakeFS's own diff, not lakefs-mirror's). */
  async diffPaths(from: string, to: string): Promise<Set<string>> {
    const out = new Set<string>();
    for await (const page of this.#stack.lakefs.diff(this.#repo, from, to))
      for (const d of page) if (d.path_type === "object") out.add(d.path);
    return out;
  }
}

function md5Of(bytes: Uint8Array): string {
  return createHash("md5").update(bytes).digest("hex");
}

export interface Listed {
  etag: string;
  size: number;
  lastModified: number;
}

/** One listing of the destination prefix, split by who owns each key. */
export interface Snapshot {
  at: number;
  /** Keys lakefs-mirror mirrors (relative to the prefix). */
  mirrored: Map<string, Listed>;
  foreign: Map<string, Listed>;
  /** The root's status files. */
  status: Map<string, Listed>;
  /** Newest LastModified of any mirrored or status key: evidence that someone is writing. */
  newestWrite: number;
}

function listed(o: { ETag?: string; Size?: number; LastModified?: Date }): Listed {
  return {
    etag: quoteless(o.ETag ?? ""),
    size: o.Size ?? 0,
    lastModified: o.LastModified?.getTime() ?? 0,
  };
}

const STATUS = /^EXPORT_([0-9a-zA-Z]+)_(\d{4}-\d\d-\d\dT[\d:.]+Z)_(SUCCESS|FAILURE)$/;

export function parseStatus(key: string) {
  const m = STATUS.exec(key);
  return m
    ? { commit: m[1]!, at: Date.parse(m[2]!), status: m[3] as "SUCCESS" | "FAILURE" }
    : undefined;
}

export class Observed {
  readonly #stack: Stack;
  readonly bucket: string;
  readonly prefix: string;
  readonly #md5 = new Map<string, Promise<string>>();

  constructor(stack: Stack, bucket: string, prefix: string) {
    this.#stack = stack;
    this.bucket = bucket;
    this.prefix = prefix;
  }

  /**
   * The status files first, then every key: whatever the status files say was written before
   * the keys were listed, so a SUCCESS that lands while the keys are listed (over keys listed
   * before it was written) is not taken for the state those keys describe.
   */
  async snapshot(): Promise<Snapshot> {
    const at = Date.now();
    const s: Snapshot = {
      at,
      mirrored: new Map(),
      foreign: new Map(),
      status: new Map(),
      newestWrite: 0,
    };
    for await (const o of this.#list(this.prefix + "EXPORT_")) {
      const key = (o.Key ?? "").slice(this.prefix.length);
      if (parseStatus(key)) s.status.set(key, listed(o));
    }
    for await (const o of this.#list(this.prefix)) {
      const key = (o.Key ?? "").slice(this.prefix.length);
      const item = listed(o);
      if (key.startsWith("_lakefs_mirror/")) continue;
      if (isForeign(key)) s.foreign.set(key, item);
      else if (!parseStatus(key)) s.mirrored.set(key, item);
      s.newestWrite = Math.max(s.newestWrite, item.lastModified);
    }
    return s;
  }

  async *#list(prefix: string) {
    let token: string | undefined;
    do {
      const res = await this.#stack.s3.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      yield* res.Contents ?? [];
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
  }

  /** One HEAD: the bytes' ETag and size with the Content-Type and metadata of that version. */
  async head(key: string): Promise<(Served & { etag: string; size: number }) | undefined> {
    try {
      const h = await this.#stack.s3.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }),
      );
      return {
        contentType: h.ContentType ?? "",
        metadata: h.Metadata ?? {},
        etag: quoteless(h.ETag ?? ""),
        size: h.ContentLength ?? 0,
      };
    } catch (err) {
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404)
        return undefined;
      throw err;
    }
  }

  /** The MD5 of a mirrored version's bytes (its ETag unless it went up in parts). */
  md5(key: string, l: Listed): Promise<string> {
    if (!multipart(l.etag)) return Promise.resolve(l.etag);
    const id = JSON.stringify([key, l.etag, l.size]);
    let p = this.#md5.get(id);
    if (!p) {
      p = this.#stack.s3
        .send(new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }))
        .then(async (r) => md5Of(await r.Body!.transformToByteArray()));
      p.catch(() => this.#md5.delete(id));
      this.#md5.set(id, p);
    }
    return p;
  }
}

export function sameServed(a: Served, b: Served): boolean {
  if (a.contentType !== b.contentType) return false;
  const x = Object.entries(a.metadata).sort();
  const y = Object.entries(b.metadata).sort();
  return x.length === y.length && x.every(([k, v], i) => y[i]![0] === k && y[i]![1] === v);
}

/** Whether a listed mirror key holds this version's bytes (by MD5; by GET when in parts). */
export async function sameBytes(
  expected: Expected,
  observed: Observed,
  commit: string,
  e: Entry,
  key: string,
  l: Listed,
): Promise<boolean> {
  if (l.size !== e.size) return false;
  if (!multipart(l.etag) && !multipart(e.checksum)) return l.etag === e.checksum;
  return (await observed.md5(key, l)) === (await expected.md5(commit, e));
}

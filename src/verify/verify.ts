import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import { TaskPool } from "../export/pool.ts";
import { parseStatusFileName } from "../export/status-file.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import type { ObjectStats } from "../lakefs/types.ts";
import type { ListedObject, S3Destination } from "../s3/destination.ts";
import { s3Metadata } from "../s3/destination.ts";

export interface Difference {
  kind: "missing" | "extra" | "size" | "content" | "metadata";
  path: string;
  detail?: string;
}

export interface VerifyResult {
  commitId: string;
  compared: number;
  differences: Difference[];
}

export interface VerifyOptions {
  lakefs: LakefsClient;
  s3: S3Client;
  repository: string;
  ref: string;
  destination: S3Destination;
  concurrency?: number;
  /** Also compare Content-Type and user metadata (one HEAD per object). */
  metadata?: boolean;
  signal?: AbortSignal;
}

/** S3 and lakeFS both list in UTF-8 byte order; JavaScript compares UTF-16 units. */
function byteCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

async function* flatten<T>(pages: AsyncIterable<T[]>): AsyncGenerator<T> {
  for await (const page of pages) yield* page;
}

const plainMd5 = /^[0-9a-f]{32}$/;

async function sha256(stream: Readable): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of stream) h.update(chunk as Buffer);
  return h.digest("hex");
}

/**
 * Compares a mirror with a commit by walking both sorted listings side by side (memory does not
 * grow with the number of objects). Sizes always; content by ETag where both sides carry a
 * plain MD5, else by hashing both streams; metadata by one HEAD per object. Status files at the
 * mirror's root are not extras.
 */
export async function verifyMirror(options: VerifyOptions): Promise<VerifyResult> {
  const { lakefs, repository, destination: dest, signal } = options;
  const commit = await lakefs.getCommit(repository, options.ref, signal);
  const differences: Difference[] = [];
  const pool = new TaskPool(options.concurrency ?? 16);
  let compared = 0;

  const source = flatten(lakefs.listObjects(repository, commit.id, "", signal));
  const mirror = flatten(dest.list("", signal));
  let s = await source.next();
  let m = await mirror.next();
  while (!s.done || !m.done) {
    const cmp = s.done ? 1 : m.done ? -1 : byteCompare(s.value.path, m.value.path);
    if (cmp < 0 && !s.done) {
      differences.push({ kind: "missing", path: s.value.path });
      s = await source.next();
    } else if (cmp > 0 && !m.done) {
      const p = m.value.path;
      if (p.includes("/") || !parseStatusFileName(p)) differences.push({ kind: "extra", path: p });
      m = await mirror.next();
    } else if (!s.done && !m.done) {
      const [obj, copy] = [s.value, m.value];
      compared++;
      await pool.submit(async () => {
        const d = await compareObject(options, commit.id, obj, copy);
        if (d) differences.push(d);
      });
      s = await source.next();
      m = await mirror.next();
    }
  }
  await pool.drain();
  differences.sort((a, b) => byteCompare(a.path, b.path));
  return { commitId: commit.id, compared, differences };
}

async function compareObject(
  options: VerifyOptions,
  commitId: string,
  obj: ObjectStats,
  copy: ListedObject,
): Promise<Difference | undefined> {
  const { lakefs, repository, destination: dest, signal } = options;
  const size = obj.size_bytes ?? 0;
  if (size !== copy.size)
    return {
      kind: "size",
      path: obj.path,
      detail: `${size} in lakeFS, ${copy.size} in the mirror`,
    };
  const checksum = obj.checksum.replaceAll('"', "");
  if (plainMd5.test(checksum) && plainMd5.test(copy.etag)) {
    if (checksum !== copy.etag)
      return { kind: "content", path: obj.path, detail: `md5 ${checksum} != ${copy.etag}` };
  } else {
    const [a, b] = await Promise.all([
      lakefs.getObject(repository, commitId, obj.path, signal).then((r) => sha256(r.body)),
      options.s3
        .send(new GetObjectCommand({ Bucket: dest.bucket, Key: dest.key(obj.path) }), {
          abortSignal: signal,
        })
        .then((r) => sha256(r.Body as Readable)),
    ]);
    if (a !== b) return { kind: "content", path: obj.path, detail: `sha256 ${a} != ${b}` };
  }
  if (options.metadata !== false) {
    const head = await dest.head(obj.path, signal);
    const wantType = obj.content_type ?? "application/octet-stream";
    if (head?.ContentType !== wantType) {
      return {
        kind: "metadata",
        path: obj.path,
        detail: `content-type ${wantType} != ${head?.ContentType}`,
      };
    }
    const want = JSON.stringify(sorted(s3Metadata(obj.metadata)));
    const got = JSON.stringify(sorted(head.Metadata ?? {}));
    if (want !== got)
      return { kind: "metadata", path: obj.path, detail: `metadata ${want} != ${got}` };
  }
  return undefined;
}

function sorted(o: Record<string, string>): [string, string][] {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

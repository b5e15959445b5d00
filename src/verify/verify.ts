import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import type { Destination, ListedObject } from "../destination/destination.ts";
import { compareUtf8, flatten } from "../export/order.ts";
import { TaskPool } from "../export/pool.ts";
import { isReservedPath } from "../export/reserved.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import type { GatewayReader } from "../lakefs/gateway.ts";
import type { ObjectStats } from "../lakefs/types.ts";
import { TableRewriteError } from "../errors.ts";
import { TableRewrite } from "../export/table-rewrite.ts";
import type { RewrittenKind } from "../export/table-rewrite.ts";

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
  repository: string;
  ref: string;
  destination: Destination;
  concurrency?: number;
  /**
   * The lakeFS S3 gateway (lakeFS's address, lakeFS credentials). With it, Content-Type and user
   * metadata are compared too: the expectation is what the gateway serves for the object (one
   * HEAD on each side per object), independent of how lakefs-mirror maps metadata when it
   * writes; a backend that maps names gives them back unmapped in its `head`.
   */
  gateway?: GatewayReader | undefined;
  /**
   * The mirror's Iceberg tables were rewritten to refer to it (the export's icebergRewrite): a
   * rewritten file is compared with the rewrite of its source, the sizes it records taken from
   * the mirror, instead of with the source's raw bytes.
   */
  icebergRewrite?: { gatewayHosts?: readonly string[] | undefined } | undefined;
  signal?: AbortSignal;
}

async function sha256(stream: Readable): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of stream) h.update(chunk as Buffer);
  return h.digest("hex");
}

/**
 * Compares a mirror with a commit by walking both sorted listings side by side (memory does not
 * grow with the number of objects). Sizes always; content by lakeFS's checksum where the
 * destination's contentId is one (`capabilities.contentIdIsChecksum`) and they are equal, else
 * by hashing both streams; Content-Type and
 * metadata against what the lakeFS S3 gateway serves. Status files and `_lakefs_mirror/` at
 * the mirror's root are lakefs-mirror's own, not extras.
 */
export async function verifyMirror(options: VerifyOptions): Promise<VerifyResult> {
  const { lakefs, repository, destination: dest, signal } = options;
  const commit = await lakefs.getCommit(repository, options.ref, signal);
  const rewrite = options.icebergRewrite
    ? await TableRewrite.plan(
        {
          lakefs,
          repository,
          commitId: commit.id,
          destination: dest,
          gatewayHosts: options.icebergRewrite.gatewayHosts,
          signal,
          sizesFrom: "mirror",
        },
        listedPaths(lakefs, repository, commit.id, signal),
      )
    : undefined;
  const differences: Difference[] = [];
  const pool = new TaskPool(options.concurrency ?? 16);
  let compared = 0;

  const source = flatten(lakefs.listObjects(repository, commit.id, "", signal));
  const mirror = flatten(dest.list("", signal));
  let s = await source.next();
  let m = await mirror.next();
  while (!s.done || !m.done) {
    const cmp = s.done ? 1 : m.done ? -1 : compareUtf8(s.value.path, m.value.path);
    if (cmp < 0 && !s.done) {
      differences.push({ kind: "missing", path: s.value.path });
      s = await source.next();
    } else if (cmp > 0 && !m.done) {
      const p = m.value.path;
      if (!isReservedPath(p)) differences.push({ kind: "extra", path: p });
      m = await mirror.next();
    } else if (!s.done && !m.done) {
      const [obj, copy] = [s.value, m.value];
      compared++;
      await pool.submit(async () => {
        const kind = rewrite?.kindOf(obj.path);
        const d =
          rewrite && kind
            ? await compareRewritten(options, commit.id, obj, copy, rewrite, kind)
            : await compareObject(options, commit.id, obj, copy);
        if (d) differences.push(d);
      });
      s = await source.next();
      m = await mirror.next();
    }
  }
  await pool.drain();
  differences.sort((a, b) => compareUtf8(a.path, b.path));
  return { commitId: commit.id, compared, differences };
}

async function* listedPaths(
  lakefs: LakefsClient,
  repository: string,
  commitId: string,
  signal: AbortSignal | undefined,
): AsyncGenerator<string> {
  for await (const page of lakefs.listObjects(repository, commitId, "", signal))
    for (const o of page) if (o.path_type === "object") yield o.path;
}

/**
 * A file the export rewrites: its expected bytes are the rewrite of its source (the same
 * rewrite the export makes, recorded sizes read at the mirror); a source the rewrite refuses
 * is a difference too, since no export can have written it.
 */
async function compareRewritten(
  options: VerifyOptions,
  commitId: string,
  obj: ObjectStats,
  copy: ListedObject,
  rewrite: TableRewrite,
  kind: RewrittenKind,
): Promise<Difference | undefined> {
  const { lakefs, repository, destination: dest, signal } = options;
  let want: Uint8Array;
  try {
    const source = await buffer(
      (await lakefs.getObject(repository, commitId, obj.path, signal)).body,
    );
    want = await rewrite.rewrite(obj.path, kind, source);
  } catch (err) {
    if (!(err instanceof TableRewriteError)) throw err;
    return { kind: "content", path: obj.path, detail: `cannot be rewritten: ${err.message}` };
  }
  if (want.length !== copy.size)
    return {
      kind: "size",
      path: obj.path,
      detail: `${want.length} rewritten from lakeFS, ${copy.size} in the mirror`,
    };
  const body = await dest.read(obj.path, signal);
  const got = body ? await sha256(body) : "(gone)";
  const expected = createHash("sha256").update(want).digest("hex");
  if (got !== expected)
    return { kind: "content", path: obj.path, detail: `rewritten sha256 ${expected} != ${got}` };
  return compareMetadata(options, commitId, obj);
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
  const comparable = dest.capabilities.contentIdIsChecksum;
  if (comparable && checksum === copy.contentId) {
    // Equal checksums: equal bytes.
  } else {
    // Unequal ones prove nothing: lakeFS keeps the ETag its store gave, and for an object the
    // gateway took as a multipart upload that is an MD5 of part MD5s, shown without its `-<n>`
    // (pyarrow and boto3 upload so), which no copy's MD5 equals. The bytes decide.
    const [a, b] = await Promise.all([
      lakefs.getObject(repository, commitId, obj.path, signal).then((r) => sha256(r.body)),
      dest.read(obj.path, signal).then((body) => (body ? sha256(body) : "(gone)")),
    ]);
    if (a !== b) return { kind: "content", path: obj.path, detail: `sha256 ${a} != ${b}` };
  }
  return compareMetadata(options, commitId, obj);
}

async function compareMetadata(
  options: VerifyOptions,
  commitId: string,
  obj: ObjectStats,
): Promise<Difference | undefined> {
  const { repository, destination: dest, signal } = options;
  if (options.gateway) {
    const [want, got] = await Promise.all([
      options.gateway.head(repository, commitId, obj.path, signal),
      dest.head(obj.path, signal),
    ]);
    if (want.contentType !== got?.contentType) {
      return {
        kind: "metadata",
        path: obj.path,
        detail: `content-type ${want.contentType} != ${got?.contentType}`,
      };
    }
    const a = JSON.stringify(sorted(want.metadata));
    const b = JSON.stringify(sorted(got?.metadata ?? {}));
    if (a !== b) return { kind: "metadata", path: obj.path, detail: `metadata ${a} != ${b}` };
  }
  return undefined;
}

function sorted(o: Record<string, string>): [string, string][] {
  return Object.entries(o).sort(([a], [b]) => compareUtf8(a, b));
}

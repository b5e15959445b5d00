import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import assert from "node:assert/strict";
import pino from "pino";
import { Exporter } from "../../src/export/exporter.ts";
import type { ExporterOptions } from "../../src/export/exporter.ts";
import { S3Destination } from "../../src/s3/destination.ts";
import type { TransferSizes } from "../../src/s3/destination.ts";
import { parsePhysicalAddress } from "../../src/s3/uri.ts";
import { verifyMirror } from "../../src/verify/verify.ts";
import { lakefsGateway } from "../../src/s3/gateway.ts";
import type { Stack } from "./stack.ts";

export const silentLogger = pino({ level: "silent" });

export interface SeedObject {
  path: string;
  content: string | Buffer;
  contentType?: string;
  /** User metadata, sent as `x-amz-meta-*` headers through the gateway (or lakeFS API headers). */
  metadata?: Record<string, string>;
  /** How the object is written: through lakeFS's S3 gateway (default) or its REST API. */
  via?: "gateway" | "api";
}

/** Writes one object through lakeFS's S3 gateway, as boto3 or Spark's S3A would. */
export async function gatewayPut(stack: Stack, repo: string, branch: string, o: SeedObject) {
  await stack.gateway.send(
    new PutObjectCommand({
      Bucket: repo,
      Key: `${branch}/${o.path}`,
      Body: typeof o.content === "string" ? Buffer.from(o.content) : o.content,
      ContentType: o.contentType,
      Metadata: o.metadata,
    }),
  );
}

/** Uploads objects to a branch and commits them; returns the commit ID. */
export async function commitObjects(
  stack: Stack,
  repo: string,
  branch: string,
  objects: SeedObject[],
  deletes: string[] = [],
  message = "change",
): Promise<string> {
  for (const o of objects) {
    if (o.via === "api") {
      await stack.lakefs.uploadObject(repo, branch, o.path, o.content, {
        ...(o.contentType ? { contentType: o.contentType } : {}),
        ...(o.metadata ? { metadata: o.metadata } : {}),
      });
    } else {
      await gatewayPut(stack, repo, branch, o);
    }
  }
  for (const p of deletes) await stack.lakefs.deleteObject(repo, branch, p);
  return (await stack.lakefs.commit(repo, branch, { message })).id;
}

export function makeExporter(
  stack: Stack,
  repo: string,
  bucket: string,
  prefix: string,
  options: Partial<ExporterOptions> & {
    sizes?: Partial<TransferSizes>;
    /** false: every request through the SDK (for tests that watch it with SDK middleware). */
    lean?: boolean;
  } = {},
): Exporter {
  const { sizes, lean, ...rest } = options;
  return new Exporter({
    lakefs: stack.lakefs,
    repository: repo,
    destination: new S3Destination(
      stack.s3,
      { bucket, prefix },
      sizes,
      lean === false ? undefined : stack.lean,
    ),
    logger: silentLogger,
    concurrency: 8,
    retry: { retries: 1, minTimeoutMs: 10, maxTimeoutMs: 20 },
    ...rest,
  });
}

/** Every key under a prefix with its size, straight from S3. */
export async function listKeys(
  stack: Stack,
  bucket: string,
  prefix = "",
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let token: string | undefined;
  do {
    const res = await stack.s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of res.Contents ?? []) out.set((o.Key ?? "").slice(prefix.length), o.Size ?? 0);
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
  } while (token);
  return out;
}

export async function readKey(stack: Stack, bucket: string, key: string): Promise<Buffer> {
  const res = await stack.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await res.Body!.transformToByteArray());
}

export async function headKey(stack: Stack, bucket: string, key: string) {
  return stack.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
}

/** Paths of the objects of a commit, from lakeFS. */
export async function commitPaths(
  stack: Stack,
  repo: string,
  commitId: string,
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const page of stack.lakefs.listObjects(repo, commitId)) {
    for (const o of page) out.set(o.path, o.size_bytes ?? 0);
  }
  return out;
}

/** Removes an object's bytes from the blockstore behind lakeFS's back, as an expiry would. */
export async function destroyPhysicalObject(
  stack: Stack,
  repo: string,
  ref: string,
  path: string,
): Promise<void> {
  const stats = await stack.lakefs.statObject(repo, ref, path);
  const loc = parsePhysicalAddress(stats.physical_address);
  if (!loc) throw new Error(`not an S3 address: ${stats.physical_address}`);
  await stack.s3.send(new DeleteObjectCommand({ Bucket: loc.bucket, Key: loc.key }));
}

export function statusKeys(keys: Iterable<string>): string[] {
  return [...keys].filter((k) => /^EXPORT_.*_(SUCCESS|FAILURE)$/.test(k));
}

/**
 * Asserts that a mirror equals a commit, with lakefs-mirror's verify: bytes against lakeFS,
 * Content-Type and metadata against what lakeFS's S3 gateway serves. Returns the commit ID.
 */
export async function assertMirrorEqual(
  stack: Stack,
  repo: string,
  ref: string,
  bucket: string,
  prefix = "",
): Promise<string> {
  const r = await verifyAt(stack, repo, ref, bucket, prefix);
  assert.deepEqual(r.differences, []);
  return r.commitId;
}

/** `verify` of the mirror at `s3://bucket/prefix` against `ref`. */
function verifyAt(stack: Stack, repo: string, ref: string, bucket: string, prefix: string) {
  return verifyMirror({
    lakefs: stack.lakefs,
    repository: repo,
    ref,
    destination: new S3Destination(stack.s3, { bucket, prefix }),
    gateway: lakefsGateway(stack.gateway),
  });
}

/** What `verify` finds different between the mirror at `s3://bucket/prefix` and `ref`. */
export async function mirrorDifferences(
  stack: Stack,
  repo: string,
  ref: string,
  bucket: string,
  prefix = "",
) {
  return (await verifyAt(stack, repo, ref, bucket, prefix)).differences;
}

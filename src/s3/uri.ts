import type { StorageAddress, StorageLocation } from "../destination/destination.ts";
import type { DestinationScheme } from "../destination/schemes.ts";
import { UsageError } from "../errors.ts";

export interface S3Location {
  bucket: string;
  /** Empty, or ends with "/". */
  prefix: string;
}

/**
 * Parses `s3://bucket/prefix/` (also `s3a://`, as Spark users write it). The prefix is a
 * directory: a missing trailing slash is added, so `s3://b/x` and `s3://b/x/` name one place.
 */
export function parseS3Uri(uri: string): S3Location {
  const m = /^s3a?:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!m?.[1]) {
    throw new UsageError(`destination must look like s3://bucket/prefix/, got "${uri}"`);
  }
  const bucket = m[1];
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new UsageError(`"${bucket}" is not a valid S3 bucket name (in "${uri}")`);
  }
  let prefix = m[2] ?? "";
  if (prefix && !prefix.endsWith("/")) prefix += "/";
  return { bucket, prefix };
}

/**
 * The bucket and key of a lakeFS physical address when it lives in S3, else undefined
 * (`local://`, `gs://`, `https://`…: those bytes can only be streamed through lakeFS).
 */
export function parsePhysicalAddress(address: string): { bucket: string; key: string } | undefined {
  const m = /^s3a?:\/\/([^/]+)\/(.+)$/.exec(address);
  if (!m?.[1] || !m[2]) return undefined;
  return { bucket: m[1], key: m[2] };
}

export function formatS3Uri(loc: S3Location): string {
  return `s3://${loc.bucket}/${loc.prefix}`;
}

/** A location in the project's neutral form. */
export function s3Location(loc: S3Location): StorageLocation {
  return { scheme: "s3", container: loc.bucket, prefix: loc.prefix };
}

/** The bucket and key a StorageAddress of scheme "s3" names. */
export function s3Object(address: StorageAddress): { bucket: string; key: string } {
  if (address.scheme !== "s3") throw new TypeError(`not an S3 address: ${address.scheme}://`);
  return { bucket: address.container, key: address.key };
}

/** S3 URIs for the destination registry (src/destination/schemes.ts). */
export const s3Scheme: DestinationScheme = {
  scheme: "s3",
  forms: ["s3://bucket/prefix/"],
  matches: (uri) => /^s3a?:\/\//.test(uri),
  parseLocation: (uri) => s3Location(parseS3Uri(uri)),
  formatLocation: (loc) => formatS3Uri({ bucket: loc.container, prefix: loc.prefix }),
  parseAddress(uri) {
    const o = parsePhysicalAddress(uri);
    return o && { scheme: "s3", container: o.bucket, key: o.key };
  },
};

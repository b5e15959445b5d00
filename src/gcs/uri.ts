import type { StorageAddress, StorageLocation } from "../destination/destination.ts";
import type { DestinationScheme } from "../destination/schemes.ts";
import { UsageError } from "../errors.ts";

export interface GcsLocation {
  bucket: string;
  /** Empty, or ends with "/". */
  prefix: string;
}

const FORM = "gs://bucket/prefix/";

/**
 * Why a bucket name breaks Google Cloud Storage's naming rules ("Bucket names" in the GCS
 * documentation), or undefined when it keeps them: 3–63 characters of lower-case letters,
 * digits, `-`, `_` and `.`, starting and ending with a letter or digit; with dots up to 222
 * characters in dot-separated parts of at most 63; not an IP address; no `goog` prefix.
 */
export function gcsBucketProblem(name: string): string | undefined {
  if (!/^[a-z0-9][a-z0-9._-]*[a-z0-9]$/.test(name))
    return "only lower-case letters, digits, '-', '_' and '.', starting and ending with a letter or digit";
  const max = name.includes(".") ? 222 : 63;
  if (name.length < 3 || name.length > max) return `3 to ${max} characters`;
  if (name.split(".").some((part) => part.length === 0 || part.length > 63))
    return "dot-separated parts of 1 to 63 characters";
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(name)) return "not an IP address";
  if (name.startsWith("goog")) return 'no "goog" prefix';
  return undefined;
}

/**
 * Parses `gs://bucket/prefix/`. The prefix is a directory: a missing trailing slash is added,
 * so `gs://b/x` and `gs://b/x/` name one place.
 */
export function parseGcsUri(uri: string): GcsLocation {
  const m = /^gs:\/\/([^/]*)\/?(.*)$/s.exec(uri);
  if (!m?.[1]) throw new UsageError(`destination must look like ${FORM}, got "${uri}"`);
  const bucket = m[1];
  const problem = gcsBucketProblem(bucket);
  if (problem)
    throw new UsageError(`"${bucket}" is not a valid GCS bucket name (${problem}), in "${uri}"`);
  let prefix = m[2] ?? "";
  if (/[\r\n]/.test(prefix))
    throw new UsageError(`a GCS object name cannot hold a line break, in "${uri}"`);
  if (prefix && !prefix.endsWith("/")) prefix += "/";
  return { bucket, prefix };
}

export function formatGcsUri(loc: GcsLocation): string {
  return `gs://${loc.bucket}/${loc.prefix}`;
}

/** The bucket and object name of a lakeFS physical address in GCS, else undefined. */
export function parseGcsAddress(uri: string): { bucket: string; key: string } | undefined {
  const m = /^gs:\/\/([^/]+)\/(.+)$/s.exec(uri);
  if (!m?.[1] || !m[2] || gcsBucketProblem(m[1])) return undefined;
  return { bucket: m[1], key: m[2] };
}

/** The bucket and object name a StorageAddress of scheme "gs" names. */
export function gcsObject(address: StorageAddress): { bucket: string; key: string } {
  if (address.scheme !== "gs") throw new TypeError(`not a GCS address: ${address.scheme}://`);
  return { bucket: address.container, key: address.key };
}

/** GCS URIs for the destination registry (src/destination/schemes.ts). */
export const gcsScheme: DestinationScheme = {
  scheme: "gs",
  forms: [FORM],
  matches: (uri) => uri.startsWith("gs://"),
  parseLocation(uri): StorageLocation {
    const loc = parseGcsUri(uri);
    return { scheme: "gs", container: loc.bucket, prefix: loc.prefix };
  },
  formatLocation: (loc) => formatGcsUri({ bucket: loc.container, prefix: loc.prefix }),
  parseAddress(uri) {
    const o = parseGcsAddress(uri);
    return o && { scheme: "gs", container: o.bucket, key: o.key };
  },
};

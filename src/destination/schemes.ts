import { UsageError } from "../errors.ts";
import { gcsScheme } from "../gcs/uri.ts";
import { azureScheme } from "../azure/uri.ts";
import { s3Scheme } from "../s3/uri.ts";
import type { StorageAddress, StorageLocation } from "./destination.ts";

/**
 * How one store writes its locations as URIs: destinations (`s3://bucket/prefix/`), lakeFS
 * storage namespaces and physical addresses, copy sources. Parsing only, no client: the
 * configuration checks URIs with it before anything connects. A backend for another store adds
 * its scheme to SCHEMES and its connector to src/destination/factory.ts.
 */
export interface DestinationScheme {
  /** The canonical scheme of its locations and addresses (StorageLocation.scheme). */
  readonly scheme: string;
  /** The forms it takes, for messages: `s3://bucket/prefix/`. */
  readonly forms: readonly string[];
  /** Whether `uri` is written in one of its forms (by scheme, and host where that tells). */
  matches(uri: string): boolean;
  /** A location; throws UsageError when the URI is malformed. The prefix ends with "/". */
  parseLocation(uri: string): StorageLocation;
  /** The canonical URI of a location. */
  formatLocation(location: StorageLocation): string;
  /** An object's address, or undefined when the URI does not name one this store can copy. */
  parseAddress(uri: string): StorageAddress | undefined;
}

export const SCHEMES: readonly DestinationScheme[] = [s3Scheme, gcsScheme, azureScheme];

function schemeFor(uri: string): DestinationScheme | undefined {
  return SCHEMES.find((s) => s.matches(uri));
}

/** Parses a destination (or any location) URI of any store this build knows. */
export function parseLocation(uri: string): StorageLocation {
  const scheme = schemeFor(uri);
  if (!scheme) {
    const forms = SCHEMES.flatMap((s) => s.forms).join(", ");
    throw new UsageError(`destination must look like ${forms}, got "${uri}"`);
  }
  return scheme.parseLocation(uri);
}

export function formatLocation(location: StorageLocation): string {
  const scheme = SCHEMES.find((s) => s.scheme === location.scheme);
  if (!scheme) throw new TypeError(`no destination scheme "${location.scheme}"`);
  return scheme.formatLocation(location);
}

/** A location URI in its canonical form: `s3a://b/x` and `s3://b/x/` are one place. */
export function normalizeLocation(uri: string): string {
  return formatLocation(parseLocation(uri));
}

/** A physical address as a StorageAddress, or undefined (`local://`, a store this build lacks). */
export function parseStorageAddress(uri: string): StorageAddress | undefined {
  return schemeFor(uri)?.parseAddress(uri);
}

/** Whether an object lies under a location (same store, same container, key under its prefix). */
export function withinLocation(address: StorageAddress, location: StorageLocation): boolean {
  return (
    address.scheme === location.scheme &&
    address.container === location.container &&
    address.key.startsWith(location.prefix)
  );
}

import { parseStatusFileName } from "./status-file.ts";

/**
 * Everything lakefs-mirror keeps at a destination besides the mirrored objects and the root's
 * `EXPORT_…` status files lives under this prefix at the destination root. Spark, Hive, Trino
 * and Hadoop's input formats skip paths that start with `_`, so readers never see it.
 */
export const RESERVED_PREFIX = "_lakefs_mirror/";

/** The lane ledger object, relative to the destination root. */
export const LEDGER_PATH = `${RESERVED_PREFIX}ledger.json`;

/** The lease that makes one daemon at a time the destination's writer. */
export const LEASE_PATH = `${RESERVED_PREFIX}lease.json`;

/**
 * Paths that belong to lakefs-mirror at a destination root: status files and the reserved
 * prefix. A lakeFS object with such a path is never mirrored (it would overwrite or fake them)
 * and a listing never deletes them.
 */
export function isReservedPath(path: string): boolean {
  return path.startsWith(RESERVED_PREFIX) || parseStatusFileName(path) !== undefined;
}

export function reservedReason(path: string): string {
  return path.startsWith(RESERVED_PREFIX)
    ? `refused: ${RESERVED_PREFIX} at the destination root is reserved for lakefs-mirror's own records`
    : "refused: the name of a status file at the destination root, which this object would fake";
}

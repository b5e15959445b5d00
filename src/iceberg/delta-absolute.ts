/** An absolute path in a Delta Lake log: the action that holds it and the path as written. */
export interface DeltaAbsolutePath {
  /** 1-based line of the commit file. */
  line: number;
  action: "add" | "remove" | "cdc" | "deletionVector";
  path: string;
}

// A URI with a scheme (RFC 3986 section 3.1), or a path from the file system's root.
const ABSOLUTE = /^(?:[a-z][a-z0-9+.-]*:|\/)/i;

/**
 * The absolute paths of a Delta Lake commit file (`_delta_log/<version>.json`). The Delta
 * protocol lets `add`, `remove` and `cdc` actions name a file by a relative path (resolved
 * against the table's root, which the mirror keeps) or by an absolute URI; shallow clones
 * write absolute URIs to their source table's files, and a deletion vector with storage type
 * `p` is an absolute path too. A mirrored table with any of them still reads lakeFS (or
 * files that are not in the mirror at all), so the export refuses the table: rewriting would
 * also mean rewriting its Parquet checkpoints, and a clone's source files are often outside
 * the repository, where no rewrite can reach them.
 */
export function scanDeltaLog(bytes: Uint8Array): DeltaAbsolutePath[] {
  const found: DeltaAbsolutePath[] = [];
  const lines = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    .toString("utf8")
    .split("\n");
  lines.forEach((text, i) => {
    if (text.trim() === "") return;
    // Commit files hold one JSON action per line; the values read here are strings only.
    let action: unknown;
    try {
      action = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof action !== "object" || action === null) return;
    for (const kind of ["add", "remove", "cdc"] as const) {
      const body = (action as Record<string, unknown>)[kind];
      if (typeof body !== "object" || body === null) continue;
      const { path, deletionVector } = body as { path?: unknown; deletionVector?: unknown };
      if (typeof path === "string" && ABSOLUTE.test(path))
        found.push({ line: i + 1, action: kind, path });
      const dv = deletionVector as
        { storageType?: unknown; pathOrInlineDv?: unknown } | null | undefined;
      if (dv?.storageType === "p" && typeof dv.pathOrInlineDv === "string") {
        found.push({ line: i + 1, action: "deletionVector", path: dv.pathOrInlineDv });
      }
    }
  });
  return found;
}

import zlib from "node:zlib";
import { TableRewriteError } from "../errors.ts";
import { JsonSyntaxError, rewriteJsonStrings } from "./json-rewrite.ts";
import type { JsonPath } from "./json-rewrite.ts";
import type { PathMapper } from "./path-map.ts";

/**
 * Whether the string at `path` of a table metadata file is a location (Iceberg table
 * specification, "Table Metadata Fields", format versions 1 to 3): the table's `location`, the
 * previous metadata files, each snapshot's manifest list (or, in format 1, its `manifests`),
 * the table and partition statistics files, and the `write.*.path` properties that tell
 * writers where new data and metadata go (`write.data.path`, `write.metadata.path`,
 * `write.object-storage.path`, the older `write.folder-storage.path`).
 */
export function isMetadataLocation(path: JsonPath): boolean {
  const [top, i, key, j] = path;
  if (typeof top !== "string") return false;
  switch (top) {
    case "location":
      return path.length === 1;
    case "metadata-log":
      return path.length === 3 && typeof i === "number" && key === "metadata-file";
    case "snapshots":
      return (
        typeof i === "number" &&
        ((path.length === 3 && key === "manifest-list") ||
          (path.length === 4 && key === "manifests" && typeof j === "number"))
      );
    case "statistics":
    case "partition-statistics":
      return path.length === 3 && typeof i === "number" && key === "statistics-path";
    case "properties":
      return path.length === 2 && typeof i === "string" && /^write\..+\.path$/.test(i);
    default:
      return false;
  }
}

const GZIP_MAGIC = [0x1f, 0x8b];

/**
 * Rewrites a table metadata file (`*.metadata.json`, or gzip-compressed as Iceberg writes it
 * with `write.metadata.compression-codec=gzip`) so that every location points at the mirror.
 * Every other byte stays as it was: snapshot IDs beyond 2^53 included.
 */
export function rewriteTableMetadata(
  file: string,
  bytes: Uint8Array,
  mapper: PathMapper,
): Uint8Array {
  const gzipped = bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1];
  let raw: Uint8Array;
  try {
    raw = gzipped ? zlib.gunzipSync(bytes) : bytes;
  } catch (err) {
    throw new TableRewriteError(`${file} is not a valid gzip stream`, file, undefined, {
      cause: err,
    });
  }
  const text = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("utf8");
  // A file that is not UTF-8 would come back different where nothing was rewritten.
  if (Buffer.byteLength(text, "utf8") !== raw.byteLength) {
    throw new TableRewriteError(
      `${file} is not UTF-8 text, so it is not Iceberg table metadata`,
      file,
    );
  }
  let out: string;
  try {
    out = rewriteJsonStrings(text, (path, value) =>
      isMetadataLocation(path) ? mapper.map(value, file) : undefined,
    );
  } catch (err) {
    if (err instanceof JsonSyntaxError || err instanceof RangeError) {
      throw new TableRewriteError(`${file} is not JSON: ${err.message}`, file, undefined, {
        cause: err,
      });
    }
    throw err;
  }
  if (out === text) return bytes;
  const encoded = Buffer.from(out, "utf8");
  return gzipped ? zlib.gzipSync(encoded) : encoded;
}

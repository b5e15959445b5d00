import zlib from "node:zlib";
import { parquetMetadata, parquetReadObjects } from "hyparquet";
import type { Compressors, FileMetaData, SchemaElement } from "hyparquet";
import { parquetWriteBuffer } from "hyparquet-writer";
import { TableRewriteError } from "../errors.ts";
import { ensureZstd, zstdCompress, zstdDecompress } from "./codecs.ts";
import type { PathMapper } from "./path-map.ts";

// Iceberg's reserved field IDs of a position-delete file (Iceberg table specification,
// "Position Delete Files" and "Reserved Field IDs").
const FILE_PATH_ID = 2147483546;
const POS_ID = 2147483545;

const decompressors: Compressors = {
  GZIP: (input) => zlib.gunzipSync(input),
  ZSTD: (input) => zstdDecompress(input),
};
const compressors = {
  GZIP: (input: Uint8Array) => zlib.gzipSync(input),
  ZSTD: (input: Uint8Array) => zstdCompress(input),
};

/**
 * Rewrites a Parquet position-delete file: every `file_path` to the mirror, `pos` as the same
 * 64-bit values, in the same row groups, with the file's schema (field IDs, which Iceberg
 * readers project by), key-value metadata and codec. The bytes are written anew by
 * hyparquet-writer (pure JavaScript: no native build, and it writes field IDs and the
 * original codec), so the file's size changes: the manifest records the new one. A file with
 * the optional `row` column (deprecated in format 3; Iceberg's Java writers leave it out
 * unless asked) is refused rather than re-encoded with a risk of changing its values.
 */
export async function rewritePositionDeletes(
  file: string,
  bytes: Uint8Array,
  mapper: PathMapper,
): Promise<Uint8Array> {
  await ensureZstd();
  const buffer = bytes.buffer.slice(
    bytes.byteOffset,
    bytes.byteOffset + bytes.byteLength,
  ) as ArrayBuffer;
  let meta: FileMetaData;
  try {
    meta = parquetMetadata(buffer);
  } catch (err) {
    throw new TableRewriteError(`${file} is not a Parquet file: ${String(err)}`, file, undefined, {
      cause: err,
    });
  }
  const columns = meta.schema.slice(1);
  const byId = (id: number): SchemaElement | undefined => columns.find((c) => c.field_id === id);
  const filePath = byId(FILE_PATH_ID);
  const pos = byId(POS_ID);
  if (!filePath || !pos || columns.length !== 2 || meta.schema[0]?.num_children !== 2) {
    throw new TableRewriteError(
      `${file} is not a position-delete file the rewriter supports: it must hold exactly file_path (field ID ${FILE_PATH_ID}) and pos (field ID ${POS_ID}); the optional row column is not rewritten`,
      file,
    );
  }
  const chunk = meta.row_groups[0]?.columns[0]?.meta_data;
  const codec = chunk?.codec ?? "SNAPPY";
  if (codec !== "UNCOMPRESSED" && codec !== "SNAPPY" && codec !== "GZIP" && codec !== "ZSTD") {
    throw new TableRewriteError(
      `${file} uses the Parquet codec ${codec}, which the rewriter does not write`,
      file,
    );
  }
  const rows = await parquetReadObjects({
    file: buffer,
    metadata: meta,
    compressors: decompressors,
    utf8: true,
  });
  const paths = rows.map((r) => mapper.map(r[filePath.name] as string, file));
  const positions = rows.map((r) => r[pos.name] as bigint);
  const out = parquetWriteBuffer({
    columnData: [
      { name: filePath.name, data: paths },
      { name: pos.name, data: positions },
    ].sort(
      (a, b) =>
        columns.findIndex((c) => c.name === a.name) - columns.findIndex((c) => c.name === b.name),
    ),
    schema: meta.schema,
    codec,
    compressors,
    // Iceberg writes file_path bounds whole: a truncated bound is no longer a path.
    statisticsTruncateLength: Infinity,
    rowGroupSize: meta.row_groups.length > 0 ? meta.row_groups.map((g) => Number(g.num_rows)) : [1],
    kvMetadata: meta.key_value_metadata ?? [],
    // Not the original writer's name: readers apply fixes for known bugs by created_by.
    createdBy: "lakefs-mirror (hyparquet-writer)",
  });
  return new Uint8Array(out);
}

import { TableRewriteError } from "../errors.ts";
import { JsonSyntaxError, rewriteJsonStrings } from "./json-rewrite.ts";
import type { PathMapper } from "./path-map.ts";

// Puffin file format (Iceberg's Puffin specification): Magic, blobs, then the footer: Magic,
// FooterPayload (UTF-8 JSON, LZ4-compressed when bit 0 of the first flags byte is set),
// FooterPayloadSize (4 bytes, little-endian), Flags (4 bytes), Magic.
const MAGIC = Buffer.from([0x50, 0x46, 0x41, 0x31]);
const TRAILER = 12; // FooterPayloadSize + Flags + Magic

/**
 * Rewrites a Puffin file's footer so that each deletion vector's `referenced-data-file` blob
 * property (Puffin spec, blob type `deletion-vector-v1`: "location of the data file the delete
 * vector applies to") points at the mirror. The blobs stay where they were, so the offsets and
 * lengths a manifest records for them (`content_offset`, `content_size_in_bytes`) still hold;
 * only the file's size changes. Statistics blobs (theta sketches) hold no paths.
 */
export function rewritePuffin(file: string, bytes: Uint8Array, mapper: PathMapper): Uint8Array {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = (why: string): never => {
    throw new TableRewriteError(`${file} is not a Puffin file: ${why}`, file);
  };
  if (buf.length < MAGIC.length * 2 + TRAILER) bad("too short");
  if (!buf.subarray(0, 4).equals(MAGIC) || !buf.subarray(buf.length - 4).equals(MAGIC)) {
    bad("no Puffin magic at its start and end");
  }
  const payloadSize = buf.readUInt32LE(buf.length - TRAILER);
  const flags = buf.subarray(buf.length - 8, buf.length - 4);
  const payloadStart = buf.length - TRAILER - payloadSize;
  const footerStart = payloadStart - MAGIC.length;
  if (footerStart < MAGIC.length || !buf.subarray(footerStart, payloadStart).equals(MAGIC)) {
    bad("its footer size does not lead to the footer's magic");
  }
  if ((flags[0]! & 1) !== 0) {
    throw new TableRewriteError(
      `${file} has an LZ4-compressed Puffin footer, which the rewriter does not read`,
      file,
    );
  }
  const text = buf.subarray(payloadStart, buf.length - TRAILER).toString("utf8");
  let out: string;
  try {
    out = rewriteJsonStrings(text, (path, value) =>
      path.length === 4 &&
      path[0] === "blobs" &&
      path[2] === "properties" &&
      path[3] === "referenced-data-file"
        ? mapper.map(value, file)
        : undefined,
    );
  } catch (err) {
    if (err instanceof JsonSyntaxError) bad(`its footer is not JSON (${err.message})`);
    throw err;
  }
  if (out === text) return bytes;
  const payload = Buffer.from(out, "utf8");
  const trailer = Buffer.alloc(TRAILER);
  trailer.writeUInt32LE(payload.length, 0);
  flags.copy(trailer, 4);
  MAGIC.copy(trailer, 8);
  return Buffer.concat([buf.subarray(0, payloadStart), payload, trailer]);
}

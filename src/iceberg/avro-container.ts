import zlib from "node:zlib";
import { AvroDataError, AvroReader, AvroWriter, compileSchema } from "./avro-binary.ts";
import type { AvroType } from "./avro-binary.ts";
import { crc32, snappyCompress, snappyDecompress, zstdCompress, zstdDecompress } from "./codecs.ts";

/*
 * Avro object container files (Avro 1.11 specification, "Object Container Files"): the magic
 * `Obj\x01`, a metadata map (`avro.schema`, `avro.codec`, and Iceberg's own keys: `schema`,
 * `partition-spec`, `format-version`, `content`, `snapshot-id`…), a 16-byte sync marker, then
 * blocks of (count, size, data, sync). The rewriter keeps the header as the exact bytes it was
 * (the schema text with its `field-id` attributes included) and re-encodes only the blocks.
 */

const MAGIC = [0x4f, 0x62, 0x6a, 0x01];

export type AvroCodec = "null" | "deflate" | "snappy" | "zstandard";
const CODECS = new Set<string>(["null", "deflate", "snappy", "zstandard"]);

export interface AvroBlock {
  /** The number of records in the block. */
  count: number;
  /** The block's records, decompressed. */
  data: Uint8Array;
}

export interface AvroContainer {
  /** The header as it was, sync marker included. */
  header: Uint8Array;
  meta: ReadonlyMap<string, Uint8Array>;
  /** The `avro.schema` text, parsed (its numbers are never used). */
  schemaJson: unknown;
  schema: AvroType;
  codec: AvroCodec;
  sync: Uint8Array;
  blocks: AvroBlock[];
}

/** Reads a container file whole. Await ensureZstd() first for `zstandard` files. */
export function readContainer(bytes: Uint8Array): AvroContainer {
  for (let i = 0; i < 4; i++) {
    if (bytes[i] !== MAGIC[i]) throw new AvroDataError("not an Avro object container file");
  }
  const r = new AvroReader(bytes, 4);
  const meta = new Map<string, Uint8Array>();
  for (;;) {
    let count = r.readNumber();
    if (count === 0) break;
    if (count < 0) {
      count = -count;
      r.readLength();
    }
    for (; count > 0; count--) meta.set(r.readString(), r.readBytes());
  }
  const sync = bytes.subarray(r.pos, r.pos + 16);
  r.skipBytes(16);
  const header = bytes.subarray(0, r.pos);

  const schemaBytes = meta.get("avro.schema");
  if (!schemaBytes) throw new AvroDataError("the Avro header has no avro.schema");
  let schemaJson: unknown;
  try {
    schemaJson = JSON.parse(Buffer.from(schemaBytes).toString("utf8"));
  } catch {
    throw new AvroDataError("the Avro header's avro.schema is not JSON");
  }
  const codecName = meta.has("avro.codec")
    ? Buffer.from(meta.get("avro.codec")!).toString("utf8")
    : "null";
  if (!CODECS.has(codecName)) {
    throw new AvroDataError(
      `unsupported Avro codec "${codecName}" (supported: null, deflate, snappy, zstandard)`,
    );
  }
  const codec = codecName as AvroCodec;

  const blocks: AvroBlock[] = [];
  while (r.pos < bytes.length) {
    const count = r.readLength();
    const data = r.readBytes();
    const marker = bytes.subarray(r.pos, r.pos + 16);
    r.skipBytes(16);
    if (Buffer.compare(marker, sync) !== 0) {
      throw new AvroDataError(`block ${blocks.length} does not end with the file's sync marker`);
    }
    blocks.push({ count, data: decompress(codec, data) });
  }
  return { header, meta, schemaJson, schema: compileSchema(schemaJson), codec, sync, blocks };
}

/**
 * Writes a container with `header` (kept as it was) and `blocks` compressed by `codec`. The
 * block boundaries and counts are the caller's, so a rewrite keeps the writer's.
 */
export function writeContainer(
  header: Uint8Array,
  codec: AvroCodec,
  sync: Uint8Array,
  blocks: readonly AvroBlock[],
): Uint8Array {
  const w = new AvroWriter();
  w.raw(header);
  for (const b of blocks) {
    w.long(b.count);
    w.bytes(compress(codec, b.data));
    w.raw(sync);
  }
  return w.finish();
}

function decompress(codec: AvroCodec, data: Uint8Array): Uint8Array {
  switch (codec) {
    case "null":
      return data;
    case "deflate":
      // Avro's deflate is raw RFC 1951 data: no zlib header, no checksum.
      return zlib.inflateRawSync(data);
    case "snappy": {
      // Avro's snappy blocks end with the CRC-32 of the uncompressed data, big-endian.
      if (data.length < 4) throw new AvroDataError("a snappy block shorter than its checksum");
      const out = snappyDecompress(data.subarray(0, data.length - 4));
      const want = Buffer.from(data.buffer, data.byteOffset + data.length - 4, 4).readUInt32BE(0);
      if (crc32(out) !== want) throw new AvroDataError("a snappy block fails its CRC-32");
      return out;
    }
    case "zstandard":
      return zstdDecompress(data);
  }
}

function compress(codec: AvroCodec, data: Uint8Array): Uint8Array {
  switch (codec) {
    case "null":
      return data;
    case "deflate":
      // Level 6 is zlib's default and what Avro's Java DeflateCodec uses unless configured.
      return zlib.deflateRawSync(data, { level: 6 });
    case "snappy": {
      const body = snappyCompress(data);
      const out = Buffer.alloc(body.length + 4);
      out.set(body, 0);
      out.writeUInt32BE(crc32(data), body.length);
      return out;
    }
    case "zstandard":
      return zstdCompress(data);
  }
}

import { TableRewriteError } from "../errors.ts";
import { AvroDataError, AvroReader, AvroSchemaError, AvroWriter } from "./avro-binary.ts";
import type { AvroType } from "./avro-binary.ts";
import { readContainer, writeContainer } from "./avro-container.ts";
import type { AvroBlock } from "./avro-container.ts";
import { ensureZstd } from "./codecs.ts";
import { boundEdits } from "./manifest-bounds.ts";
import type { PathMapper } from "./path-map.ts";

/**
 * The size at the mirror of a file whose bytes the rewrite changes (a manifest, a
 * position-delete file, a deletion-vector file), asked by the manifest list or manifest that
 * records it. `uri` is the path as the source file holds it, `path` its repository path.
 * Undefined keeps the recorded size: only for a delete file the commit no longer holds (one that
 * a manifest records as DELETED after snapshot expiry removed it), which no reader opens; a
 * manifest list with a manifest of unknown size fails instead.
 */
export type RewrittenSizeOf = (file: {
  uri: string;
  path: string;
}) => Promise<number | bigint | undefined> | number | bigint | undefined;

export interface AvroRewrite {
  bytes: Uint8Array;
  /** The repository paths whose rewritten sizes this file records, with those sizes. */
  sizesRecorded: ReadonlyMap<string, bigint>;
}

const POSITION_DELETES = 1;

type Record = AvroType & { kind: "record" };
/** Bytes [start, end) of a block replaced by `bytes`, or by the encoded size of a file. */
type Edit = [start: number, end: number, bytes: Uint8Array | { sizeOf: string }];

/**
 * Rewrites a manifest list (Iceberg spec, "Manifest Lists"): each `manifest_path` to the
 * mirror and each `manifest_length` to the rewritten manifest's size, which engines use to
 * read the manifest (some read exactly that many bytes).
 */
export async function rewriteManifestList(
  file: string,
  bytes: Uint8Array,
  mapper: PathMapper,
  sizeOf: RewrittenSizeOf,
): Promise<AvroRewrite> {
  return rewriteAvro(file, bytes, mapper, sizeOf, "manifest_file", (rec, r, ctx) => {
    const spans = r.fieldSpans(rec);
    const pathAt = fieldIndex(rec, "manifest_path", file);
    const lengthAt = fieldIndex(rec, "manifest_length", file);
    const uri = stringAt(r.buf, spans[pathAt]!);
    return [
      [...spans[pathAt]!, encodeString(ctx.map(uri))] as Edit,
      [...spans[lengthAt]!, ctx.size(uri)] as Edit,
    ].sort((a, b) => a[0] - b[0]);
  });
}

/**
 * Rewrites a manifest (Iceberg spec, "Manifests"): each entry's `data_file.file_path` and
 * `referenced_data_file`; for position-delete files (content 1, Parquet or Puffin deletion
 * vectors) also `file_size_in_bytes`, since their rewrite changes their size, and the
 * `file_path` column's bounds. Bounds that share one ref's prefix map in order (every path
 * between them has that prefix); any other pair is dropped, which only costs readers pruning.
 */
export async function rewriteManifest(
  file: string,
  bytes: Uint8Array,
  mapper: PathMapper,
  sizeOf: RewrittenSizeOf,
): Promise<AvroRewrite> {
  return rewriteAvro(file, bytes, mapper, sizeOf, "manifest_entry", (entry, r, ctx) => {
    // One walk over the entry: data_file's fields are found on the way.
    let edits: Edit[] | undefined;
    for (const f of entry.fields) {
      if (f.name !== "data_file") {
        r.skip(f.type);
        continue;
      }
      let type = f.type;
      if (type.kind === "union") type = r.branch(type);
      if (type.kind !== "record") throw new AvroSchemaError("data_file is not a record");
      edits = dataFileEdits(type, r.buf, r.fieldSpans(type), ctx);
    }
    if (!edits)
      throw new TableRewriteError(`${file}: its manifest entries have no data_file`, file);
    return edits;
  });
}

interface Context {
  map(uri: string): string;
  /** Where the rewritten size of `uri` goes: filled in once every size is known. */
  size(uri: string): { sizeOf: string };
  file: string;
  mapper: PathMapper;
}

function dataFileEdits(
  type: Record,
  buf: Uint8Array,
  spans: [number, number][],
  ctx: Context,
): Edit[] {
  const index = (name: string): number => type.fields.findIndex((f) => f.name === name);
  const contentAt = index("content");
  // Format version 1 manifests have no `content`: every entry is a data file.
  const content =
    contentAt < 0
      ? 0
      : new AvroReader(buf, spans[contentAt]![0], spans[contentAt]![1]).readNumber();
  const pathAt = fieldIndex(type, "file_path", ctx.file);
  const uri = stringAt(buf, spans[pathAt]!);
  const edits: Edit[] = [[...spans[pathAt]!, encodeString(ctx.map(uri))]];

  const refAt = index("referenced_data_file");
  if (refAt >= 0) {
    const [s, e] = spans[refAt]!;
    const r = new AvroReader(buf, s, e);
    const refType = type.fields[refAt]!.type;
    const branchIndex = refType.kind === "union" ? r.readNumber() : -1;
    const branch = refType.kind === "union" ? refType.branches[branchIndex]! : refType;
    if (branch.kind === "string") {
      const mapped = encodeString(ctx.map(r.readString()));
      const w = new AvroWriter();
      if (branchIndex >= 0) w.long(branchIndex);
      w.raw(mapped);
      edits.push([s, e, w.finish()]);
    }
  }
  if (content === POSITION_DELETES) {
    const sizeAt = fieldIndex(type, "file_size_in_bytes", ctx.file);
    edits.push([...spans[sizeAt]!, ctx.size(uri)]);
    edits.push(...boundEdits(type, buf, spans, ctx.mapper));
  }
  return edits.sort((a, b) => a[0] - b[0]);
}

type RecordRewriter = (rec: Record, r: AvroReader, ctx: Context) => Edit[];

async function rewriteAvro(
  file: string,
  bytes: Uint8Array,
  mapper: PathMapper,
  sizeOf: RewrittenSizeOf,
  recordName: "manifest_file" | "manifest_entry",
  perRecord: RecordRewriter,
): Promise<AvroRewrite> {
  await ensureZstd();
  try {
    const container = readContainer(bytes);
    const rec = container.schema;
    if (rec.kind !== "record" || rec.name.split(".").pop() !== recordName) {
      throw new TableRewriteError(
        `${file} is not an Iceberg ${recordName === "manifest_file" ? "manifest list" : "manifest"} (its records are not ${recordName})`,
        file,
      );
    }
    // One walk over the records; the sizes they record are asked for once it is done.
    const wanted = new Map<string, { sizeOf: string }>();
    const ctx: Context = {
      map: (uri) => mapper.map(uri, file),
      size: (uri) => {
        let slot = wanted.get(uri);
        if (!slot) wanted.set(uri, (slot = { sizeOf: uri }));
        return slot;
      },
      file,
      mapper,
    };
    const edited = container.blocks.map((b) => {
      const edits: Edit[] = [];
      const r = new AvroReader(b.data);
      for (let i = 0; i < b.count; i++) edits.push(...perRecord(rec, r, ctx));
      if (r.pos !== b.data.length)
        throw new AvroDataError("a block holds more bytes than its records");
      return edits;
    });
    const sizes = new Map<string, Uint8Array>();
    const recorded = new Map<string, bigint>();
    for (const uri of wanted.keys()) {
      const path = mapper.repositoryPath(uri)!;
      const answer = await sizeOf({ uri, path });
      if (answer === undefined) {
        // A manifest list must know each manifest's size: readers open manifests by it.
        if (recordName === "manifest_file") {
          throw new TableRewriteError(
            `${file} records the manifest ${uri}, whose rewritten size is not known (it is neither rewritten by this export nor at the mirror)`,
            file,
            uri,
          );
        }
        continue;
      }
      sizes.set(uri, encodeLong(BigInt(answer)));
      recorded.set(path, BigInt(answer));
    }
    const blocks: AvroBlock[] = container.blocks.map((b, i) => {
      const w = new AvroWriter();
      splice(w, b.data, 0, b.data.length, edited[i]!, sizes);
      return { count: b.count, data: w.finish() };
    });
    return {
      bytes: writeContainer(container.header, container.codec, container.sync, blocks),
      sizesRecorded: recorded,
    };
  } catch (err) {
    if (err instanceof AvroDataError || err instanceof AvroSchemaError) {
      throw new TableRewriteError(
        `${file} cannot be read as Avro: ${err.message}`,
        file,
        undefined,
        { cause: err },
      );
    }
    throw err;
  }
}

/**
 * Writes buf[start, end) with the edits' ranges (sorted, disjoint) replaced; a size edit whose
 * size is unknown (`sizes` lacks it) keeps the bytes it covers.
 */
function splice(
  w: AvroWriter,
  buf: Uint8Array,
  start: number,
  end: number,
  edits: readonly Edit[],
  sizes: ReadonlyMap<string, Uint8Array>,
): void {
  let at = start;
  for (const [s, e, bytes] of edits) {
    const out = bytes instanceof Uint8Array ? bytes : sizes.get(bytes.sizeOf);
    if (!out) continue;
    w.raw(buf.subarray(at, s));
    w.raw(out);
    at = e;
  }
  w.raw(buf.subarray(at, end));
}

function fieldIndex(rec: Record, name: string, file: string): number {
  const i = rec.fields.findIndex((f) => f.name === name);
  if (i < 0)
    throw new TableRewriteError(`${file}: its ${rec.name} records have no ${name} field`, file);
  return i;
}

function stringAt(buf: Uint8Array, [s, e]: [number, number]): string {
  return new AvroReader(buf, s, e).readString();
}

function encodeString(s: string): Uint8Array {
  const w = new AvroWriter();
  w.string(s);
  return w.finish();
}

function encodeLong(n: bigint): Uint8Array {
  const w = new AvroWriter();
  w.long(n);
  return w.finish();
}

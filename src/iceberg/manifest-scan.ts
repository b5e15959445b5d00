import { TableRewriteError } from "../errors.ts";
import { AvroDataError, AvroReader, AvroSchemaError } from "./avro-binary.ts";
import type { AvroType } from "./avro-binary.ts";
import { readContainer } from "./avro-container.ts";
import { ensureZstd } from "./codecs.ts";

/** What a manifest entry says of its file, as far as planning a rewrite needs. */
export interface ManifestEntryFile {
  /** 0 data, 1 position deletes (Parquet/Avro/ORC files or Puffin deletion vectors), 2 equality deletes. */
  content: number;
  /** The file's path as the manifest holds it. */
  uri: string;
  /** `PARQUET`, `AVRO`, `ORC` or `PUFFIN`, as written. */
  format: string;
}

/** The paths an Avro metadata file records: the manifests of a list, the files of a manifest. */
export interface AvroScan {
  kind: "manifest-list" | "manifest";
  /** For a manifest list: its manifests (content 0). For a manifest: its entries' files. */
  files: ManifestEntryFile[];
}

/** Reads which files a manifest list or manifest records, without rewriting anything. */
export async function scanAvroMetadata(file: string, bytes: Uint8Array): Promise<AvroScan> {
  await ensureZstd();
  try {
    const c = readContainer(bytes);
    const rec = c.schema;
    const name = rec.kind === "record" ? rec.name.split(".").pop() : undefined;
    if (rec.kind !== "record" || (name !== "manifest_file" && name !== "manifest_entry")) {
      throw new TableRewriteError(
        `${file} is neither an Iceberg manifest list nor a manifest`,
        file,
      );
    }
    const files: ManifestEntryFile[] = [];
    for (const block of c.blocks) {
      const r = new AvroReader(block.data);
      for (let i = 0; i < block.count; i++) {
        if (name === "manifest_file") {
          const v = readFields(r, rec, ["manifest_path"]);
          files.push({ content: 0, uri: v.get("manifest_path") as string, format: "AVRO" });
        } else {
          const v = readFields(r, rec, ["data_file"]);
          const df = v.get("data_file") as Map<string, string | number>;
          files.push({
            content: (df.get("content") as number | undefined) ?? 0,
            uri: df.get("file_path") as string,
            format: df.get("file_format") as string,
          });
        }
      }
    }
    return { kind: name === "manifest_file" ? "manifest-list" : "manifest", files };
  } catch (err) {
    if (err instanceof AvroDataError || err instanceof AvroSchemaError) {
      throw new TableRewriteError(
        `${file} cannot be read as Avro: ${err.message}`,
        file,
        undefined,
        {
          cause: err,
        },
      );
    }
    throw err;
  }
}

// Reads the named fields of the record at the cursor (strings, ints, and `data_file`'s
// content/file_path/file_format), skipping the rest; leaves the cursor after the record.
function readFields(
  r: AvroReader,
  rec: AvroType & { kind: "record" },
  names: readonly string[],
): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const f of rec.fields) {
    if (!names.includes(f.name)) {
      r.skip(f.type);
      continue;
    }
    let t = f.type;
    if (t.kind === "union") t = r.branch(t);
    if (t.kind === "string") out.set(f.name, r.readString());
    else if (t.kind === "int") out.set(f.name, r.readNumber());
    else if (t.kind === "record")
      out.set(f.name, readFields(r, t, ["content", "file_path", "file_format"]));
    else r.skip(t);
  }
  return out;
}

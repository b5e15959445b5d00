import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AvroReader, AvroWriter, compileSchema } from "../../../src/iceberg/avro-binary.ts";
import type { AvroType } from "../../../src/iceberg/avro-binary.ts";
import { readContainer } from "../../../src/iceberg/avro-container.ts";
import { rewriteManifest, rewriteManifestList } from "../../../src/iceberg/manifests.ts";
import { PathMapper } from "../../../src/iceberg/path-map.ts";
import { avroContainer } from "./avro-fixture.ts";

const mapper = new PathMapper({ repository: "r", destinationRoot: "s3://b/m/" });
const FILE_PATH_ID = 2147483546;

// The fields of Iceberg's format 2 manifest_entry and manifest_file that the rewrite touches,
// in the spec's order, with one untouched field between them; the real files' schemas are
// exercised by the integration tests (pyiceberg's and Iceberg Java's manifests).
const bounds = {
  type: "array",
  logicalType: "map",
  items: {
    type: "record",
    name: "k126_v127",
    fields: [
      { name: "key", type: "int", "field-id": 126 },
      { name: "value", type: "bytes", "field-id": 127 },
    ],
  },
};
const entrySchema = {
  type: "record",
  name: "manifest_entry",
  fields: [
    { name: "status", type: "int", "field-id": 0 },
    { name: "snapshot_id", type: ["null", "long"], "field-id": 1 },
    {
      name: "data_file",
      "field-id": 2,
      type: {
        type: "record",
        name: "r2",
        fields: [
          { name: "content", type: "int", "field-id": 134 },
          { name: "file_path", type: "string", "field-id": 100 },
          { name: "file_format", type: "string", "field-id": 101 },
          { name: "file_size_in_bytes", type: "long", "field-id": 104 },
          { name: "lower_bounds", type: ["null", bounds], "field-id": 125 },
          {
            name: "upper_bounds",
            type: ["null", { ...bounds, items: { ...bounds.items, name: "k128_v129" } }],
            "field-id": 128,
          },
          { name: "referenced_data_file", type: ["null", "string"], "field-id": 143 },
        ],
      },
    },
  ],
};

interface Entry {
  content: number;
  path: string;
  size: bigint;
  lower?: string;
  upper?: string;
  referenced?: string;
}

function kv(w: AvroWriter, value: string | undefined): void {
  if (value === undefined) return w.long(0);
  w.long(1);
  w.long(1);
  w.long(FILE_PATH_ID);
  w.bytes(Buffer.from(value));
  w.long(0);
}

function manifest(entries: Entry[]): Uint8Array {
  const w = new AvroWriter();
  for (const e of entries) {
    w.long(1);
    w.long(1);
    w.long(9223372036854775807n);
    w.long(e.content);
    w.string(e.path);
    w.string(e.path.endsWith(".puffin") ? "PUFFIN" : "PARQUET");
    w.long(e.size);
    kv(w, e.lower);
    kv(w, e.upper);
    if (e.referenced === undefined) w.long(0);
    else {
      w.long(1);
      w.string(e.referenced);
    }
  }
  return avroContainer(entrySchema, w.finish(), entries.length, "deflate");
}

/** Decodes the entries back (the test's own reader of its own small schema). */
function entries(bytes: Uint8Array): Entry[] {
  const c = readContainer(bytes);
  const type = c.schema as AvroType & { kind: "record" };
  const out: Entry[] = [];
  const r = new AvroReader(c.blocks[0]!.data);
  const readKv = (): string | undefined => {
    if (r.readNumber() === 0) return undefined;
    let found: string | undefined;
    for (let n = r.readNumber(); n !== 0; n = r.readNumber()) {
      for (; n > 0; n--) {
        const key = r.readNumber();
        const v = Buffer.from(r.readBytes()).toString();
        if (key === FILE_PATH_ID) found = v;
      }
    }
    return found;
  };
  for (let i = 0; i < c.blocks[0]!.count; i++) {
    r.readNumber();
    r.skip((type.fields[1] as { type: AvroType }).type);
    const content = r.readNumber();
    const path = r.readString();
    r.readString();
    const size = r.readLong();
    const lower = readKv();
    const upper = readKv();
    const referenced = r.readNumber() === 1 ? r.readString() : undefined;
    out.push({ content, path, size, lower, upper, referenced });
  }
  return out;
}

describe("rewriteManifest", () => {
  it("maps paths, feeds rewritten delete-file sizes, and keeps bounds only when they bound mirror paths", async () => {
    const asked: string[] = [];
    const out = await rewriteManifest(
      "t/metadata/x-m0.avro",
      manifest([
        { content: 0, path: "s3://r/main/t/data/a.parquet", size: 100n, lower: "zz", upper: "zz" },
        {
          content: 1,
          path: "s3://r/main/t/data/d1.parquet",
          size: 200n,
          lower: "s3://r/dev/t/data/a.parquet",
          upper: "s3://r/dev/t/data/b.parquet",
        },
        {
          content: 1,
          path: "s3a://r/main/t/data/d2.parquet",
          size: 300n,
          lower: "s3://r/dev/t/data/a.parquet",
          upper: "s3://r/main/t/data/b.parquet",
          referenced: "s3://r/main/t/data/b.parquet",
        },
        {
          content: 1,
          path: "s3://r/main/t/data/d3.parquet",
          size: 400n,
          lower: "s3://r/ma",
          upper: "s3://r/mb",
        },
      ]),
      mapper,
      ({ path }) => {
        asked.push(path);
        return path.endsWith("d3.parquet") ? undefined : BigInt(path.length) * 1000n;
      },
    );
    assert.deepEqual(asked.sort(), ["t/data/d1.parquet", "t/data/d2.parquet", "t/data/d3.parquet"]);
    assert.deepEqual(entries(out.bytes), [
      // A data file: its bounds are user data and its size is its own.
      {
        content: 0,
        path: "s3://b/m/t/data/a.parquet",
        size: 100n,
        lower: "zz",
        upper: "zz",
        referenced: undefined,
      },
      // Both bounds whole paths of one ref: mapped.
      {
        content: 1,
        path: "s3://b/m/t/data/d1.parquet",
        size: 17000n,
        lower: "s3://b/m/t/data/a.parquet",
        upper: "s3://b/m/t/data/b.parquet",
        referenced: undefined,
      },
      // Bounds of two refs: the mapped pair could be out of order, so it is dropped.
      {
        content: 1,
        path: "s3://b/m/t/data/d2.parquet",
        size: 17000n,
        lower: undefined,
        upper: undefined,
        referenced: "s3://b/m/t/data/b.parquet",
      },
      // Unknown size (a delete file gone from the commit): the recorded one stays. Bounds cut
      // short before the ref (as Java truncates them) name no object and are dropped.
      {
        content: 1,
        path: "s3://b/m/t/data/d3.parquet",
        size: 400n,
        lower: undefined,
        upper: undefined,
        referenced: undefined,
      },
    ]);
    assert.deepEqual(
      [...out.sizesRecorded],
      [
        ["t/data/d1.parquet", 17000n],
        ["t/data/d2.parquet", 17000n],
      ],
    );
  });

  it("fails on a data file outside the repository, naming the manifest and the path", async () => {
    await assert.rejects(
      rewriteManifest(
        "t/metadata/x-m0.avro",
        manifest([{ content: 0, path: "s3://other/main/a.parquet", size: 1n }]),
        mapper,
        () => 1,
      ),
      { code: "LM_TABLE_REWRITE", file: "t/metadata/x-m0.avro", path: "s3://other/main/a.parquet" },
    );
  });

  it("refuses a manifest list as a manifest and the other way round", async () => {
    await assert.rejects(
      rewriteManifestList("m", manifest([]), mapper, () => 1),
      { code: "LM_TABLE_REWRITE" },
    );
  });
});

describe("rewriteManifestList", () => {
  const listSchema = compileSchema({
    type: "record",
    name: "manifest_file",
    fields: [
      { name: "manifest_path", type: "string", "field-id": 500 },
      { name: "manifest_length", type: "long", "field-id": 501 },
      { name: "added_snapshot_id", type: "long", "field-id": 503 },
    ],
  });
  const list = (paths: string[]): Uint8Array => {
    const w = new AvroWriter();
    for (const p of paths) {
      w.string(p);
      w.long(5);
      w.long(-9223372036854775808n);
    }
    return avroContainer(
      {
        type: "record",
        name: "manifest_file",
        fields: (listSchema as { fields: { name: string }[] }).fields.map((f, i) => ({
          name: f.name,
          type: i === 0 ? "string" : "long",
        })),
      },
      w.finish(),
      paths.length,
      "deflate",
    );
  };

  it("records each manifest's rewritten length and keeps the other fields' bytes", async () => {
    const out = await rewriteManifestList(
      "snap-1.avro",
      list(["s3://r/main/t/metadata/a-m0.avro", "lakefs://r/c0ffee/t/metadata/b-m0.avro"]),
      mapper,
      ({ path }) => (path.startsWith("t/metadata/a") ? 123456789012n : 7),
    );
    const c = readContainer(out.bytes);
    const r = new AvroReader(c.blocks[0]!.data);
    const got = [0, 1].map(() => [r.readString(), r.readLong(), r.readLong()]);
    assert.deepEqual(got, [
      ["s3://b/m/t/metadata/a-m0.avro", 123456789012n, -9223372036854775808n],
      ["s3://b/m/t/metadata/b-m0.avro", 7n, -9223372036854775808n],
    ]);
  });

  it("fails when a manifest's rewritten size is unknown, since readers open manifests by it", async () => {
    await assert.rejects(
      rewriteManifestList(
        "snap-1.avro",
        list(["s3://r/main/t/metadata/a-m0.avro"]),
        mapper,
        () => undefined,
      ),
      {
        code: "LM_TABLE_REWRITE",
        file: "snap-1.avro",
        path: "s3://r/main/t/metadata/a-m0.avro",
      },
    );
  });
});

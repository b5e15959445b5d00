import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { AvroReader, AvroWriter, compileSchema } from "../../../src/iceberg/avro-binary.ts";
import { readContainer, writeContainer } from "../../../src/iceberg/avro-container.ts";
import type { AvroCodec } from "../../../src/iceberg/avro-container.ts";
import { ensureZstd } from "../../../src/iceberg/codecs.ts";

describe("Avro binary encoding", () => {
  it("reads back every 64-bit long exactly, as a BigInt", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (n) => {
        const w = new AvroWriter();
        w.long(n);
        assert.equal(new AvroReader(w.finish()).readLong(), n);
      }),
    );
    // Avro's zig-zag: 0, -1, 1, -2 are 0, 1, 2, 3 (Avro specification, "Binary Encoding").
    const w = new AvroWriter();
    for (const n of [0n, -1n, 1n, -2n, 2n ** 63n - 1n]) w.long(n);
    assert.deepEqual(
      [...w.finish()],
      [0, 1, 2, 3, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    );
  });

  it("skips arrays written with negative block counts by their byte size", () => {
    const type = compileSchema({
      type: "record",
      name: "r",
      fields: [
        { name: "a", type: { type: "array", items: "long" } },
        { name: "b", type: "string" },
      ],
    });
    const items = new AvroWriter();
    items.long(7);
    items.long(8);
    const body = items.finish();
    const w = new AvroWriter();
    w.long(-2);
    w.long(body.length);
    w.raw(body);
    w.long(0);
    w.string("after");
    const r = new AvroReader(w.finish());
    const spans = r.fieldSpans(type as never);
    assert.equal(new AvroReader(r.buf, spans[1]![0]).readString(), "after");
  });

  it("resolves named types by namespace, including a record that refers to itself", () => {
    const t = compileSchema({
      type: "record",
      name: "node",
      namespace: "a.b",
      fields: [
        { name: "next", type: ["null", "node"] },
        { name: "f", type: { type: "fixed", name: "f16", size: 16 } },
        { name: "g", type: "a.b.f16" },
      ],
    });
    assert.equal(t.kind, "record");
    assert.throws(
      () => compileSchema({ type: "record", name: "x", fields: [{ name: "y", type: "missing" }] }),
      /missing/,
    );
  });
});

describe("Avro object container files", () => {
  for (const codec of ["null", "deflate", "snappy", "zstandard"] as AvroCodec[]) {
    it(`keeps the header and re-encodes blocks with the ${codec} codec`, async () => {
      await ensureZstd();
      const schema =
        '{"type":"record","name":"manifest_file","fields":[{"name":"s","type":"string","field-id":500}]}';
      const header = new AvroWriter();
      header.raw(Uint8Array.from([0x4f, 0x62, 0x6a, 0x01]));
      header.long(2);
      header.string("avro.schema");
      header.string(schema);
      header.string("avro.codec");
      header.string(codec);
      header.long(0);
      const sync = Uint8Array.from({ length: 16 }, (_, i) => i * 7);
      header.raw(sync);
      const records = new AvroWriter();
      for (let i = 0; i < 1000; i++) records.string(`s3://r/main/file-${i}.parquet`);
      const data = records.finish();
      const file = writeContainer(header.finish(), codec, sync, [
        { count: 1000, data },
        { count: 0, data: new Uint8Array() },
      ]);
      const c = readContainer(file);
      assert.equal(c.codec, codec);
      assert.deepEqual(Buffer.from(c.header), Buffer.from(header.finish()));
      assert.equal(Buffer.from(c.meta.get("avro.schema")!).toString(), schema);
      assert.deepEqual(Buffer.from(c.blocks[0]!.data), Buffer.from(data));
      assert.equal(c.blocks[1]!.count, 0);
    });
  }

  it("names the codecs it cannot read", () => {
    const header = new AvroWriter();
    header.raw(Uint8Array.from([0x4f, 0x62, 0x6a, 0x01]));
    header.long(2);
    header.string("avro.schema");
    header.string('"string"');
    header.string("avro.codec");
    header.string("bzip2");
    header.long(0);
    header.raw(new Uint8Array(16));
    assert.throws(() => readContainer(header.finish()), /bzip2/);
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PathMapper } from "../../../src/iceberg/path-map.ts";
import { rewritePuffin } from "../../../src/iceberg/puffin.ts";

const mapper = new PathMapper({ repository: "r", destinationRoot: "s3://b/m/" });
const MAGIC = Buffer.from("PFA1", "latin1");

// A Puffin file as the spec lays it out: Magic, blobs, Magic, footer JSON, its size (4 bytes
// little-endian), flags (4 bytes), Magic.
function puffin(footer: string, flags = 0): Buffer {
  const blob = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const payload = Buffer.from(footer, "utf8");
  const trailer = Buffer.alloc(12);
  trailer.writeUInt32LE(payload.length, 0);
  trailer.writeUInt32LE(flags, 4);
  MAGIC.copy(trailer, 8);
  return Buffer.concat([MAGIC, blob, MAGIC, payload, trailer]);
}

const footer = (path: string): string =>
  `{"blobs":[{"type":"deletion-vector-v1","fields":[2147483645],"snapshot-id":9223372036854775807,"sequence-number":3,"offset":4,"length":8,"properties":{"referenced-data-file":"${path}","cardinality":"2"}}],"properties":{"created-by":"x"}}`;

describe("rewritePuffin", () => {
  it("rewrites each deletion vector's referenced-data-file and leaves the blobs where they were", () => {
    const src = puffin(footer("s3://r/main/wh/t/data/a.parquet"));
    const out = Buffer.from(rewritePuffin("dv.puffin", src, mapper));
    assert.deepEqual(out, puffin(footer("s3://b/m/wh/t/data/a.parquet")));
    assert.deepEqual(out.subarray(4, 12), src.subarray(4, 12));
  });

  it("fails on a referenced file outside the repository, an LZ4 footer, or a file that is no Puffin", () => {
    assert.throws(
      () => rewritePuffin("dv.puffin", puffin(footer("s3://x/main/a.parquet")), mapper),
      {
        code: "LM_TABLE_REWRITE",
        path: "s3://x/main/a.parquet",
      },
    );
    assert.throws(
      () => rewritePuffin("dv.puffin", puffin(footer("s3://r/main/a"), 1), mapper),
      /LZ4/,
    );
    const cut = puffin(footer("s3://r/main/a"));
    cut.writeUInt32LE(9999, cut.length - 12);
    assert.throws(() => rewritePuffin("dv.puffin", cut, mapper), { code: "LM_TABLE_REWRITE" });
    assert.throws(
      () => rewritePuffin("dv.puffin", Buffer.from("not a puffin file at all"), mapper),
      {
        code: "LM_TABLE_REWRITE",
      },
    );
  });
});

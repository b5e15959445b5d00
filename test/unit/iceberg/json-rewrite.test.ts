import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { JsonSyntaxError, rewriteJsonStrings } from "../../../src/iceberg/json-rewrite.ts";

describe("rewriteJsonStrings", () => {
  it("keeps snapshot IDs above 2^53 exactly as written, which JSON.parse would round", () => {
    const text =
      '{"current-snapshot-id":9007199254740993,"snapshots":[{"snapshot-id":-9223372036854775808,"manifest-list":"s3://r/main/m.avro"}]}';
    const out = rewriteJsonStrings(text, (path, v) =>
      path[2] === "manifest-list" ? v.replace("s3://r/main/", "s3://b/") : undefined,
    );
    assert.equal(out, text.replace("s3://r/main/m.avro", "s3://b/m.avro"));
    // The trap the scanner avoids: a round trip through JS numbers changes the ID.
    assert.notEqual(JSON.stringify(JSON.parse(text)), text);
  });

  it("gives every string its path of keys and array indexes", () => {
    const seen: string[] = [];
    rewriteJsonStrings('{"a":[{"b":"x"},"y"],"c":{"d":"z"},"e":"w"}', (path, v) => {
      seen.push(`${path.join(".")}=${v}`);
      return undefined;
    });
    assert.deepEqual(seen, ["a.0.b=x", "a.1=y", "c.d=z", "e=w"]);
  });

  it("returns the text unchanged, whitespace and escapes included, when nothing is replaced", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.constantFrom(undefined, 2, "\t"), (value, indent) => {
        const text = JSON.stringify(value, null, indent);
        assert.equal(
          rewriteJsonStrings(text, () => undefined),
          text,
        );
      }),
    );
  });

  it("replaces exactly the strings it is asked to, whatever their characters", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.string({ unit: "binary" }), (value, suffix) => {
        const text = JSON.stringify(value, null, 1);
        const out = rewriteJsonStrings(text, (_path, v) => v + suffix);
        const expected = JSON.stringify(
          mapStrings(value, (v) => v + suffix),
          null,
          1,
        );
        assert.deepEqual(JSON.parse(out), JSON.parse(expected));
      }),
    );
  });

  it("keeps escapes and spacing around the replaced string, and decodes escapes before replacing", () => {
    const text =
      '{ "a" : "\\u00e9\\/x" ,\n "b":[ 1.5E+10 , -0 ], "c":"s3:\\/\\/r\\/main\\/\\u00e9" }';
    const out = rewriteJsonStrings(text, (path, v) => (path[0] === "c" ? `${v}!` : undefined));
    assert.equal(out, text.replace('"s3:\\/\\/r\\/main\\/\\u00e9"', '"s3://r/main/é!"'));
  });

  it("rejects text that is not one JSON document, saying where", () => {
    for (const bad of ['{"a":', '{"a" 1}', "[1,]", '"open', "{} {}", "tru", '{"a":-}']) {
      assert.throws(() => rewriteJsonStrings(bad, () => undefined), JsonSyntaxError, bad);
    }
  });
});

function mapStrings(value: unknown, f: (s: string) => string): unknown {
  if (typeof value === "string") return f(value);
  if (Array.isArray(value)) return value.map((v) => mapStrings(v, f));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mapStrings(v, f)]));
  }
  return value;
}

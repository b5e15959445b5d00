import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  decodeMetadata,
  decodeMetadataEntry,
  encodeMetadata,
  encodeMetadataEntry,
} from "../../../src/azure/metadata-names.ts";

/** A C# identifier as Azure checks metadata names, restricted to what the mapping emits. */
const storable = /^[a-z_][a-z0-9_]*$/;

/** Names built from the characters that break naive mappings. */
const hostileName = fc.oneof(
  fc.string({
    minLength: 1,
    maxLength: 12,
    unit: fc.constantFrom("-", "_", ".", "a", "A", "z", "Z", "0", "9", "l", "m", "x", "e"),
  }),
  fc.string({ minLength: 1, maxLength: 6, unit: "grapheme" }),
  fc.constantFrom(
    "lm_",
    "lm_x_",
    "lm_e_",
    "lm_x__2d",
    "LM_X_a",
    "_",
    "__",
    "1st",
    "my-key",
    "My_Key",
    "my_key",
    "MY-KEY",
  ),
);
const value = fc.oneof(
  fc.constant(""),
  fc.string({ maxLength: 20, unit: fc.constantFrom("a", " ", "=", "?", "-") }),
);

describe("Azure metadata-name mapping", () => {
  it("maps the documented examples", () => {
    assert.deepEqual(encodeMetadataEntry("owner", "a"), ["owner", "a"]);
    assert.deepEqual(encodeMetadataEntry("my_key", "a"), ["my_key", "a"]);
    assert.deepEqual(encodeMetadataEntry("my-key", "a"), ["lm_x_my_2dkey", "a"]);
    assert.deepEqual(encodeMetadataEntry("My_Key", "a"), ["lm_x__4dy_5f_4bey", "a"]);
    assert.deepEqual(encodeMetadataEntry("lm_a", "a"), ["lm_x_lm_5fa", "a"]);
    assert.deepEqual(encodeMetadataEntry("k", ""), ["lm_e_k", "-"]);
    assert.deepEqual(encodeMetadataEntry("ü", "v"), ["lm_x__c3_bc", "v"]);
  });

  it("stores only lower-case C# identifiers, and every name comes back as it was", () => {
    fc.assert(
      fc.property(hostileName, value, (name, v) => {
        const [n, sv] = encodeMetadataEntry(name, v);
        assert.match(n, storable);
        assert.notEqual(sv, "", "Azure drops empty values");
        // Stores and Node's HTTP stack may lower-case names: the mapping must not care.
        assert.deepEqual(decodeMetadataEntry(n.toLowerCase(), sv), [name, v]);
      }),
      { numRuns: 2000 },
    );
  });

  it("never maps two names of one object to one stored name, whatever their case", () => {
    fc.assert(
      fc.property(fc.uniqueArray(hostileName, { maxLength: 8 }), (names) => {
        const meta = Object.fromEntries(names.map((n, i) => [n, `v${i}`]));
        const stored = encodeMetadata(meta, "p");
        assert.equal(new Set(Object.keys(stored).map((k) => k.toLowerCase())).size, names.length);
        assert.deepEqual(decodeMetadata(stored), meta);
      }),
    );
  });

  it("reads a name it did not write as it is, never dropping it", () => {
    for (const foreign of ["lm_x_zz", "lm_x__ff", "lm_e_a", "lm_q_a", "Owner"]) {
      const decoded = decodeMetadata({ [foreign]: "v" });
      assert.equal(Object.keys(decoded).length, 1, foreign);
    }
    assert.deepEqual(decodeMetadata({ lm_x__ff: "v" }), { lm_x__ff: "v" }, "not UTF-8");
    assert.deepEqual(decodeMetadata({ lm_e_a: "v" }), { lm_e_a: "v" }, "empty marker, other value");
    assert.deepEqual(decodeMetadata({ lm_x_a: "v" }), { lm_x_a: "v" }, "not what encoding gives");
  });

  it("two stored names for one name are read as stored, in either order: never as what was written (regression: someone's `foo` beside lakefs-mirror's `lm_e_foo`)", () => {
    const cases: [Record<string, string>, Record<string, string>][] = [
      [{ foo: "tampered", lm_e_foo: "-" }, { foo: "" }],
      [{ lm_e_my_2dkey: "-", lm_x_my_2dkey: "v" }, { "my-key": "v" }],
      [{ lm_x_my_2dkey: "tampered", lm_e_my_2dkey: "-" }, { "my-key": "" }],
    ];
    for (const [stored, written] of cases) {
      for (const order of [stored, Object.fromEntries(Object.entries(stored).reverse())]) {
        const read = decodeMetadata(order);
        assert.notDeepEqual(read, written, JSON.stringify(order));
        assert.deepEqual(read, Object.fromEntries(Object.entries(order)), JSON.stringify(order));
      }
    }
  });

  it("refuses an object whose mapped metadata passes Azure's 8 KiB, naming it", () => {
    assert.throws(() => encodeMetadata({ "a-b": "x".repeat(8183) }, "big/obj"), {
      code: "LM_OBJECT_REFUSED",
      message: /big\/obj.*8 KiB/,
    });
    assert.doesNotThrow(() => encodeMetadata({ ab: "x".repeat(8000) }, "ok"));
  });
});

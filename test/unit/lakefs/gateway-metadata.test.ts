import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeWordQ, gatewayMetadata } from "../../../src/lakefs/gateway-metadata.ts";

/**
 * Expected values printed by Go 1.26's `mime.QEncoding.Encode("utf-8", s)`, the call the lakeFS
 * gateway makes for every metadata value it serves (pkg/gateway/operations/operation_utils.go).
 */
const goVectors: [string, string][] = [
  ["", ""],
  ["plain ascii", "plain ascii"],
  ["tab\there", "tab\there"],
  ["a=b?c_d", "a=b?c_d"],
  ["é", "=?utf-8?q?=C3=A9?="],
  ["line\nbreak", "=?utf-8?q?line=0Abreak?="],
  ["emoji 😀 ok", "=?utf-8?q?emoji_=F0=9F=98=80_ok?="],
  ["日本語の値", "=?utf-8?q?=E6=97=A5=E6=9C=AC=E8=AA=9E=E3=81=AE=E5=80=A4?="],
  ["ÿ\u00a0", "=?utf-8?q?=C3=BF=C2=A0?="],
  ["x".repeat(70) + "é", `=?utf-8?q?${"x".repeat(63)}?= =?utf-8?q?${"x".repeat(7)}=C3=A9?=`],
  [
    "ü".repeat(40),
    Array(4)
      .fill(`=?utf-8?q?${"=C3=BC".repeat(10)}?=`)
      .join(" "),
  ],
];

describe("gateway metadata", () => {
  it("Q-encodes values byte for byte as Go's mime.QEncoding does", () => {
    for (const [input, want] of goVectors) assert.equal(encodeWordQ(input), want, input);
  });

  it("serves only X-Amz-Meta- keys, under their lower-cased names, as the gateway does", () => {
    const { metadata, hidden } = gatewayMetadata({
      "X-Amz-Meta-foo": "bar",
      "X-Amz-Meta-Camel": "Case",
      "X-Amz-Meta-city": "Zürich",
      "X-Amz-Meta-bad key": "not a header name",
      "x-amz-meta-lower": "the prefix is case-sensitive",
      owner: "set through the lakeFS API, invisible to S3 readers",
      "::lakefs::hidden": "internal",
    });
    assert.deepEqual(metadata, {
      foo: "bar",
      camel: "Case",
      city: "=?utf-8?q?Z=C3=BCrich?=",
    });
    assert.deepEqual(hidden, ["X-Amz-Meta-bad key"]);
  });

  it("gives every value as printable ASCII that an HTTP header can carry", () => {
    const { metadata } = gatewayMetadata({ "X-Amz-Meta-v": "控制\r\n字符 and a \u0000 null" });
    assert.match(metadata.v!, /^[\x20-\x7e]+$/);
  });
});

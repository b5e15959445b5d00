import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  failureLine,
  failureText,
  MAX_FAILURE_LINES,
  parseStatusFileName,
  statusFileName,
} from "../../../src/export/status-file.ts";

const commit = "a".repeat(64);

describe("status files", () => {
  it("are named EXPORT_<commit>_<ISO-8601 UTC instant>_<status> and parse back", () => {
    const at = new Date("2026-11-24T05:06:07.089Z");
    const name = statusFileName(commit, "SUCCESS", at);
    assert.equal(name, `EXPORT_${commit}_2026-11-24T05:06:07.089Z_SUCCESS`);
    assert.deepEqual(parseStatusFileName(name), { commitId: commit, at, status: "SUCCESS" });
    assert.equal(parseStatusFileName(`EXPORT_${commit}_yesterday_SUCCESS`), undefined);
  });

  it("name each failed path unambiguously, whatever characters it holds", () => {
    assert.equal(
      failureLine("copy", 'dir/a "b"\nc', "NoSuchKey:\n gone"),
      'copy "dir/a \\"b\\"\\nc": NoSuchKey: gone',
    );
  });

  it("hold at most 10,000 lines, the last one counting what was left out", () => {
    const lines = Array.from({ length: MAX_FAILURE_LINES }, (_, i) => `copy "p${i}": x`);
    const text = failureText(lines, 12_345);
    const out = text.trimEnd().split("\n");
    assert.equal(out.length, MAX_FAILURE_LINES);
    assert.equal(out.at(-1), `... and ${12_345 - (MAX_FAILURE_LINES - 1)} more failed operations`);
    assert.equal(failureText(["one"], 1), "one\n");
  });
});

import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { s3DeadlinesOf } from "../../src/clients.ts";
import { loadConfig } from "../../src/config.ts";
import { defaultDeadlines } from "../../src/http/deadlines.ts";

function file(content: unknown): string {
  const path = join(mkdtempSync(join(tmpdir(), "lakefs-mirror-clients-")), "config.json");
  writeFileSync(path, JSON.stringify(content));
  return path;
}

describe("request deadline settings", () => {
  it("default to the deadlines of src/http/deadlines.ts, and the lakeFS read deadline to 2 s", () => {
    const config = loadConfig({ env: {}, file: undefined });
    assert.deepEqual(s3DeadlinesOf(config), defaultDeadlines);
    assert.equal(config.lakefs.firstByteTimeoutMs, 2_000);
    assert.equal(config.lakefs.bodyTimeoutMs, 10_000);
    assert.equal(config.lakefs.headersTimeoutMs, 60_000);
  });

  it("reach the S3 client from their keys", () => {
    const config = loadConfig({
      env: {},
      file: file({
        s3: {
          firstByteTimeoutMs: 750,
          idleTimeoutMs: 4_000,
          workBytesPerSecond: 1_000_000,
          workMsPerEntry: 5,
        },
      }),
    });
    assert.deepEqual(s3DeadlinesOf(config), {
      firstByteMs: 750,
      idleMs: 4_000,
      workBytesPerSecond: 1_000_000,
      workMsPerEntry: 5,
    });
  });

  it("refuse a deadline of 0 and name the key", () => {
    for (const [section, key] of [
      ["s3", "firstByteTimeoutMs"],
      ["s3", "workBytesPerSecond"],
      ["lakefs", "firstByteTimeoutMs"],
    ] as const)
      assert.throws(() => loadConfig({ env: {}, file: file({ [section]: { [key]: 0 } }) }), {
        code: "LM_CONFIG",
        message: new RegExp(`${section}\\.${key}`),
      });
  });
});

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { defaultsFile, loadConfig, redactedConfig, schemaDefaults } from "../../src/config.ts";

function file(content: unknown): string {
  const path = join(mkdtempSync(join(tmpdir(), "lakefs-mirror-config-")), "config.json");
  writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

const mirror = {
  repository: "example",
  branches: ["main", "release-*"],
  destination: "s3://bucket/{repository}/{branch}/",
};

describe("configuration", () => {
  it("reads defaults, then the file, then environment variables", () => {
    const config = loadConfig({
      env: {
        LAKEFS_ENDPOINT: "http://lakefs:8000",
        LAKEFS_SECRET_ACCESS_KEY: "s3cr3t",
        KAFKA_BROKERS: "a:9092,b:9092",
      },
      file: file({
        mirrors: [mirror],
        lakefs: { endpoint: "http://from-file:8000" },
        kafka: { topic: "commits" },
      }),
    });
    assert.equal(config.lakefs.endpoint, "http://lakefs:8000");
    assert.deepEqual(config.kafka.brokers, ["a:9092", "b:9092"]);
    assert.equal(config.kafka.topic, "commits");
    assert.equal(config.mirrors[0]?.repository, "example");
    assert.equal(config.export.concurrency, 32);
    assert.ok(Object.isFrozen(config.lakefs));
  });

  it("ships config/default.json with every key at its schema default", () => {
    const shipped = JSON.parse(readFileSync(defaultsFile, "utf8")) as Record<string, unknown>;
    assert.deepEqual(shipped, JSON.parse(JSON.stringify(schemaDefaults())));
  });

  it("names an unknown key", () => {
    assert.throws(() => loadConfig({ env: {}, file: file({ lakefs: { endpoitn: "x" } }) }), {
      code: "LM_CONFIG",
      message: /lakefs\.endpoitn/,
    });
  });

  it("names the key whose value is wrong", () => {
    assert.throws(() => loadConfig({ env: {}, file: file({ server: { port: 70000 } }) }), {
      code: "LM_CONFIG",
      message: /server\.port/,
    });
    assert.throws(() => loadConfig({ env: { LAKEFS_ENDPOINT: "ftp://x" }, file: undefined }), {
      code: "LM_CONFIG",
      message: /lakefs\.endpoint/,
    });
    assert.throws(
      () =>
        loadConfig({
          env: {},
          file: file({ mirrors: [{ ...mirror, destination: "gs://elsewhere/" }] }),
        }),
      { code: "LM_CONFIG", message: /mirrors\[0\]\.destination/ },
    );
    assert.throws(
      () => loadConfig({ env: {}, file: file({ mirrors: [{ ...mirror, branches: [] }] }) }),
      {
        code: "LM_CONFIG",
        message: /mirrors\[0\]\.branches/,
      },
    );
  });

  it("refuses counts below 1 and names the key", () => {
    for (const [section, key] of [
      ["export", "concurrency"],
      ["scheduler", "maxParallelLanes"],
      ["export", "multipartPartSizeBytes"],
    ] as const) {
      assert.throws(() => loadConfig({ env: {}, file: file({ [section]: { [key]: 0 } }) }), {
        code: "LM_CONFIG",
        message: new RegExp(`${section}\\.${key}`),
      });
    }
    assert.throws(() => loadConfig({ env: { LAKEFS_MIRROR_CONCURRENCY: "0" } }), {
      code: "LM_CONFIG",
      message: /export\.concurrency/,
    });
    assert.throws(() => loadConfig({ env: {}, file: file({ export: { maxDeletes: "lots" } }) }), {
      code: "LM_CONFIG",
      message: /export\.maxDeletes/,
    });
  });

  it("refuses mirrors that would write one place twice", () => {
    const refused = (mirrors: unknown[], why: RegExp) =>
      assert.throws(() => loadConfig({ env: {}, file: file({ mirrors }) }), {
        code: "LM_CONFIG",
        message: why,
      });
    refused(
      [{ repository: "r", branches: ["main", "dev"], destination: "s3://bkt/x/" }],
      /mirrors\[0\]\.destination must contain \{branch\}/,
    );
    refused(
      [{ repository: "r", branches: ["release-*"], destination: "s3://bkt/{repository}/" }],
      /must contain \{branch\}/,
    );
    refused(
      [
        { repository: "r", branches: ["main"], destination: "s3://bkt/x" },
        { repository: "q", branches: ["main"], destination: "s3a://bkt/x/" },
      ],
      /mirrors\[0\] and mirrors\[1\] would both write s3:\/\/bkt\/x\//,
    );
    refused(
      [
        { repository: "r", branches: ["main"], destination: "s3://bkt/x/" },
        { repository: "q", branches: ["main"], destination: "s3://bkt/x/inner/" },
      ],
      /mirrors\[0\] and mirrors\[1\]/,
    );
    refused(
      [
        { repository: "r", branches: ["a-*"], destination: "s3://bkt/{branch}/" },
        { repository: "r", branches: ["b-*"], destination: "s3://bkt/{branch}" },
      ],
      /would both write s3:\/\/bkt\/\{branch\}\//,
    );
    // Distinct places are fine, and one branch needs no {branch}.
    const ok = loadConfig({
      env: {},
      file: file({
        mirrors: [
          { repository: "r", branches: ["main"], destination: "s3://bkt/x/" },
          { repository: "q", branches: ["main"], destination: "s3://bkt/xy/" },
          { repository: "r", branches: ["f-*"], destination: "s3://bkt/{repository}/{branch}/" },
          { repository: "q", branches: ["f-*"], destination: "s3://bkt/{repository}/{branch}/" },
        ],
      }),
    });
    assert.equal(ok.mirrors.length, 4);
  });

  it("says when the file is not JSON", () => {
    assert.throws(() => loadConfig({ env: {}, file: file("{ mirrors: ") }), {
      code: "LM_CONFIG",
      message: /cannot read config file .*config\.json/,
    });
  });

  it("never shows secrets in its printable form", () => {
    const config = loadConfig({
      env: {
        LAKEFS_SECRET_ACCESS_KEY: "lakefs-secret",
        AWS_SECRET_ACCESS_KEY: "aws-secret",
        LAKEFS_MIRROR_WEBHOOK_TOKEN: "tok",
      },
    });
    const text = JSON.stringify(redactedConfig(config));
    for (const secret of ["lakefs-secret", "aws-secret", '"tok"'])
      assert.equal(text.includes(secret), false, secret);
  });
});

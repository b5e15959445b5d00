import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { main } from "../../src/cli/main.ts";
import { checkDaemonConfig, placeholderTokens } from "../../src/config-daemon.ts";
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
    assert.throws(() => loadConfig({ env: { AZURE_BLOB_ENDPOINT: "127.0.0.1:10000" } }), {
      code: "LM_CONFIG",
      message: /azure\.endpoint/,
    });
    const azure = loadConfig({ env: { AZURE_BLOB_ENDPOINT: "http://127.0.0.1:10000/acct" } });
    assert.equal(azure.azure.endpoint, "http://127.0.0.1:10000/acct");
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
        { repository: "r", branches: ["a-b*"], destination: "s3://bkt/{branch}" },
      ],
      /mirrors\[0\] and mirrors\[1\] would both write s3:\/\/bkt\/a-b\//,
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
          // Globs that share no branch name never meet.
          { repository: "r", branches: ["a-*"], destination: "s3://bkt/g/{branch}/" },
          { repository: "r", branches: ["b-*"], destination: "s3://bkt/g/{branch}" },
        ],
      }),
    });
    assert.equal(ok.mirrors.length, 6);
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

describe("configuration the daemon refuses", () => {
  /** `lakefs-mirror run --config <file>` with `env`: its exit code and what it printed. */
  async function run(
    settings: Record<string, unknown>,
    env: NodeJS.ProcessEnv = {},
  ): Promise<{ code: number; stderr: string }> {
    let stderr = "";
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        stderr += chunk.toString();
        done();
      },
    });
    const dir = mkdtempSync(join(tmpdir(), "lakefs-mirror-refused-"));
    const config = file({
      mirrors: [mirror],
      server: { host: "127.0.0.1", port: 0 },
      checkpoint: { path: join(dir, "checkpoint") },
      ...settings,
    });
    const code = await main(["run", "--config", config], {
      env: { LAKEFS_MIRROR_WEBHOOK_TOKEN: "a-real-secret", LOG_LEVEL: "silent", ...env },
      stdout: sink,
      stderr: sink,
      // A daemon that starts stops at once (exit 0), as after a SIGTERM.
      signal: AbortSignal.abort(),
    });
    return { code, stderr };
  }

  const kafka = (extra: Record<string, unknown> = {}) => ({
    kafka: { brokers: ["127.0.0.1:1"], topic: "commits", ...extra },
  });

  it("KAFKA_BROKERS without a topic stops start-up naming both keys, instead of running alone and owning every lane", async () => {
    const { code, stderr } = await run({}, { KAFKA_BROKERS: "kafka:9092" });
    assert.equal(code, 2);
    assert.match(stderr, /kafka\.brokers \(KAFKA_BROKERS\) is set but kafka\.topic/);
    assert.match(stderr, /LAKEFS_MIRROR_KAFKA_TOPIC/);
    assert.match(stderr, /\[LM_CONFIG\]/);
    const other = await run({ kafka: { topic: "commits" } });
    assert.equal(other.code, 2);
    assert.match(
      other.stderr,
      /kafka\.topic .* is set but kafka\.brokers \(KAFKA_BROKERS\) is empty/,
    );
  });

  it("a dead-letter topic equal to the events topic is refused, instead of reading its own dead letters", async () => {
    const { code, stderr } = await run(kafka({ deadLetterTopic: "commits" }));
    assert.equal(code, 2);
    assert.match(stderr, /kafka\.deadLetterTopic must differ from kafka\.topic/);
  });

  it("a heartbeat interval at or above the session timeout is refused, naming both keys", async () => {
    for (const heartbeatIntervalMs of [30_000, 45_000]) {
      const { code, stderr } = await run(kafka({ sessionTimeoutMs: 30_000, heartbeatIntervalMs }));
      assert.equal(code, 2);
      assert.match(stderr, /kafka\.heartbeatIntervalMs .* must be below kafka\.sessionTimeoutMs/);
    }
    assert.deepEqual(
      checkDaemonConfig({
        ...loadConfig({
          env: {},
          file: file(kafka({ sessionTimeoutMs: 9000, heartbeatIntervalMs: 4000 })),
        }),
        webhook: { token: "t", forwardToKafka: false },
      }).map((w) => /more than a third of kafka\.sessionTimeoutMs/.test(w)),
      [true],
      "above a third works, with a warning",
    );
  });

  it("names a Kafka topic name the broker would refuse", async () => {
    const { code, stderr } = await run(kafka({ deadLetterTopic: "dead letters/é" }));
    assert.equal(code, 2);
    assert.match(stderr, /kafka\.deadLetterTopic "dead letters\/é" is not a Kafka topic name/);
  });

  it("the placeholder token shipped in the manifests is refused as webhook.token", async () => {
    const manifest = readFileSync(new URL("../../deploy/kubernetes.yaml", import.meta.url), "utf8");
    const placeholder = /webhook-token: (\S+)/.exec(manifest)?.[1];
    assert.ok(placeholder, "deploy/kubernetes.yaml ships a webhook-token");
    assert.ok(placeholderTokens.includes(placeholder), `${placeholder} is known as a placeholder`);
    const { code, stderr } = await run({}, { LAKEFS_MIRROR_WEBHOOK_TOKEN: placeholder });
    assert.equal(code, 2);
    assert.match(stderr, /webhook\.token \(LAKEFS_MIRROR_WEBHOOK_TOKEN\) is the placeholder/);
    assert.equal(stderr.includes(placeholder), false, "the token is not printed");
  });
});

import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import { LakefsClient } from "../../src/lakefs/client.ts";
import { createS3Client } from "../../src/s3/client.ts";
import { LeanS3 } from "../../src/s3/lean.ts";

const upScript = fileURLToPath(new URL("../stack/up", import.meta.url));

export interface StackEnv {
  LAKEFS_ENDPOINT: string;
  LAKEFS_ACCESS_KEY_ID: string;
  LAKEFS_SECRET_ACCESS_KEY: string;
  AWS_ENDPOINT_URL: string;
  AWS_ACCESS_KEY_ID: string;
  AWS_SECRET_ACCESS_KEY: string;
  AWS_REGION: string;
  KAFKA_BROKERS: string;
  LAKEFSACTION_MIRROR_TOKEN: string;
  STACK_LAKEFS_BUCKET: string;
  /** Azurite's Blob service: the account's URL, `http://127.0.0.1:<port>/devstoreaccount1`. */
  AZURITE_BLOB_ENDPOINT: string;
  /** Azurite's development account (`devstoreaccount1`) and its well-known key. */
  AZURE_STORAGE_ACCOUNT: string;
  AZURE_STORAGE_KEY: string;
  /** Account, key and Blob endpoint in one, as `BlobServiceClient.fromConnectionString` takes it. */
  AZURE_STORAGE_CONNECTION_STRING: string;
  /** fake-gcs-server's base URL: `apiEndpoint` of `@google-cloud/storage`. */
  GCS_ENDPOINT: string;
  /**
   * The same URL, for the Go and Python clients (and lakeFS). Not for `@google-cloud/storage`:
   * with it in its process environment, that client sends JSON calls to the host's root, where
   * fake-gcs-server answers 404 (see gcsStorage).
   */
  STORAGE_EMULATOR_HOST: string;
  /** Any project name: fake-gcs-server checks none. */
  GOOGLE_CLOUD_PROJECT: string;
  /** MinIO's client, built by test/stack/install for the benchmark. */
  MC?: string;
  /** rclone built from its Go module by test/stack/install (the benchmark's peer), once built. */
  RCLONE?: string;
  /** The Python interpreter of the environment with delta-rs (`deltalake`), from test/stack/install. */
  DELTA_PYTHON?: string;
}

let cached: Promise<StackEnv> | undefined;

/**
 * The running stack's environment. Runs test/stack/up, which starts the servers (installing
 * them first on a new machine) or, when they are up already, only prints where they are.
 */
export function stackEnv(): Promise<StackEnv> {
  cached ??= (async () => {
    const { stdout } = await promisify(execFile)(upScript, {
      maxBuffer: 1 << 20,
      timeout: 45 * 60_000,
    });
    const env: Record<string, string> = {};
    for (const line of stdout.split("\n")) {
      const m = /^export ([A-Z_]+)=(.*)$/.exec(line.trim());
      // test/stack/up single-quotes a value the shell would split (the connection string's `;`).
      if (m?.[1] && m[2] !== undefined) env[m[1]] = m[2].replace(/^'(.*)'$/, "$1");
    }
    for (const k of [
      "LAKEFS_ENDPOINT",
      "AWS_ENDPOINT_URL",
      "KAFKA_BROKERS",
      "AZURITE_BLOB_ENDPOINT",
      "GCS_ENDPOINT",
    ]) {
      if (!env[k]) throw new Error(`test/stack/up printed no ${k}:\n${stdout}`);
    }
    return env as unknown as StackEnv;
  })();
  return cached;
}

/** A name no other test run uses: lakeFS repository names allow [a-z0-9-], 3–63 chars. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
}

export interface Stack {
  env: StackEnv;
  lakefs: LakefsClient;
  s3: S3Client;
  /** lakeFS's S3 gateway, as boto3, Spark's S3A or the AWS CLI reach it (bucket = repository). */
  gateway: S3Client;
  /** The lean request path over `s3`, as the CLI and the daemon build it. */
  lean: LeanS3;
  close(): Promise<void>;
}

export async function connectStack(): Promise<Stack> {
  const env = await stackEnv();
  const lakefs = new LakefsClient({
    endpoint: env.LAKEFS_ENDPOINT,
    accessKeyId: env.LAKEFS_ACCESS_KEY_ID,
    secretAccessKey: env.LAKEFS_SECRET_ACCESS_KEY,
    retry: { retries: 2, maxRetryTimeMs: 5_000 },
  });
  const s3 = createS3Client({
    endpoint: env.AWS_ENDPOINT_URL,
    region: env.AWS_REGION,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
  });
  const gateway = createS3Client({
    endpoint: env.LAKEFS_ENDPOINT,
    region: "us-east-1",
    credentials: {
      accessKeyId: env.LAKEFS_ACCESS_KEY_ID,
      secretAccessKey: env.LAKEFS_SECRET_ACCESS_KEY,
    },
  });
  const lean = new LeanS3(s3, { maxSockets: 64, connectTimeoutMs: 5_000 });
  return {
    env,
    lakefs,
    s3,
    gateway,
    lean,
    async close() {
      s3.destroy();
      gateway.destroy();
      await lean.close();
      await lakefs.close();
    },
  };
}

/** A new lakeFS repository whose storage namespace is on the stack's S3 server. */
export async function createRepo(stack: Stack, prefix = "repo"): Promise<string> {
  const name = uniqueName(prefix);
  await stack.lakefs.createRepository(name, `s3://${stack.env.STACK_LAKEFS_BUCKET}/${name}`);
  return name;
}

export async function createBucket(stack: Stack, prefix = "dest"): Promise<string> {
  const name = uniqueName(prefix);
  await stack.s3.send(new CreateBucketCommand({ Bucket: name }));
  return name;
}

// The stack's Google Cloud Storage (fake-gcs-server) as the GCS backend sees it, and buckets on it.
import pino from "pino";
import { loadConfig } from "../../src/config.ts";
import type { Config } from "../../src/config.ts";
import { GcsHttp } from "../../src/gcs/http.ts";
import { gcsStorageOf } from "../../src/gcs/backend.ts";
import { stackEnv, uniqueName } from "./stack.ts";

export const silent = pino({ level: "silent" });

/**
 * fake-gcs-server's URL: GCS_ENDPOINT from this process's environment, else what
 * test/stack/up prints.
 */
export async function gcsEndpoint(): Promise<string> {
  const own = process.env.GCS_ENDPOINT;
  if (own) return own;
  const env = (await stackEnv()) as unknown as Record<string, string | undefined>;
  if (!env.GCS_ENDPOINT) throw new Error("no GCS_ENDPOINT: the stack runs no fake-gcs-server");
  return env.GCS_ENDPOINT;
}

/** The configuration's `gcs` section pointed at `endpoint`, other sections at their defaults. */
export function gcsConfig(endpoint: string, maxAttempts = 3): Config {
  return loadConfig({
    env: { GCS_ENDPOINT: endpoint, GOOGLE_CLOUD_PROJECT: "lakefs-mirror-test" },
    overrides: { "gcs.maxAttempts": maxAttempts },
  });
}

/** The backend's own request path to `endpoint` (no credentials: a custom endpoint). */
export function gcsHttp(endpoint: string, maxAttempts = 3): GcsHttp {
  return new GcsHttp(gcsStorageOf(gcsConfig(endpoint, maxAttempts)), endpoint, false, 16);
}

/** A new, empty bucket on fake-gcs-server (buckets.insert). */
export async function createGcsBucket(endpoint: string, prefix: string): Promise<string> {
  const name = uniqueName(prefix);
  const res = await fetch(`${endpoint}/storage/v1/b?project=lakefs-mirror-test`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  if (!res.ok) throw new Error(`create bucket ${name}: ${res.status} ${await res.text()}`);
  return name;
}

import { Storage } from "@google-cloud/storage";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import type { DestinationSession } from "../destination/factory.ts";
import { GcsDestination } from "./destination.ts";
import { GcsHttp } from "./http.ts";

const GOOGLE_ENDPOINT = "https://storage.googleapis.com";

/**
 * The Cloud Storage client the configuration describes (the `gcs` section): credentials from
 * `gcs.keyFile`, else Application Default Credentials, which the library finds itself
 * (GOOGLE_APPLICATION_CREDENTIALS, gcloud's login, the metadata server of a GCE/GKE/Cloud
 * Run host). It is made lazily: nothing is read or asked for until the first request.
 */
export function gcsStorageOf(config: Config): Storage {
  const g = config.gcs;
  return new Storage({
    ...(g.endpoint
      ? { apiEndpoint: g.endpoint, useAuthWithCustomEndpoint: g.authWithEndpoint }
      : {}),
    ...(g.projectId ? { projectId: g.projectId } : {}),
    ...(g.keyFile ? { keyFilename: g.keyFile } : {}),
    retryOptions: { maxRetries: Math.max(0, g.maxAttempts - 1) },
  });
}

/**
 * Every GCS destination of a process shares one credential source and one connection pool,
 * whatever bucket it writes. Requests go to `gcs.endpoint` when set (fake-gcs-server), with
 * no credentials unless `gcs.authWithEndpoint`, as the client library does for a custom
 * endpoint.
 */
export function connectGcs(config: Config, logger: Logger): DestinationSession {
  const g = config.gcs;
  const storage = gcsStorageOf(config);
  const endpoint = g.endpoint || GOOGLE_ENDPOINT;
  const http = new GcsHttp(
    storage,
    endpoint,
    !g.endpoint || g.authWithEndpoint,
    Math.max(16, config.export.concurrency * 2),
  );
  logger.child({ component: "gcs" }).debug({ endpoint }, "GCS destination session");
  const sizes = {
    resumableThresholdBytes: config.export.multipartThresholdBytes,
    chunkBytes: config.export.multipartPartSizeBytes,
    deleteConcurrency: g.deleteConcurrency,
  };
  return {
    open: (location) =>
      new GcsDestination(http, { bucket: location.container, prefix: location.prefix }, sizes),
    close: () => http.close(),
  };
}

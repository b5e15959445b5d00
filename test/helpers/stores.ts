// Clients of the stack's Azure Blob Storage (Azurite) and Google Cloud Storage
// (fake-gcs-server), made with the libraries the product uses for those stores. Kept apart from
// stack.ts so that the tests that use neither store do not load either library.
import { BlobServiceClient } from "@azure/storage-blob";
import { Storage } from "@google-cloud/storage";
import type { StackEnv } from "./stack.ts";

/** Azurite's Blob service, signed with the development account's key. */
export function azureBlobService(env: StackEnv): BlobServiceClient {
  return BlobServiceClient.fromConnectionString(env.AZURE_STORAGE_CONNECTION_STRING);
}

/**
 * fake-gcs-server through `@google-cloud/storage`. A custom `apiEndpoint` makes the client send
 * no credentials. STORAGE_EMULATOR_HOST, if this process has it (after `eval "$(test/stack/up)"`),
 * is hidden while the client is made: the client would take it for its JSON base URL without the
 * `/storage/v1` path, where fake-gcs-server answers 404.
 */
export function gcsStorage(env: StackEnv): Storage {
  const emulatorHost = process.env.STORAGE_EMULATOR_HOST;
  delete process.env.STORAGE_EMULATOR_HOST;
  try {
    return new Storage({
      apiEndpoint: env.GCS_ENDPOINT,
      projectId: env.GOOGLE_CLOUD_PROJECT,
      retryOptions: { maxRetries: 2, totalTimeout: 30 },
    });
  } finally {
    if (emulatorHost !== undefined) process.env.STORAGE_EMULATOR_HOST = emulatorHost;
  }
}

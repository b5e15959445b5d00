import { BlobSASPermissions, BlobServiceClient } from "@azure/storage-blob";
import type {
  BlobClient,
  ContainerClient,
  HttpAuthorization,
  StoragePipelineOptions,
} from "@azure/storage-blob";
import type { AzureAuth } from "./credentials.ts";
import type { AzureLocation } from "./uri.ts";
import { serviceUrl } from "./uri.ts";

/** How long a copy's read-only SAS for its source is good for. */
const SOURCE_SAS_MS = 60 * 60_000;
/** Storage's OAuth scope, for a copy source's bearer token. */
const STORAGE_SCOPE = "https://storage.azure.com/.default";

/** A copy source as Put Block From URL takes it: a URL, and what authorizes reading it. */
export interface CopySource {
  url: string;
  sourceAuthorization?: HttpAuthorization;
}

/**
 * One storage account's Blob service: the SDK's client with its pipeline (connection pool,
 * retries) and the credential, shared by every destination in the account.
 */
export class AzureAccount {
  readonly account: string;
  readonly host: string;
  readonly emulator: boolean;
  readonly url: string;
  /** Containers (by URL) where the blob batch API was refused (see deleteInBatches). */
  readonly batchRefused = new Set<string>();
  readonly #auth: AzureAuth;
  readonly #service: BlobServiceClient;

  /**
   * `endpoint`: where requests go when not to the account's own URL (`azure.endpoint`: an
   * emulator or a proxy that serves `https://<account>.blob.core.windows.net` locations).
   * The account is still named by its location, and `holds` compares locations, not endpoints.
   */
  constructor(
    location: Pick<AzureLocation, "account" | "host" | "emulator">,
    auth: AzureAuth,
    pipeline: StoragePipelineOptions = {},
    endpoint = "",
  ) {
    this.account = location.account;
    this.host = location.host;
    this.emulator = location.emulator;
    this.url = serviceUrl(location);
    this.#auth = auth;
    const base = endpoint && !location.emulator ? endpoint.replace(/\/+$/, "") : this.url;
    const url = auth.kind === "sas" ? `${base}?${auth.sas}` : base;
    this.#service = new BlobServiceClient(url, auth.credential, pipeline);
  }

  /** Whether a location is in this account (by its URI, wherever requests go). */
  holds(location: Pick<AzureLocation, "account" | "host" | "emulator">): boolean {
    return serviceUrl(location) === this.url;
  }

  container(name: string): ContainerClient {
    return this.#service.getContainerClient(name);
  }

  /**
   * A blob of this account as a copy source. Put Block From URL reads its source as an
   * anonymous client would, so the request carries the source's authorization: a read-only
   * SAS signed with the account key, the SAS these requests carry, or a bearer token of the
   * same identity (Azure's "Put Block From URL", "Authorization").
   */
  async copySource(blob: BlobClient, signal?: AbortSignal): Promise<CopySource> {
    switch (this.#auth.kind) {
      case "key":
        return {
          url: await blob.generateSasUrl({
            permissions: BlobSASPermissions.parse("r"),
            startsOn: new Date(Date.now() - 5 * 60_000),
            expiresOn: new Date(Date.now() + SOURCE_SAS_MS),
          }),
        };
      case "sas":
        return { url: blob.url };
      case "token": {
        const token = await this.#auth.credential.getToken(STORAGE_SCOPE, { abortSignal: signal });
        if (!token) throw new Error("no token for the copy source from DefaultAzureCredential");
        return { url: blob.url, sourceAuthorization: { scheme: "Bearer", value: token.token } };
      }
    }
  }
}

// Azurite (the stack's Azure Blob Storage) for the tests: its account, key and endpoint, and
// destinations on it built the way src/azure/backend.ts builds them.
import { randomBytes } from "node:crypto";
import { AzureAccount } from "../../src/azure/account.ts";
import { azureAuth } from "../../src/azure/credentials.ts";
import { AzureDestination } from "../../src/azure/destination.ts";
import type { AzureTransferSizes } from "../../src/azure/destination.ts";
import { neutralContainer, parseAzureUri } from "../../src/azure/uri.ts";
import type { ContractBackend } from "./destination-contract.ts";
import { startFaultInjectingProxy } from "./fault-injecting-proxy.ts";
import type { FaultInjectingProxy } from "./fault-injecting-proxy.ts";
import { stackEnv } from "./stack.ts";

export interface AzuriteEnv {
  /** `http://127.0.0.1:<port>/<account>`. */
  AZURITE_BLOB_ENDPOINT: string;
  AZURE_STORAGE_ACCOUNT: string;
  AZURE_STORAGE_KEY: string;
  AZURE_STORAGE_CONNECTION_STRING: string;
}

/** Azurite's environment, as test/stack/up prints it (or this process already has it). */
export async function azuriteEnv(): Promise<AzuriteEnv> {
  const env = { ...process.env, ...((await stackEnv()) as unknown as Record<string, string>) };
  const endpoint = process.env.AZURITE_BLOB_ENDPOINT ?? env.AZURITE_BLOB_ENDPOINT;
  if (!endpoint) throw new Error("no AZURITE_BLOB_ENDPOINT: the stack has no Azurite");
  const account = endpoint.replace(/\/+$/, "").split("/").pop()!;
  const key = process.env.AZURE_STORAGE_KEY ?? env.AZURE_STORAGE_KEY ?? "";
  return {
    AZURITE_BLOB_ENDPOINT: endpoint.replace(/\/+$/, ""),
    AZURE_STORAGE_ACCOUNT: account,
    AZURE_STORAGE_KEY: key,
    AZURE_STORAGE_CONNECTION_STRING: `DefaultEndpointsProtocol=http;AccountName=${account};AccountKey=${key};BlobEndpoint=${endpoint};`,
  };
}

const keyAuth = (env: AzuriteEnv) =>
  azureAuth(
    { connectionString: "", accountName: "", accountKey: env.AZURE_STORAGE_KEY, sasToken: "" },
    env.AZURE_STORAGE_ACCOUNT,
  );

/** The account behind an Azurite endpoint (or a proxy in front of it), signed with the key. */
export function azuriteAccount(
  env: AzuriteEnv,
  endpoint = env.AZURITE_BLOB_ENDPOINT,
  maxTries = 3,
) {
  const loc = parseAzureUri(`${endpoint.replace(/\/+$/, "")}/x-container/`);
  return new AzureAccount(loc, keyAuth(env), { retryOptions: { maxTries } });
}

/** A fresh container on Azurite; its name. */
export async function createContainer(account: AzureAccount, label: string): Promise<string> {
  const name = `${label}-${randomBytes(6).toString("hex")}`;
  await account.container(name).create();
  return name;
}

/** The contract suite's backend on Azurite: a container per suite, a prefix per case. */
export async function azuriteContractBackend(): Promise<ContractBackend> {
  const env = await azuriteEnv();
  const account = azuriteAccount(env);
  const container = await createContainer(account, "contract");
  const proxies: FaultInjectingProxy[] = [];
  let n = 0;
  const sizesOf = (s: {
    listPageKeys?: number;
    multipartThresholdBytes?: number;
    partBytes?: number;
  }) => {
    const out: Partial<AzureTransferSizes> = {};
    if (s.listPageKeys) out.listPageKeys = s.listPageKeys;
    if (s.multipartThresholdBytes) out.blockThresholdBytes = s.multipartThresholdBytes;
    if (s.partBytes) out.blockBytes = s.partBytes;
    return out;
  };
  return {
    open: (sizes = {}) =>
      Promise.resolve(
        new AzureDestination(account, { container, prefix: `case-${n++}/` }, sizesOf(sizes)),
      ),
    addressOf: (dest, path) => ({
      scheme: "azure",
      container: neutralContainer({ ...account, container, prefix: "" }),
      key: dest.key(path),
    }),
    missingContainer: () =>
      new AzureDestination(account, {
        container: `missing-${randomBytes(6).toString("hex")}`,
        prefix: "p/",
      }),
    async withFaults(rates) {
      const origin = new URL(env.AZURITE_BLOB_ENDPOINT).origin;
      const proxy = await startFaultInjectingProxy(origin, { flavor: "azure", rates });
      proxies.push(proxy);
      const through = azuriteAccount(env, `${proxy.url}/${env.AZURE_STORAGE_ACCOUNT}`, 1);
      return new AzureDestination(through, { container, prefix: `faults-${n++}/` });
    },
    async close() {
      for (const p of proxies) await p.close();
      await account.container(container).deleteIfExists();
    },
  };
}

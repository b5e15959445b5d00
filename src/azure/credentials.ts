import { DefaultAzureCredential } from "@azure/identity";
import type { TokenCredential } from "@azure/identity";
import { AnonymousCredential, StorageSharedKeyCredential } from "@azure/storage-blob";
import { UsageError } from "../errors.ts";

/** The `azure` section of the configuration that says how to sign requests. */
export interface AzureCredentialConfig {
  connectionString: string;
  accountName: string;
  accountKey: string;
  sasToken: string;
}

/** How requests to one account are authorized, the SDK's credential with what copies need. */
export type AzureAuth =
  | { kind: "key"; credential: StorageSharedKeyCredential }
  | { kind: "sas"; credential: AnonymousCredential; sas: string }
  | { kind: "token"; credential: TokenCredential };

/** `Name=value;…` as Azure's connection strings write it; names case-insensitive. */
export function parseConnectionString(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(";")) {
    if (!part.trim()) continue;
    const eq = part.indexOf("=");
    if (eq <= 0)
      throw new UsageError(
        `azure.connectionString has "${part.slice(0, 20)}…" without a name=value`,
      );
    out[part.slice(0, eq).trim().toLowerCase()] = part.slice(eq + 1).trim();
  }
  return out;
}

function sasOf(token: string): string {
  return token.replace(/^\?/, "");
}

/**
 * The credential for `account`, in this order: the connection string (its AccountKey or
 * SharedAccessSignature), azure.accountKey, azure.sasToken, and otherwise
 * DefaultAzureCredential (environment, workload identity, managed identity, Azure CLI…).
 * Credentials named for another account are refused rather than sent.
 */
export function azureAuth(config: AzureCredentialConfig, account: string): AzureAuth {
  const named = (name: string, where: string) => {
    if (name && name !== account)
      throw new UsageError(
        `${where} names account "${name}" but the destination is in account "${account}"`,
      );
  };
  if (config.connectionString) {
    const cs = parseConnectionString(config.connectionString);
    if (cs.usedevelopmentstorage)
      throw new UsageError(
        "azure.connectionString: UseDevelopmentStorage is not taken; give AccountName, AccountKey and BlobEndpoint",
      );
    named(cs.accountname ?? "", "azure.connectionString");
    if (cs.accountkey)
      return { kind: "key", credential: new StorageSharedKeyCredential(account, cs.accountkey) };
    if (cs.sharedaccesssignature)
      return {
        kind: "sas",
        credential: new AnonymousCredential(),
        sas: sasOf(cs.sharedaccesssignature),
      };
    throw new UsageError("azure.connectionString has neither AccountKey nor SharedAccessSignature");
  }
  if (config.accountKey) {
    named(config.accountName, "azure.accountName");
    return { kind: "key", credential: new StorageSharedKeyCredential(account, config.accountKey) };
  }
  if (config.sasToken)
    return { kind: "sas", credential: new AnonymousCredential(), sas: sasOf(config.sasToken) };
  return { kind: "token", credential: new DefaultAzureCredential() };
}

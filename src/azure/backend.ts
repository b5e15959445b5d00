import type { StoragePipelineOptions } from "@azure/storage-blob";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import type { DestinationSession } from "../destination/factory.ts";
import { AzureAccount } from "./account.ts";
import { azureAuth } from "./credentials.ts";
import { AzureDestination } from "./destination.ts";
import type { AzureTransferSizes } from "./destination.ts";
import { azureLocationOf, serviceUrl } from "./uri.ts";

/** The transfer sizes the configuration sets (the export section's, shared with S3). */
export function azureSizesOf(config: Config): Partial<AzureTransferSizes> {
  return {
    blockThresholdBytes: config.export.multipartThresholdBytes,
    blockBytes: config.export.multipartPartSizeBytes,
    copyConcurrency: config.export.copyPartConcurrency,
  };
}

export function azurePipelineOf(config: Config): StoragePipelineOptions {
  return {
    retryOptions: { maxTries: config.azure.maxAttempts, tryTimeoutInMs: config.azure.tryTimeoutMs },
    userAgentOptions: { userAgentPrefix: "lakefs-mirror" },
  };
}

/**
 * Every Azure destination of a process in one account shares that account's client (its
 * credential, pipeline and connections); accounts are connected on first use, each with the
 * credential the configuration gives for it (see azureAuth).
 */
export function connectAzure(config: Config, logger: Logger): DestinationSession {
  const accounts = new Map<string, AzureAccount>();
  const sizes = azureSizesOf(config);
  const log = logger.child({ component: "azure" });
  return {
    open(location) {
      const loc = azureLocationOf(location);
      const url = serviceUrl(loc);
      let account = accounts.get(url);
      if (!account) {
        account = new AzureAccount(
          loc,
          azureAuth(config.azure, loc.account),
          azurePipelineOf(config),
          config.azure.endpoint,
        );
        accounts.set(url, account);
        log.debug({ account: loc.account, endpoint: url }, "azure account connected");
      }
      return new AzureDestination(account, loc, sizes);
    },
    close() {
      accounts.clear();
      return Promise.resolve();
    },
  };
}

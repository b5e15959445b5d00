import type { ContainerClient } from "@azure/storage-blob";
import type { DeleteRefusal } from "../destination/destination.ts";
import { azureCode, azureStatus, toDestinationError } from "./azure-error.ts";

/** Subrequests one blob batch takes (Azure's "Blob Batch", limits). */
export const BATCH_LIMIT = 256;
/** Single deletes in flight where the batch API is refused. */
const SINGLE_CONCURRENCY = 16;

/**
 * Whether a batch request as a whole was refused for what it is, rather than failing for a
 * reason a single delete would share (throttling, a network error, a missing container).
 */
function refusesBatch(err: unknown): boolean {
  const status = azureStatus(err);
  if (status === undefined || status === 429 || status >= 500) return false;
  if (azureCode(err) === "ContainerNotFound") return false;
  return status === 400 || status === 403 || status === 404 || status === 405 || status === 501;
}

/**
 * Deletes blobs: one blob batch per 256 (each subrequest's answer read on its own), or, where
 * the batch API is refused, one Delete Blob each. A blob that is not there is a success (a
 * re-run of a delete is harmless); other refusals come back with the paths they name.
 * `batchRefused`: containers (by URL) whose batches were refused (an account type or a SAS that
 * does not allow it, a proxy that does not pass multipart/mixed), deleted one by one from then.
 */
export async function deleteInBatches(
  container: ContainerClient,
  batchRefused: Set<string>,
  entries: { path: string; key: string }[],
  what: string,
  signal?: AbortSignal,
): Promise<DeleteRefusal[]> {
  const refusals: DeleteRefusal[] = [];
  for (let i = 0; i < entries.length; i += BATCH_LIMIT) {
    const chunk = entries.slice(i, i + BATCH_LIMIT);
    if (!batchRefused.has(container.url)) {
      try {
        const res = await container.getBlobBatchClient().deleteBlobs(
          chunk.map((e) => container.getBlobClient(e.key)),
          { abortSignal: signal },
        );
        res.subResponses.forEach((sub, n) => {
          if (sub.status < 300 || sub.errorCode === "BlobNotFound") return;
          refusals.push({
            path: chunk[n]!.path,
            error: `${sub.errorCode ?? sub.status}: ${sub.statusMessage}`.trim(),
          });
        });
        continue;
      } catch (err) {
        if (!refusesBatch(err)) throw toDestinationError(err, what);
        batchRefused.add(container.url);
      }
    }
    refusals.push(...(await deleteSingly(container, chunk, what, signal)));
  }
  return refusals;
}

async function deleteSingly(
  container: ContainerClient,
  entries: { path: string; key: string }[],
  what: string,
  signal?: AbortSignal,
): Promise<DeleteRefusal[]> {
  const refusals: DeleteRefusal[] = [];
  let next = 0;
  const worker = async () => {
    while (next < entries.length) {
      const e = entries[next++]!;
      try {
        await container.getBlobClient(e.key).deleteIfExists({ abortSignal: signal });
      } catch (err) {
        const status = azureStatus(err);
        if (
          status === undefined ||
          status === 429 ||
          status >= 500 ||
          azureCode(err) === "ContainerNotFound"
        )
          throw toDestinationError(err, what);
        refusals.push({
          path: e.path,
          error: `${azureCode(err) ?? status}: ${(err as Error).message.split("\n")[0]}`,
        });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(SINGLE_CONCURRENCY, entries.length) }, worker));
  return refusals;
}

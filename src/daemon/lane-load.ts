import type { Logger } from "pino";
import type { Destination } from "../destination/destination.ts";
import { assertLeaseNotOthers, assertNoEnclosingLane } from "../ledger/lane-records.ts";
import type { LaneRef, LedgerSource, LedgerStore } from "../ledger/ledger-store.ts";
import type { Ledger } from "../ledger/ledger.ts";
import { withRetry } from "../retry.ts";
import type { RetryPolicy } from "../retry.ts";

export interface LaneLoadDeps {
  ledgers: LedgerStore;
  retry: Partial<RetryPolicy>;
  logger: Logger;
}

/**
 * Before a lane takes a destination's lease with nothing of it loaded: refuses
 * (DestinationOverlapError) when the lease there is another lane's, before this lane's lease
 * would overwrite it.
 */
export function checkLease(
  deps: LaneLoadDeps,
  lane: LaneRef,
  dest: Destination,
  signal: AbortSignal,
): Promise<void> {
  return withRetry(() => assertLeaseNotOthers(lane, dest, signal), {
    operation: "read the lease",
    signal,
    logger: deps.logger,
    policy: deps.retry,
  });
}

/**
 * A lane's state as the destination describes it (see LedgerStore.load), once it is known that
 * the destination is this lane's alone: its ledger names no other lane (checked by the load) and
 * no enclosing prefix holds a lane's records. Throws DestinationOverlapError otherwise.
 */
export async function loadLane(
  deps: LaneLoadDeps,
  lane: LaneRef,
  dest: Destination,
  epoch: number | undefined,
  signal: AbortSignal,
): Promise<{ ledger: Ledger; source: LedgerSource }> {
  const loaded = await deps.ledgers.load(lane, dest, signal, { epoch });
  await withRetry(() => assertNoEnclosingLane(lane, dest, signal), {
    operation: "look for lanes around the destination",
    signal,
    logger: deps.logger,
    policy: deps.retry,
  });
  return loaded;
}

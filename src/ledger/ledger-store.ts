import type { Logger } from "pino";
import type { CheckpointStore } from "../daemon/checkpoint.ts";
import { LakefsNotFoundError, LedgerError } from "../errors.ts";
import { LEDGER_PATH } from "../export/reserved.ts";
import { listStatusFiles } from "../export/status-file.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import { withRetry } from "../retry.ts";
import type { RetryPolicy } from "../retry.ts";
import type { Destination } from "../destination/destination.ts";
import { overlapError, recordLane, sameLane } from "./lane-records.ts";
import { emptyLedger, markRebuilt, parseLedger } from "./ledger.ts";
import type { Ledger } from "./ledger.ts";

export interface LedgerStoreOptions {
  checkpoint: CheckpointStore;
  lakefs: LakefsClient;
  logger: Logger;
  retry?: Partial<RetryPolicy> | undefined;
}

export interface LaneRef {
  id: string;
  repository: string;
  branch: string;
}

export type LedgerSource =
  | "destination"
  /** The destination's ledger, which the checkpoint already held. */
  | "checkpoint"
  /** A local copy the destination no longer has: its base is checked before use. */
  | "local copy only"
  | "status files"
  | "legacy checkpoint"
  | "none";

/**
 * The one owner of a lane's durable state. A ledger lives in two places: the LevelDB checkpoint
 * (fast, local) and `_lakefs_mirror/ledger.json` at the destination root (shared: a daemon with
 * an empty checkpoint, or another daemon taking over, resumes from it). Writes go to the
 * destination first, so the destination's copy is the lane's record whenever it is there: a
 * local copy can only lag behind it, and after a hand-over it may lag by any number of writes
 * of another daemon (whose `seq` may have started again from a rebuilt ledger). Without it, a
 * base is rebuilt from the local copy, a legacy checkpoint or the status files (the newest
 * SUCCESS is the base, newer FAILUREs are attempts whose writes are not accounted for), and such
 * a base is marked unproven: none of these records says which keys may be stale.
 */
export class LedgerStore {
  readonly #o: LedgerStoreOptions;

  constructor(options: LedgerStoreOptions) {
    this.#o = options;
  }

  /**
   * `epoch`: the lease epoch this process holds the destination under, when leases are on. A
   * destination ledger written under a newer epoch than the lease's outlived a reset lease (the
   * lease object was deleted since): whoever reset it may have changed the prefix too.
   * Throws DestinationOverlapError when the destination's ledger is another lane's.
   */
  async load(
    lane: LaneRef,
    dest: Destination,
    signal?: AbortSignal,
    options: { epoch?: number | undefined } = {},
  ): Promise<{ ledger: Ledger; source: LedgerSource }> {
    const where = dest.describe(LEDGER_PATH);
    const [localText, text] = await Promise.all([
      this.#o.checkpoint.ledger(lane.id),
      withRetry(
        () => dest.getText(LEDGER_PATH, signal),
        this.#retryOptions("read the lane ledger", signal),
      ),
    ]);
    const other = recordLane(text);
    if (other && !sameLane(other, lane)) {
      throw overlapError(
        lane,
        dest.uri,
        other,
        dest.uri,
        `the destination's ledger (${where}) is that lane's`,
      );
    }
    const remote = this.#parse(text, lane, where);
    const local = this.#parse(localText, lane, "checkpoint");
    if (remote) {
      const { epoch } = options;
      if (epoch !== undefined && typeof remote.epoch === "number" && remote.epoch > epoch) {
        const why = `written under lease epoch ${remote.epoch}, newer than the lease's ${epoch}`;
        return { ledger: markRebuilt(remote, why), source: "destination" };
      }
      const known = local !== undefined && JSON.stringify(local) === JSON.stringify(remote);
      return { ledger: remote, source: known ? "checkpoint" : "destination" };
    }
    if (local && local.base !== null) {
      const why = "a local copy, with no ledger at the destination";
      return { ledger: markRebuilt(local, why), source: "local copy only" };
    }

    const legacy = await this.#o.checkpoint.legacyLastExported(lane.id);
    if (legacy && (await this.#exists(lane.repository, legacy, signal))) {
      const ledger = this.#fromBase(lane, legacy, []);
      return {
        ledger: markRebuilt(ledger, "the checkpoint of a version without ledgers"),
        source: "legacy checkpoint",
      };
    }
    const files = await listStatusFiles(dest, signal);
    const newest = files.find((f) => f.status === "SUCCESS");
    if (newest && (await this.#exists(lane.repository, newest.commitId, signal))) {
      // FAILURE files newer than it: exports that wrote an unknown part of their commit.
      const attempts = files
        .filter((f) => f.status === "FAILURE" && f.at > newest.at)
        .map((f) => f.commitId);
      // A local copy that never got a base still knows attempts the files may not show.
      const ledger = this.#fromBase(lane, newest.commitId, [
        ...attempts,
        ...(local?.attempts ?? []),
      ]);
      return { ledger: markRebuilt(ledger, "rebuilt from status files"), source: "status files" };
    }
    // A local copy without a base (its first export never finished) still knows the attempts.
    if (local) return { ledger: local, source: "local copy only" };
    return { ledger: emptyLedger(lane.repository, lane.branch), source: "none" };
  }

  /**
   * Stores a lane's ledger: at the destination first (what another daemon would resume from),
   * then in the checkpoint. `coveredUntil` clears a pending event recorded before it.
   */
  async save(
    lane: LaneRef,
    dest: Destination,
    ledger: Ledger,
    options: {
      signal?: AbortSignal;
      coveredUntil?: Date | undefined;
      fence?: () => void;
      /** false: the local copy is written without waiting for the disk (default true). */
      localSync?: boolean;
    } = {},
  ): Promise<void> {
    const { signal, coveredUntil, fence, localSync = true } = options;
    const text = JSON.stringify(ledger);
    await withRetry(
      () => {
        // Checked on every attempt: a process paused between tries must not write when it wakes.
        fence?.();
        return dest.putText(LEDGER_PATH, text, signal, "application/json");
      },
      this.#retryOptions("write the lane ledger", signal),
    );
    await this.#o.checkpoint.putLedger(lane.id, text, coveredUntil, localSync);
  }

  /** The checkpoint's copy only: cheap, for the reconciler's comparisons. */
  async cached(lane: LaneRef): Promise<Ledger | undefined> {
    return this.#parse(await this.#o.checkpoint.ledger(lane.id), lane, "checkpoint");
  }

  #parse(text: string | undefined, lane: LaneRef, where: string): Ledger | undefined {
    if (text === undefined) return undefined;
    try {
      const ledger = parseLedger(text, where);
      if (ledger.repository !== lane.repository || ledger.branch !== lane.branch) {
        throw new LedgerError(
          `${where} describes lane ${ledger.repository}/${ledger.branch}, not ${lane.repository}/${lane.branch}`,
        );
      }
      return ledger;
    } catch (err) {
      if (!(err instanceof LedgerError)) throw err;
      this.#o.logger.warn(
        { repository: lane.repository, branch: lane.branch, err },
        "ignoring a lane ledger that cannot be used",
      );
      return undefined;
    }
  }

  /**
   * A ledger rebuilt around `base`. Whose keys the prefix holds is not known (status files and an
   * old checkpoint say what lakefs-mirror wrote, not that nobody else wrote there): "foreign"
   * until a reconcile finds nothing that no record names.
   */
  #fromBase(lane: LaneRef, base: string, attempts: string[]): Ledger {
    return {
      ...emptyLedger(lane.repository, lane.branch),
      base,
      attempts: [...new Set(attempts)],
      lastSuccess: base,
      prefix: "foreign",
      // The lost ledger may have asked for split runs' records to go: the next export looks.
      workRecords: true,
    };
  }

  async #exists(repository: string, commitId: string, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.#o.lakefs.getCommit(repository, commitId, signal);
      return true;
    } catch (err) {
      if (err instanceof LakefsNotFoundError) return false;
      throw err;
    }
  }

  #retryOptions(operation: string, signal: AbortSignal | undefined) {
    return {
      operation,
      signal,
      logger: this.#o.logger,
      ...(this.#o.retry ? { policy: this.#o.retry } : {}),
    };
  }
}

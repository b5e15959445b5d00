import type { Logger } from "pino";
import type { CheckpointStore } from "../daemon/checkpoint.ts";
import { LakefsNotFoundError, LedgerError } from "../errors.ts";
import { LEDGER_PATH } from "../export/reserved.ts";
import { listStatusFiles } from "../export/status-file.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import { withRetry } from "../retry.ts";
import type { RetryPolicy } from "../retry.ts";
import type { S3Destination } from "../s3/destination.ts";
import { emptyLedger, parseLedger } from "./ledger.ts";
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
  "checkpoint" | "destination" | "status files" | "legacy checkpoint" | "none";

/**
 * The one owner of a lane's durable state. A ledger lives in two places: the LevelDB checkpoint
 * (fast, local) and `_lakefs_mirror/ledger.json` at the destination root (shared: a daemon with
 * an empty checkpoint, or another daemon taking over, resumes from it). Writes go to the
 * destination first; of two copies, the one with the higher `seq` wins. With neither, the
 * destination's status files rebuild it: the newest SUCCESS is the base, newer FAILUREs are
 * attempts whose writes are not accounted for.
 */
export class LedgerStore {
  readonly #o: LedgerStoreOptions;

  constructor(options: LedgerStoreOptions) {
    this.#o = options;
  }

  async load(
    lane: LaneRef,
    dest: S3Destination,
    signal?: AbortSignal,
  ): Promise<{ ledger: Ledger; source: LedgerSource }> {
    const local = this.#parse(await this.#o.checkpoint.ledger(lane.id), lane, "checkpoint");
    const text = await withRetry(
      () => dest.getText(LEDGER_PATH, signal),
      this.#retryOptions("read the lane ledger", signal),
    );
    const remote = this.#parse(text, lane, `s3://${dest.bucket}/${dest.key(LEDGER_PATH)}`);
    if (local && (!remote || local.seq >= remote.seq))
      return { ledger: local, source: "checkpoint" };
    if (remote) return { ledger: remote, source: "destination" };

    const legacy = await this.#o.checkpoint.legacyLastExported(lane.id);
    if (legacy && (await this.#exists(lane.repository, legacy, signal))) {
      return { ledger: this.#fromBase(lane, legacy, []), source: "legacy checkpoint" };
    }
    const files = await listStatusFiles(dest, signal);
    const newest = files.find((f) => f.status === "SUCCESS");
    if (newest && (await this.#exists(lane.repository, newest.commitId, signal))) {
      // FAILURE files newer than it: exports that wrote an unknown part of their commit.
      const attempts = files
        .filter((f) => f.status === "FAILURE" && f.at > newest.at)
        .map((f) => f.commitId);
      return { ledger: this.#fromBase(lane, newest.commitId, attempts), source: "status files" };
    }
    return { ledger: emptyLedger(lane.repository, lane.branch), source: "none" };
  }

  /**
   * Stores a lane's ledger: at the destination first (what another daemon would resume from),
   * then in the checkpoint. `coveredUntil` clears a pending event recorded before it.
   */
  async save(
    lane: LaneRef,
    dest: S3Destination,
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
      if (ledger.repository !== lane.repository) {
        throw new LedgerError(
          `${where} describes repository ${ledger.repository}, not ${lane.repository}`,
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

  #fromBase(lane: LaneRef, base: string, attempts: string[]): Ledger {
    return {
      ...emptyLedger(lane.repository, lane.branch),
      base,
      attempts: [...new Set(attempts)],
      lastSuccess: base,
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

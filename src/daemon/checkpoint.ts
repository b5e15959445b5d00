import { mkdirSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { Level } from "level";
import { CheckpointError } from "../errors.ts";
import { Lifecycle } from "../lifecycle.ts";
import type { LifecycleState } from "../lifecycle.ts";

/** An event that was acknowledged (202 / recorded) but whose commit is not yet exported. */
export interface PendingEvent {
  commitId: string;
  eventType: string;
  source: "webhook" | "kafka" | "reconciler";
  receivedAt: string;
}

/** Each lane's ledger (JSON, see src/ledger/ledger.ts). */
const LEDGER = "ledger:";
/** The last exported commit as versions before the ledger recorded it. */
const LEGACY_LANE = "lane:";
const PENDING = "pending:";
/** A random name made at the store's first open: this daemon's identity across restarts. */
const IDENTITY = "meta:identity";

/**
 * LevelDB store of per-lane ledgers and pending events. Each write is one atomic batch, synced
 * to disk before it resolves: a 202 answered after `recordPending` survives a crash.
 */
export class CheckpointStore {
  readonly #db: Level<string, string>;
  readonly path: string;
  readonly #life = new Lifecycle("the checkpoint store");

  constructor(path: string) {
    this.path = path;
    this.#db = new Level<string, string>(path, { valueEncoding: "utf8" });
  }

  get status(): LifecycleState {
    return this.#life.state;
  }

  /** Idempotent; concurrent callers share one open. */
  open(): Promise<void> {
    return this.#life.open(async () => {
      mkdirSync(this.path, { recursive: true });
      try {
        await this.#db.open();
      } catch (err) {
        const cause = (err as { cause?: { code?: string } }).cause;
        if (cause?.code === "LEVEL_LOCKED") {
          throw new CheckpointError(
            `checkpoint store ${this.path} is locked by another process (is another lakefs-mirror running with the same checkpoint.path?)`,
            { cause: err },
          );
        }
        throw new CheckpointError(
          `cannot open checkpoint store ${this.path}: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    });
  }

  /** Idempotent; concurrent callers wait for the same close. */
  close(): Promise<void> {
    return this.#life.close(() => this.#db.close());
  }

  #check(): void {
    this.#life.assertOpen();
  }

  /**
   * A name unique to this store, made on first use and kept: two live daemons never share a
   * store (LevelDB locks it), and a restarted daemon on the same store is the same daemon.
   */
  async identity(): Promise<string> {
    this.#check();
    const known = await this.#db.get(IDENTITY);
    if (known !== undefined) return known;
    const made = randomBytes(6).toString("hex");
    await this.#db.batch([{ type: "put", key: IDENTITY, value: made }], { sync: true });
    return made;
  }

  async ledger(laneId: string): Promise<string | undefined> {
    this.#check();
    return this.#db.get(LEDGER + laneId);
  }

  /** The last exported commit recorded by a version of lakefs-mirror that had no ledger. */
  async legacyLastExported(laneId: string): Promise<string | undefined> {
    this.#check();
    const v = await this.#db.get(LEGACY_LANE + laneId);
    return v === undefined
      ? undefined
      : (JSON.parse(v) as { lastExportedCommit?: string }).lastExportedCommit;
  }

  /** Every lane with a ledger, by lane id. */
  async allLedgers(): Promise<Map<string, string>> {
    this.#check();
    const out = new Map<string, string>();
    for await (const [k, v] of this.#db.iterator({ gte: LEDGER, lt: LEDGER + "\uffff" })) {
      out.set(k.slice(LEDGER.length), v);
    }
    return out;
  }

  async pending(laneId: string): Promise<PendingEvent | undefined> {
    this.#check();
    const v = await this.#db.get(PENDING + laneId);
    return v === undefined ? undefined : (JSON.parse(v) as PendingEvent);
  }

  /** Every lane with a pending event: what a restart must export before anything else. */
  async allPending(): Promise<Map<string, PendingEvent>> {
    this.#check();
    const out = new Map<string, PendingEvent>();
    for await (const [k, v] of this.#db.iterator({ gte: PENDING, lt: PENDING + "\uffff" })) {
      out.set(k.slice(PENDING.length), JSON.parse(v) as PendingEvent);
    }
    return out;
  }

  /** Records the newest event of a lane; an older pending event is covered by it. */
  async recordPending(laneId: string, event: PendingEvent): Promise<void> {
    this.#check();
    await this.#db.batch([{ type: "put", key: PENDING + laneId, value: JSON.stringify(event) }], {
      sync: true,
    });
  }

  /**
   * Stores a lane's ledger. With `coveredUntil` (the start of an export that completed), also
   * clears the lane's pending event if it was recorded before then: that export covered it.
   */
  async putLedger(laneId: string, ledger: string, coveredUntil?: Date, sync = true): Promise<void> {
    this.#check();
    const ops: ({ type: "put"; key: string; value: string } | { type: "del"; key: string })[] = [
      { type: "put", key: LEDGER + laneId, value: ledger },
      { type: "del", key: LEGACY_LANE + laneId },
    ];
    if (coveredUntil) {
      const pending = await this.pending(laneId);
      if (pending && new Date(pending.receivedAt) <= coveredUntil)
        ops.push({ type: "del", key: PENDING + laneId });
    }
    await this.#db.batch(ops, { sync });
  }

  /**
   * A deleted branch ends its lane: forget its state. A pending event recorded after `before`
   * (the moment the branch was found gone) stays: it may be for a branch created again.
   */
  async forget(laneId: string, before?: Date): Promise<void> {
    this.#check();
    const ops: { type: "del"; key: string }[] = [
      { type: "del", key: LEDGER + laneId },
      { type: "del", key: LEGACY_LANE + laneId },
    ];
    const pending = before ? await this.pending(laneId) : undefined;
    if (!before || (pending && new Date(pending.receivedAt) <= before))
      ops.push({ type: "del", key: PENDING + laneId });
    await this.#db.batch(ops, { sync: true });
  }
}

import { mkdirSync } from "node:fs";
import { Level } from "level";
import { CheckpointError } from "../errors.ts";

/** What the daemon knows about one lane across restarts. */
export interface LaneCheckpoint {
  /** Last commit whose SUCCESS status file exists at the destination. */
  lastExportedCommit: string;
  exportedAt: string;
}

/** An event that was acknowledged (202 / recorded) but whose commit is not yet exported. */
export interface PendingEvent {
  commitId: string;
  eventType: string;
  source: "webhook" | "kafka" | "reconciler";
  receivedAt: string;
}

type State = "opening" | "open" | "closing" | "closed";

const LANE = "lane:";
const PENDING = "pending:";

/**
 * LevelDB store of per-lane checkpoints and pending events. Each write is one atomic batch,
 * synced to disk before it resolves: a 202 answered after `recordPending` survives a crash.
 */
export class CheckpointStore {
  readonly #db: Level<string, string>;
  readonly path: string;
  #state: State = "closed";
  #opening: Promise<void> | undefined;

  constructor(path: string) {
    this.path = path;
    this.#db = new Level<string, string>(path, { valueEncoding: "utf8" });
  }

  get status(): State {
    return this.#state;
  }

  /** Idempotent; concurrent callers share one open. */
  open(): Promise<void> {
    if (this.#state === "open") return Promise.resolve();
    this.#opening ??= (async () => {
      this.#state = "opening";
      mkdirSync(this.path, { recursive: true });
      try {
        await this.#db.open();
      } catch (err) {
        this.#state = "closed";
        this.#opening = undefined;
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
      this.#state = "open";
    })();
    return this.#opening;
  }

  async close(): Promise<void> {
    if (this.#state === "closed" || this.#state === "closing") return;
    this.#state = "closing";
    await this.#db.close();
    this.#state = "closed";
    this.#opening = undefined;
  }

  #check(): void {
    if (this.#state !== "open") throw new CheckpointError(`checkpoint store is ${this.#state}`);
  }

  async get(laneId: string): Promise<LaneCheckpoint | undefined> {
    this.#check();
    const v = await this.#db.get(LANE + laneId);
    return v === undefined ? undefined : (JSON.parse(v) as LaneCheckpoint);
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

  async allLanes(): Promise<Map<string, LaneCheckpoint>> {
    this.#check();
    const out = new Map<string, LaneCheckpoint>();
    for await (const [k, v] of this.#db.iterator({ gte: LANE, lt: LANE + "\uffff" })) {
      out.set(k.slice(LANE.length), JSON.parse(v) as LaneCheckpoint);
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
   * Advances a lane after its SUCCESS status file was written, clearing the pending event if
   * the export started after it was recorded (`coveredUntil` is that start time).
   */
  async advance(laneId: string, commitId: string, coveredUntil: Date): Promise<void> {
    this.#check();
    const pending = await this.pending(laneId);
    const ops: { type: "put" | "del"; key: string; value?: string }[] = [
      {
        type: "put",
        key: LANE + laneId,
        value: JSON.stringify({
          lastExportedCommit: commitId,
          exportedAt: new Date().toISOString(),
        }),
      },
    ];
    if (pending && new Date(pending.receivedAt) <= coveredUntil)
      ops.push({ type: "del", key: PENDING + laneId });
    await this.#db.batch(
      ops.map((o) =>
        o.type === "put"
          ? { type: "put" as const, key: o.key, value: o.value ?? "" }
          : { type: "del" as const, key: o.key },
      ),
      { sync: true },
    );
  }

  /** A deleted branch ends its lane: forget its state. */
  async forget(laneId: string): Promise<void> {
    this.#check();
    await this.#db.batch(
      [
        { type: "del", key: LANE + laneId },
        { type: "del", key: PENDING + laneId },
      ],
      { sync: true },
    );
  }
}

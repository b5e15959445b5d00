import { performance } from "node:perf_hooks";
import { LeaseLostError } from "../errors.ts";
import type { Destination } from "../destination/destination.ts";
import { parseLease } from "../lease/lease.ts";
import { LEASE_PATH } from "../export/reserved.ts";

export interface LeaseViewOptions {
  dest: Destination;
  /** The owner's lease epoch the work item carries. */
  epoch: number;
  /** The split export the item belongs to. */
  run: string;
  /** How long one reading of the lease is trusted (`work.leaseViewMs`). */
  viewMs: number;
  now?: () => number;
}

/**
 * A worker's read-only view of the lease its work item was issued under: the worker writes
 * only while the lease object names the item's epoch and run, and only for a bounded time
 * after each reading of it.
 *
 * A reading sent at instant t (this process's monotonic clock) that finds the epoch and run is
 * trusted until the sooner of t + viewMs and the lease holder's own deadline (its `expiresAt`
 * less a third of its TTL, by this process's wall clock). So once the owner has taken the run
 * out of its lease and waited viewMs, no worker writes for it; and a worker never writes past
 * the point where the owner itself would stop, so a new owner, which waits for `expiresAt`,
 * never overlaps one. A paused worker wakes with its view expired and reads again.
 */
export class LeaseView {
  readonly #o: LeaseViewOptions;
  readonly #now: () => number;
  #validUntil = 0;
  #stale: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #reading: Promise<boolean> | undefined;
  readonly #lapse = new AbortController();
  #lapseTimer: NodeJS.Timeout | undefined;

  /** Aborted once the view lapses: requests in flight (and the SDK's own retries) stop then. */
  get signal(): AbortSignal {
    return this.#lapse.signal;
  }

  #arm(): void {
    clearTimeout(this.#lapseTimer);
    const ms = this.#validUntil - performance.now();
    if (ms <= 0 || this.#stale) {
      this.#lapse.abort(new LeaseLostError(this.#stale ?? "work item: the lease view lapsed"));
      return;
    }
    this.#lapseTimer = setTimeout(() => this.#arm(), Math.ceil(ms));
  }

  constructor(options: LeaseViewOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  /** Reads the lease; false once it no longer names this epoch and run (the item is stale). */
  refresh(signal?: AbortSignal): Promise<boolean> {
    this.#reading ??= this.#read(signal).finally(() => (this.#reading = undefined));
    return this.#reading;
  }

  /** Why the item may not be written any more, or undefined while it may. */
  get stale(): string | undefined {
    return this.#stale;
  }

  /** Throws LeaseLostError unless the last reading still vouches for a write now. */
  readonly assertCurrent = (): void => {
    if (this.#stale) throw new LeaseLostError(this.#stale);
    if (performance.now() >= this.#validUntil)
      throw new LeaseLostError(
        `work item of run ${this.#o.run}: the lease was not read again in time; not writing`,
      );
  };

  /** Reads the lease again whenever half a view has passed, until `close`. */
  keep(signal?: AbortSignal): void {
    const tick = () => {
      // A failed reading keeps the last one's trust and is tried again sooner.
      this.refresh(signal).then(
        (current) => {
          if (current && !signal?.aborted && this.#timer !== undefined)
            this.#timer = setTimeout(tick, Math.max(10, this.#o.viewMs / 2));
        },
        () => {
          if (!signal?.aborted && this.#timer !== undefined)
            this.#timer = setTimeout(tick, Math.max(10, this.#o.viewMs / 8));
        },
      );
    };
    this.#timer = setTimeout(tick, Math.max(10, this.#o.viewMs / 2));
  }

  close(): void {
    clearTimeout(this.#lapseTimer);
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  async #read(signal?: AbortSignal): Promise<boolean> {
    if (this.#stale) return false;
    const sent = performance.now();
    const sentWall = this.#now();
    const text = await this.#o.dest.getText(LEASE_PATH, signal);
    const record = text === undefined ? undefined : parseLease(text);
    const { epoch, run } = this.#o;
    if (!record || record.epoch !== epoch || !(record.runs ?? []).includes(run)) {
      this.#stale =
        `work item of run ${run}: the lease ${record ? `is at epoch ${record.epoch}` : "is gone"}` +
        `${record && record.epoch === epoch ? " and no longer names the run" : ""}; not writing`;
      this.#validUntil = 0;
      this.#arm();
      return false;
    }
    const expires = Date.parse(record.expiresAt);
    const ttl = expires - Date.parse(record.renewedAt);
    const untilDeadline = expires - ttl / 3 - sentWall;
    this.#validUntil = Math.max(
      this.#validUntil,
      sent + Math.min(this.#o.viewMs, Math.max(0, untilDeadline)),
    );
    this.#arm();
    return true;
  }
}

import { randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import type { Logger } from "pino";
import { LeaseHeldError, LeaseLostError } from "../errors.ts";
import { LEASE_PATH } from "../export/reserved.ts";
import { withRetry } from "../retry.ts";
import type { RetryPolicy } from "../retry.ts";
import type { S3Destination } from "../s3/destination.ts";

/** The lease object at `_lakefs_mirror/lease.json`. */
export interface LeaseRecord {
  format: 1;
  /** The daemon holding it (`lease.owner` in the configuration, unique per process). */
  owner: string;
  /** Bumped on every change of owner: the number of hand-overs this destination has seen. */
  epoch: number;
  /** Tells this holder's own writes apart from anyone else's (a retried write, say). */
  token: string;
  repository: string;
  branch: string;
  /** Nobody else takes it over before this instant (by their clock). */
  expiresAt: string;
  renewedAt: string;
}

export interface LeaseOptions {
  dest: S3Destination;
  owner: string;
  repository: string;
  branch: string;
  ttlMs: number;
  logger: Logger;
  retry?: Partial<RetryPolicy> | undefined;
  now?: () => number;
  /** Told of each successful renewal (metrics). */
  onRenewed?: (() => void) | undefined;
}

/**
 * One writer per destination, even in a split brain: a lease object taken and renewed with S3
 * conditional writes. Create with `If-None-Match: *`; renew, hand over or take over an expired
 * lease with `If-Match` on the ETag last read. Whoever loses a race gets 412 and reads again.
 *
 * A holder treats its lease as lost once its own clock passes `expiresAt` less a margin (a
 * third of the TTL): a process paused past its lease (SIGSTOP, a long GC, a frozen VM) finds it
 * lost on waking and writes nothing more, while the new owner, by its clock, waits for the
 * whole TTL. Clocks must agree to well within that margin.
 */
export class Lease {
  readonly #o: LeaseOptions;
  readonly #now: () => number;
  #etag: string | undefined;
  #record: LeaseRecord | undefined;

  constructor(options: LeaseOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  get epoch(): number | undefined {
    return this.#record?.epoch;
  }

  /** Whether this process holds the lease with more than the safety margin left. */
  get held(): boolean {
    return this.#record !== undefined && this.#remainingMs() > this.#marginMs();
  }

  /**
   * Makes sure this process holds the lease for most of a TTL: nothing when it was renewed
   * recently, one conditional write to renew it, or a read and a write to take it. Throws
   * LeaseHeldError when another owner holds an unexpired lease. Returns whether the holder
   * changed (this process was not the holder just before), after which anything cached about
   * the destination must be read again.
   */
  async ensure(signal?: AbortSignal): Promise<boolean> {
    if (this.#record && this.#remainingMs() > this.#o.ttlMs / 2) return false;
    if (this.#record && this.#etag !== undefined && this.#remainingMs() > this.#marginMs()) {
      try {
        await this.renew(signal);
        return false;
      } catch (err) {
        if (!(err instanceof LeaseLostError)) throw err;
      }
    }
    return this.#take(signal);
  }

  /** Extends a lease this process holds; LeaseLostError when someone else has it now. */
  async renew(signal?: AbortSignal): Promise<void> {
    const record = this.#record;
    const etag = this.#etag;
    if (!record || etag === undefined || this.#remainingMs() <= this.#marginMs()) {
      this.#forget();
      throw new LeaseLostError(`lease on ${this.#where()} expired before it could be renewed`);
    }
    const next = this.#next(record.epoch);
    if (!(await this.#write(next, { ifMatch: etag }, signal))) {
      this.#forget();
      throw new LeaseLostError(`lease on ${this.#where()} was taken over`);
    }
    this.#o.onRenewed?.();
  }

  /** Throws LeaseLostError unless this process holds the lease with time to spare. */
  assertHeld(): void {
    if (!this.held) {
      const why = this.#record ? "expired" : "not held";
      this.#forget();
      throw new LeaseLostError(`lease on ${this.#where()} ${why}: not writing`);
    }
  }

  /**
   * Runs `work` while keeping the lease: renewed whenever a third of its TTL has passed since
   * it was last written (checked every sixth), so at least half a TTL is always left and the
   * fence never finds it about to expire. If the lease is lost meanwhile, the signal given to
   * `work` aborts and this rejects with LeaseLostError, whatever `work` threw.
   */
  async hold<T>(signal: AbortSignal, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const lost = new AbortController();
    let lostWith: LeaseLostError | undefined;
    const due = () => this.#remainingMs() <= (this.#o.ttlMs * 2) / 3;
    const keep = async () => {
      try {
        if (due()) await this.renew(signal);
      } catch (err) {
        if (err instanceof LeaseLostError) {
          lostWith ??= err;
          lost.abort(err);
        } else {
          this.#o.logger.warn({ err, destination: this.#where() }, "lease renewal failed");
        }
      }
    };
    await keep();
    if (lostWith) throw lostWith;
    let renewal: Promise<void> | undefined;
    const renewing = setInterval(() => {
      // One renewal at a time: a second one with the same ETag would lose to the first.
      renewal ??= keep().finally(() => (renewal = undefined));
    }, this.#o.ttlMs / 6);
    const held = AbortSignal.any([signal, lost.signal]);
    // Every request of the work listens on it.
    setMaxListeners(0, held);
    try {
      return await work(held);
    } catch (err) {
      throw lostWith ?? err;
    } finally {
      clearInterval(renewing);
      await renewal;
    }
  }

  /** Hands the lease over at once (marks it expired) if this process holds it. */
  async release(signal?: AbortSignal): Promise<void> {
    const record = this.#record;
    const etag = this.#etag;
    this.#forget();
    if (!record || etag === undefined) return;
    const now = new Date(this.#now()).toISOString();
    const text = JSON.stringify({ ...record, expiresAt: now, renewedAt: now });
    await this.#o.dest.putConditional(LEASE_PATH, text, { ifMatch: etag }, signal);
  }

  async #take(signal?: AbortSignal): Promise<boolean> {
    const current = await withRetry(
      () => this.#o.dest.getWithEtag(LEASE_PATH, signal),
      this.#retryOptions("read the lease", signal),
    );
    let previous: LeaseRecord | undefined;
    if (current) {
      previous = parseLease(current.text);
      const expires = previous ? Date.parse(previous.expiresAt) : 0;
      if (previous && previous.owner !== this.#o.owner && expires > this.#now()) {
        throw new LeaseHeldError(
          `${this.#where()} is leased by ${previous.owner} until ${previous.expiresAt}`,
          previous.owner,
          new Date(expires),
        );
      }
    }
    // A lease last written by this owner (this process after an idle spell, or a restart with
    // the same name) carries on in its epoch: nobody else has held it since.
    const same = previous?.owner === this.#o.owner;
    const next = this.#next(same && previous ? previous.epoch : (previous?.epoch ?? 0) + 1);
    const condition = current ? { ifMatch: current.etag } : { ifNoneMatch: "*" as const };
    if (!(await this.#write(next, condition, signal))) {
      throw new LeaseHeldError(
        `${this.#where()} was just leased by another daemon`,
        "(unknown)",
        new Date(this.#now() + this.#o.ttlMs),
      );
    }
    if (!same) {
      this.#o.logger.info(
        { destination: this.#where(), epoch: next.epoch, previousOwner: previous?.owner ?? null },
        "lease taken",
      );
    }
    return !same;
  }

  /** Writes the record; true when it is ours now (also when a retried write's first try won). */
  async #write(
    record: LeaseRecord,
    condition: { ifMatch: string } | { ifNoneMatch: "*" },
    signal?: AbortSignal,
  ): Promise<boolean> {
    const text = JSON.stringify(record);
    const etag = await withRetry(
      () => this.#o.dest.putConditional(LEASE_PATH, text, condition, signal),
      this.#retryOptions("write the lease", signal),
    );
    if (etag !== undefined) {
      this.#record = record;
      this.#etag = etag;
      return true;
    }
    const now = await this.#o.dest.getWithEtag(LEASE_PATH, signal);
    if (now && parseLease(now.text)?.token === record.token) {
      this.#record = record;
      this.#etag = now.etag;
      return true;
    }
    return false;
  }

  #next(epoch: number): LeaseRecord {
    const now = this.#now();
    return {
      format: 1,
      owner: this.#o.owner,
      epoch,
      token: randomUUID(),
      repository: this.#o.repository,
      branch: this.#o.branch,
      expiresAt: new Date(now + this.#o.ttlMs).toISOString(),
      renewedAt: new Date(now).toISOString(),
    };
  }

  #remainingMs(): number {
    return this.#record ? Date.parse(this.#record.expiresAt) - this.#now() : 0;
  }

  #marginMs(): number {
    return this.#o.ttlMs / 3;
  }

  #forget(): void {
    this.#record = undefined;
    this.#etag = undefined;
  }

  #where(): string {
    return `s3://${this.#o.dest.bucket}/${this.#o.dest.prefix}`;
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

/** A lease record, or undefined when the object holds something else (then it is taken over). */
export function parseLease(text: string): LeaseRecord | undefined {
  try {
    const v = JSON.parse(text) as Partial<LeaseRecord>;
    if (
      v.format === 1 &&
      typeof v.owner === "string" &&
      typeof v.epoch === "number" &&
      typeof v.token === "string" &&
      typeof v.expiresAt === "string" &&
      !Number.isNaN(Date.parse(v.expiresAt))
    )
      return v as LeaseRecord;
  } catch {
    // Not JSON: not a lease this version can honour.
  }
  return undefined;
}

import { randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import { DestinationError, LeaseHeldError, LeaseLostError } from "../errors.ts";
import { LEASE_PATH } from "../export/reserved.ts";
import { withRetry } from "../retry.ts";
import type { RetryPolicy } from "../retry.ts";
import type { Destination, WriteCondition } from "../destination/destination.ts";

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
  /**
   * Split exports this holder runs now (see the work items): a worker writes for one only
   * while the lease of its epoch names it.
   */
  runs?: string[];
}

export interface LeaseOptions {
  dest: Destination;
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
 * One writer per destination, even in a split brain: a lease object taken and renewed with the
 * store's conditional writes (Destination.putConditional: S3 and Azure `If-None-Match: *` and
 * `If-Match`, GCS generation preconditions). Create if absent; renew, hand over or take over an
 * expired lease only if its version is still the one last read. Whoever loses a race reads again.
 *
 * A holder treats its lease as lost once it can no longer prove it valid: at its deadline,
 * `expiresAt` less a margin (a third of the TTL), by its own clock, and by the time its own
 * timer has counted since the write that set `expiresAt` was sent (a wall clock stepped back
 * does not extend it). A process paused past its lease (SIGSTOP, a long GC, a frozen VM) finds
 * it lost on waking and writes nothing more, while the new owner, by its clock, waits for the
 * whole TTL. Clocks must agree to well within that margin.
 *
 * While work runs under `hold`, the deadline is enforced whatever the renewal is doing: a
 * renewal request still unanswered at the deadline is aborted there, a timer at the deadline
 * aborts the work's signal (every request in flight listens on it) with LeaseLostError, and
 * from then on `assertHeld` refuses until the lease is taken again. A renewal whose condition
 * did not hold (someone else wrote the object) or that finds the object gone (whoever comes
 * next creates a new one without waiting) is lost at once; any other failure (5xx, a broken
 * connection, a refusal of the credentials) proves nothing either way and is tried again on
 * the next tick, until the deadline.
 */
export class Lease {
  readonly #o: LeaseOptions;
  readonly #now: () => number;
  #version: string | undefined;
  #record: LeaseRecord | undefined;
  /** `performance.now()` when the write of `#record` was prepared (its `renewedAt`). */
  #writtenAt = 0;
  /** Bumped whenever the lease is forgotten: a write begun before that never brings it back. */
  #generation = 0;
  /** The split exports open under this lease, written into every record (see openRun). */
  #runs: string[] = [];
  /**
   * The last renewal begun: renewals run one after another. Two at once would send the same
   * version, and the one that lost would take the lease for taken over.
   */
  #renewals: Promise<unknown> = Promise.resolve();
  /** `performance.now()` before which a closed run's workers may still write (see closeRun). */
  #quietUntil = 0;

  constructor(options: LeaseOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  get epoch(): number | undefined {
    return this.#record?.epoch;
  }

  /** Whether this process holds the lease with more than the safety margin left. */
  get held(): boolean {
    return this.#record !== undefined && this.#untilDeadlineMs() > 0;
  }

  /**
   * Makes sure this process holds the lease for most of a TTL: nothing when it was renewed
   * recently, one conditional write to renew it, or a read and a write to take it. Throws
   * LeaseHeldError when another owner holds an unexpired lease. Returns whether the holder
   * changed (this process was not the holder just before), after which anything cached about
   * the destination must be read again.
   */
  async ensure(signal?: AbortSignal): Promise<boolean> {
    if (this.#record && this.#leftMs() > this.#o.ttlMs / 2) return false;
    if (this.#record && this.#version !== undefined && this.held) {
      try {
        await this.renew(signal);
        return false;
      } catch (err) {
        if (!(err instanceof LeaseLostError)) throw err;
      }
    }
    return this.#take(signal);
  }

  /**
   * Extends a lease this process holds. LeaseLostError when someone else has it now, when the
   * lease object is gone, or when no answer came by the lease's deadline (the request is
   * aborted there); any other failure is thrown as it is and leaves the lease as it was.
   * A renewal begun while another is under way waits for it, then writes from its outcome.
   */
  renew(signal?: AbortSignal): Promise<void> {
    const next = this.#renewals.then(() => this.#renewNow(signal));
    this.#renewals = next.catch(() => undefined);
    return next;
  }

  async #renewNow(signal?: AbortSignal): Promise<void> {
    const record = this.#record;
    const version = this.#version;
    const untilDeadline = this.#untilDeadlineMs();
    if (!record || version === undefined || untilDeadline <= 0) {
      this.#forget();
      throw new LeaseLostError(`lease on ${this.#where()} expired before it could be renewed`);
    }
    // An answer after the deadline proves nothing that matters: the holder has stopped by then.
    const deadline = AbortSignal.timeout(Math.ceil(untilDeadline));
    const bounded = signal ? AbortSignal.any([signal, deadline]) : deadline;
    let ours: boolean;
    try {
      ours = await this.#write(this.#next(record.epoch), { ifVersion: version }, bounded);
    } catch (err) {
      if (err instanceof LeaseLostError) throw err;
      if (deadline.aborted && !signal?.aborted) {
        this.#forget();
        throw new LeaseLostError(
          `lease on ${this.#where()} could not be renewed by its deadline: not writing`,
          { cause: err },
        );
      }
      // AWS and MinIO answer a PutObject If-Match on a missing key with 404 NoSuchKey.
      if (
        err instanceof DestinationError &&
        (err.reason === "NotFound" || err.reason === "ContainerNotFound")
      ) {
        this.#forget();
        throw new LeaseLostError(
          `lease object of ${this.#where()} is gone (deleted under its holder): not writing`,
          { cause: err },
        );
      }
      throw err;
    }
    if (!ours) {
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
   * it was last written (checked every sixth), so at least half a TTL is left after each
   * renewal. If the lease is lost meanwhile (refused, gone, or not renewed by its deadline),
   * the signal given to `work` aborts and this rejects with LeaseLostError, whatever `work`
   * threw.
   */
  async hold<T>(signal: AbortSignal, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const lost = new AbortController();
    let lostWith: LeaseLostError | undefined;
    let deadline: NodeJS.Timeout | undefined;
    const lose = (err: LeaseLostError) => {
      if (lostWith) return;
      lostWith = err;
      clearTimeout(deadline);
      this.#forget();
      lost.abort(err);
    };
    const expired = () =>
      new LeaseLostError(`lease on ${this.#where()} not renewed by its deadline: not writing`);
    // Fires at the deadline and looks again: a renewal meanwhile moved it on.
    const arm = () => {
      clearTimeout(deadline);
      const ms = this.#untilDeadlineMs();
      if (ms <= 0) lose(expired());
      else deadline = setTimeout(arm, Math.ceil(ms));
    };
    const due = () => this.#leftMs() <= (this.#o.ttlMs * 2) / 3;
    const keep = async () => {
      if (lostWith) return;
      // The timer counts real time; this catches a wall clock that jumped ahead.
      if (!this.held) return lose(expired());
      if (!due()) return;
      try {
        await this.renew(signal);
        arm();
      } catch (err) {
        if (err instanceof LeaseLostError) lose(err);
        else if (!signal.aborted)
          this.#o.logger.warn(
            { err, destination: this.#where(), stopsInMs: Math.round(this.#untilDeadlineMs()) },
            "lease renewal failed; writes stop at the lease's deadline unless a renewal succeeds",
          );
      }
    };
    await keep();
    if (lostWith) throw lostWith;
    arm();
    let renewal: Promise<void> | undefined;
    const renewing = setInterval(() => {
      // One renewal at a time: a second one with the same version would lose to the first.
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
      clearTimeout(deadline);
      // Bounded: a renewal is aborted at the lease's deadline.
      await renewal;
    }
  }

  /**
   * Names a split export in the lease (renewing it at once): workers write for `run` only
   * while the lease they read names it, under this epoch.
   */
  async openRun(run: string, signal?: AbortSignal): Promise<void> {
    if (!this.#runs.includes(run)) this.#runs = [...this.#runs, run];
    await this.renew(signal);
  }

  /**
   * Takes a split export out of the lease (renewing it at once). A worker trusts a lease it
   * read for a bounded time; once `quietMs` (that time, and the time its last request takes to
   * land) has passed after this returns, none writes for `run`, and only then may the lease be
   * handed over.
   */
  async closeRun(run: string, quietMs: number, signal?: AbortSignal): Promise<void> {
    this.#runs = this.#runs.filter((r) => r !== run);
    try {
      await this.renew(signal);
    } catch (err) {
      // The object may still name the run, until a renewal that is at least TTL/2 away: this
      // process stops holding the lease now, and whoever takes it next (this process too)
      // waits out a lease that names runs.
      this.#forget();
      throw err;
    }
    // Until then the lease is not handed over (release leaves it to expire).
    this.#quietUntil = Math.max(this.#quietUntil, performance.now() + quietMs);
  }

  /**
   * Hands the lease over at once (marks it expired) if this process holds it. A lease that
   * still names a split export is left to expire instead: its workers may be writing until
   * then, and a new holder must not start before they stop.
   */
  async release(signal?: AbortSignal): Promise<void> {
    const record = this.#record;
    const version = this.#version;
    // The runs of the last record written count too: a closeRun that failed left them named
    // in the object, and workers reading it may still write.
    const runs = this.#runs.length > 0 ? this.#runs : (record?.runs ?? []);
    const quiet = performance.now() < this.#quietUntil;
    this.#forget();
    if (!record || version === undefined) return;
    if (runs.length > 0 || quiet) {
      this.#o.logger.info(
        { destination: this.#where(), runs },
        "lease left to expire: split exports under it may still have workers writing",
      );
      return;
    }
    const now = new Date(this.#now()).toISOString();
    const text = JSON.stringify({ ...record, expiresAt: now, renewedAt: now });
    await this.#o.dest.putConditional(LEASE_PATH, text, { ifVersion: version }, signal);
  }

  async #take(signal?: AbortSignal): Promise<boolean> {
    const current = await withRetry(
      () => this.#o.dest.getVersioned(LEASE_PATH, signal),
      this.#retryOptions("read the lease", signal),
    );
    let previous: LeaseRecord | undefined;
    if (current) {
      previous = parseLease(current.text);
      const expires = previous ? Date.parse(previous.expiresAt) : 0;
      // A lease that names split runs is waited out even by its own owner (restarted under
      // the same name): their workers may write until it expires.
      const runsOpen = (previous?.runs ?? []).length > 0;
      if (previous && (previous.owner !== this.#o.owner || runsOpen) && expires > this.#now()) {
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
    const condition: WriteCondition = current ? { ifVersion: current.version } : { ifAbsent: true };
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
    condition: WriteCondition,
    signal?: AbortSignal,
  ): Promise<boolean> {
    const text = JSON.stringify(record);
    // `record` was made just now (#next): its expiresAt counts from this instant.
    const writtenAt = performance.now();
    const generation = this.#generation;
    const install = (version: string) => {
      if (generation !== this.#generation)
        throw new LeaseLostError(`lease on ${this.#where()} was given up while being written`);
      this.#record = record;
      this.#version = version;
      this.#writtenAt = writtenAt;
    };
    const version = await withRetry(
      () => this.#o.dest.putConditional(LEASE_PATH, text, condition, signal),
      this.#retryOptions("write the lease", signal),
    );
    if (version !== undefined) {
      install(version);
      return true;
    }
    const now = await this.#o.dest.getVersioned(LEASE_PATH, signal);
    if (now && parseLease(now.text)?.token === record.token) {
      install(now.version);
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
      ...(this.#runs.length > 0 ? { runs: [...this.#runs] } : {}),
    };
  }

  /** Time until `expiresAt`, by the wall clock or by time counted since it was set, if sooner. */
  #leftMs(): number {
    if (!this.#record) return 0;
    const byClock = Date.parse(this.#record.expiresAt) - this.#now();
    const counted = this.#writtenAt + this.#o.ttlMs - performance.now();
    return Math.min(byClock, counted);
  }

  /** Time until the holder must have stopped writing. */
  #untilDeadlineMs(): number {
    return this.#leftMs() - this.#marginMs();
  }

  #marginMs(): number {
    return this.#o.ttlMs / 3;
  }

  #forget(): void {
    this.#generation++;
    this.#record = undefined;
    this.#version = undefined;
    // A run begun under a lease this process lost is over: its workers stopped at the deadline.
    this.#runs = [];
  }

  #where(): string {
    return this.#o.dest.uri;
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

import { setMaxListeners } from "node:events";
import type { Logger } from "pino";
import { errorMessage } from "../errors.ts";

export type LaneState = "idle" | "queued" | "exporting" | "backoff" | "ended";

export interface LaneKey {
  repository: string;
  branch: string;
  /** The resolved s3:// destination. */
  destination: string;
  /** The destination holds nothing but this lane's mirror. */
  dedicated?: boolean;
}

export interface Lane extends LaneKey {
  id: string;
  dedicated: boolean;
  state: LaneState;
  lastExportedCommit: string | undefined;
  headCommit: string | undefined;
  commitsBehind: number;
  lagSeconds: number;
  /** The newest commit a SUCCESS status file was written for. */
  lastSuccessCommit: string | undefined;
  lastError: string | undefined;
  /** Paths that failed in the last export and are retried with back-off. */
  failingPaths: number;
  /** Consecutive runs that could not complete an export. */
  failures: number;
  /** When the lane's last export ended with a status file. */
  lastExportAt: Date | undefined;
  /** Bumped by every event; an export started at sequence s covers every event up to s. */
  requested: number;
  covered: number;
}

/** A lane's id: its key as JSON, which keeps any character of a name apart from the others. */
export function laneId(key: Pick<LaneKey, "repository" | "branch" | "destination">): string {
  return JSON.stringify([key.repository, key.branch, key.destination]);
}

/** The key a lane id was made from; undefined for an id that is not one. */
export function parseLaneId(
  id: string,
): Pick<LaneKey, "repository" | "branch" | "destination"> | undefined {
  try {
    const v: unknown = JSON.parse(id);
    if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === "string")) {
      const [repository, branch, destination] = v as [string, string, string];
      return { repository, branch, destination };
    }
  } catch {
    // Not JSON: not a lane id.
  }
  return undefined;
}

/**
 * What a run achieved: the lane is current ("done"), its branch is gone ("ended"), or it is to
 * run again at `retryAt` (sooner if an event comes): current except for failing paths, or, with
 * `covered: false`, not exported at all (another daemon holds the destination for now).
 */
export type LaneOutcome = "done" | "ended" | { retryAt: Date; covered?: boolean };

/** What running a lane means: bring its destination to the branch HEAD. Throws to back off. */
export type LaneRunner = (lane: Lane, signal: AbortSignal) => Promise<LaneOutcome>;

export interface SchedulerOptions {
  maxParallelLanes: number;
  retryBaseSeconds: number;
  retryMaxSeconds: number;
  run: LaneRunner;
  logger: Logger;
  /** Called after every run of a lane, however it ended (metrics follow the lane's state). */
  onRun?: (lane: Lane) => void;
}

/**
 * One serial lane per (repository, branch, destination). Events for a lane that is busy only
 * bump its sequence, so a burst of commits becomes one more export to the newest HEAD. Lanes
 * run in parallel up to a limit; a failed export backs off exponentially, with jitter.
 */
export class Scheduler {
  readonly lanes = new Map<string, Lane>();
  readonly #o: SchedulerOptions;
  readonly #queue: string[] = [];
  readonly #running = new Map<string, Promise<void>>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #waiters = new Map<string, { seq: number; resolve: () => void }[]>();
  /** The abort of each running lane's export. */
  readonly #runs = new Map<string, AbortController>();
  readonly #abort = new AbortController();
  #seq = 0;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(options: SchedulerOptions) {
    if (!Number.isInteger(options.maxParallelLanes) || options.maxParallelLanes < 1)
      throw new TypeError(`maxParallelLanes must be >= 1, got ${options.maxParallelLanes}`);
    this.#o = options;
    // Every in-flight request of every lane listens on this one signal.
    setMaxListeners(0, this.#abort.signal);
  }

  get running(): number {
    return this.#running.size;
  }

  lane(key: LaneKey, lastExportedCommit?: string): Lane {
    const id = laneId(key);
    let lane = this.lanes.get(id);
    if (!lane) {
      lane = {
        ...key,
        dedicated: key.dedicated ?? false,
        id,
        state: "idle",
        lastExportedCommit,
        lastSuccessCommit: undefined,
        headCommit: undefined,
        commitsBehind: 0,
        lagSeconds: 0,
        lastError: undefined,
        failingPaths: 0,
        failures: 0,
        lastExportAt: undefined,
        requested: 0,
        covered: 0,
      };
      this.lanes.set(id, lane);
    }
    return lane;
  }

  /** Asks for the lane to be brought to its HEAD; returns the sequence that a later export covers. */
  notify(lane: Lane): number {
    const seq = ++this.#seq;
    lane.requested = seq;
    if (lane.state === "ended") lane.state = "idle";
    if (lane.state === "idle") this.#enqueue(lane);
    return seq;
  }

  /** Resolves once an export that started after `seq` was requested has succeeded (or the lane ended). */
  covered(lane: Lane, seq: number): Promise<void> {
    if (lane.covered >= seq) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.#waiters.get(lane.id) ?? [];
      list.push({ seq, resolve });
      this.#waiters.set(lane.id, list);
    });
  }

  #enqueue(lane: Lane): void {
    if (this.#closed) return;
    lane.state = "queued";
    this.#queue.push(lane.id);
    this.#pump();
  }

  #pump(): void {
    while (
      !this.#closed &&
      this.#running.size < this.#o.maxParallelLanes &&
      this.#queue.length > 0
    ) {
      const id = this.#queue.shift()!;
      const lane = this.lanes.get(id);
      if (!lane || lane.state !== "queued") continue;
      const p = this.#runOnce(lane).finally(() => {
        this.#running.delete(id);
        this.#runs.delete(id);
        this.#pump();
      });
      this.#running.set(id, p);
    }
  }

  async #runOnce(lane: Lane): Promise<void> {
    lane.state = "exporting";
    const startedAt = lane.requested;
    const own = new AbortController();
    this.#runs.set(lane.id, own);
    try {
      await this.#attempt(lane, startedAt, own.signal);
    } finally {
      if (this.lanes.has(lane.id)) this.#o.onRun?.(lane);
    }
  }

  async #attempt(lane: Lane, startedAt: number, own: AbortSignal): Promise<void> {
    try {
      const signal = AbortSignal.any([this.#abort.signal, own]);
      // Every request of the lane's export listens on it.
      setMaxListeners(0, signal);
      const outcome = await this.#o.run(lane, signal);
      if (!this.lanes.has(lane.id)) return;
      lane.failures = 0;
      if (typeof outcome !== "object" || outcome.covered !== false) {
        lane.covered = startedAt;
        this.#release(lane);
      }
      if (outcome === "ended") {
        lane.state = "ended";
        lane.covered = Number.MAX_SAFE_INTEGER;
        this.#release(lane);
        return;
      }
      lane.state = "idle";
      if (typeof outcome === "object") this.#wakeAt(lane, outcome.retryAt);
      else lane.lastError = undefined;
      // Events that arrived during the export: one more run covers them all.
      if (lane.requested > startedAt) this.#enqueue(lane);
    } catch (err) {
      if (this.#closed || !this.lanes.has(lane.id)) {
        lane.state = "idle";
        return;
      }
      lane.failures++;
      lane.lastError = errorMessage(err);
      const base = Math.min(
        this.#o.retryMaxSeconds,
        this.#o.retryBaseSeconds * 2 ** (lane.failures - 1),
      );
      const delay = base * (0.5 + Math.random() / 2);
      lane.state = "backoff";
      this.#o.logger.warn(
        {
          repository: lane.repository,
          branch: lane.branch,
          err: lane.lastError,
          retryInSeconds: Math.round(delay),
        },
        "lane export failed; backing off",
      );
      this.#setTimer(lane, delay * 1000, () => {
        if (lane.state === "backoff") this.#enqueue(lane);
      });
    }
  }

  /** Runs the lane again at `at` unless an event runs it first; one timer per lane. */
  #wakeAt(lane: Lane, at: Date): void {
    this.#setTimer(lane, Math.max(0, at.getTime() - Date.now()), () => {
      if (lane.state === "idle") this.notify(lane);
    });
  }

  #setTimer(lane: Lane, ms: number, fn: () => void): void {
    clearTimeout(this.#timers.get(lane.id));
    const timer = setTimeout(() => {
      this.#timers.delete(lane.id);
      if (!this.#closed) fn();
    }, ms);
    timer.unref();
    this.#timers.set(lane.id, timer);
  }

  #release(lane: Lane): void {
    const list = this.#waiters.get(lane.id);
    if (!list) return;
    const keep = list.filter((w) => {
      if (w.seq <= lane.covered) w.resolve();
      return w.seq > lane.covered;
    });
    if (keep.length) this.#waiters.set(lane.id, keep);
    else this.#waiters.delete(lane.id);
  }

  /**
   * Gives a lane up (another daemon owns it now): its running export is aborted before it
   * writes its status file, its timers stop, and it leaves `lanes`. Resolves once the export,
   * if one was running, has settled.
   */
  async disown(id: string, reason: Error): Promise<void> {
    const lane = this.lanes.get(id);
    if (!lane) return;
    this.lanes.delete(id);
    this.#waiters.delete(id);
    clearTimeout(this.#timers.get(id));
    this.#timers.delete(id);
    this.#runs.get(id)?.abort(reason);
    await this.#running.get(id)?.catch(() => undefined);
  }

  /**
   * Stops taking work, gives running exports `graceMs` to finish (drain), then aborts them
   * (`graceMs` 0: abort at once). Queued lanes stay pending in the checkpoint store and run
   * after the next start. Idempotent; concurrent callers wait for the same close.
   */
  close(graceMs: number): Promise<void> {
    this.#closing ??= this.#close(graceMs);
    return this.#closing;
  }

  async #close(graceMs: number): Promise<void> {
    this.#closed = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    const running = Promise.allSettled([...this.#running.values()]);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<"expired">(
      (r) => (timer = setTimeout(() => r("expired"), graceMs)),
    );
    const outcome = await Promise.race([running.then(() => "drained" as const), expired]);
    clearTimeout(timer);
    if (outcome === "expired") {
      this.#o.logger.warn(
        { running: this.#running.size },
        "grace period over; aborting running exports",
      );
      this.#abort.abort(new Error("shutdown"));
      await running;
    }
  }
}

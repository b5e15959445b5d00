import { setMaxListeners } from "node:events";
import type { Logger } from "pino";
import { errorMessage } from "../errors.ts";
import { newLane } from "./lane.ts";
import type { Lane, LaneKey, LaneSchedule } from "./lane.ts";

/**
 * What a run achieved: the lane is current ("done"), its branch is gone ("ended"), or it is to
 * run again at `retryAt` (sooner if an event comes): current except for failing paths, or, with
 * `covered: false`, not exported at all (another daemon holds the destination for now). `error`
 * says why it is not current; without one, the lane's last error stands.
 */
export type LaneOutcome = "done" | "ended" | { retryAt: Date; covered?: boolean; error?: string };

/** What running a lane means: bring its destination to the branch HEAD. Throws to back off. */
export type LaneRunner = (lane: Lane, signal: AbortSignal) => Promise<LaneOutcome>;

/** How a lane's export is getting on, for /status and the metrics. */
export interface LaneProgress {
  lane: Lane;
  /** Since the running export last made progress; 0 while the lane is not exporting. */
  secondsWithoutProgress: number;
  /** Exporting with no progress for the stall time. */
  stalled: boolean;
}

const DEFAULT_STALL_SECONDS = 300;

export interface SchedulerOptions {
  maxParallelLanes: number;
  retryBaseSeconds: number;
  retryMaxSeconds: number;
  run: LaneRunner;
  logger: Logger;
  /** Called after every run of a lane, however it ended (metrics follow the lane's state). */
  onRun?: (lane: Lane) => void;
  /** Called when a lane whose branch is gone leaves `lanes`. */
  onEnded?: (lane: Lane) => void;
  /** An export without progress for this long is stalled (default 300). */
  stallSeconds?: number;
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
  readonly #stallMs: number;
  /** Looks for stalled exports while any lane runs, to log each stall once. */
  #watch: NodeJS.Timeout | undefined;
  readonly #stalled = new Set<string>();

  constructor(options: SchedulerOptions) {
    if (!Number.isInteger(options.maxParallelLanes) || options.maxParallelLanes < 1)
      throw new TypeError(`maxParallelLanes must be >= 1, got ${options.maxParallelLanes}`);
    const stallSeconds = options.stallSeconds ?? DEFAULT_STALL_SECONDS;
    if (!(stallSeconds > 0)) throw new TypeError(`stallSeconds must be > 0, got ${stallSeconds}`);
    this.#stallMs = stallSeconds * 1000;
    this.#o = options;
    // Every in-flight request of every lane listens on this one signal.
    setMaxListeners(0, this.#abort.signal);
  }

  get running(): number {
    return this.#running.size;
  }

  lane(key: LaneKey, lastExportedCommit?: string): Lane {
    const made = newLane(key, lastExportedCommit);
    const lane = this.lanes.get(made.id);
    if (lane) return lane;
    this.lanes.set(made.id, made);
    return made;
  }

  /** The lane's running export ended a task: it is moving (what tells a stalled one). */
  progressed(lane: Lane): void {
    if (lane.state === "exporting") schedule(lane).lastProgressAt = new Date();
  }

  /** Whether the lane's export is stalled: exporting, and no progress for the stall time. */
  progressOf(lane: Lane, now = Date.now()): Omit<LaneProgress, "lane"> {
    if (lane.state !== "exporting" || !lane.lastProgressAt)
      return { secondsWithoutProgress: 0, stalled: false };
    const ms = Math.max(0, now - lane.lastProgressAt.getTime());
    return { secondsWithoutProgress: ms / 1000, stalled: ms >= this.#stallMs };
  }

  /** Every lane's progress but ended ones'. */
  progress(now = Date.now()): LaneProgress[] {
    return [...this.lanes.values()]
      .filter((lane) => lane.state !== "ended")
      .map((lane) => ({ lane, ...this.progressOf(lane, now) }));
  }

  /** Asks for the lane to be brought to its HEAD; returns the sequence that a later export covers. */
  notify(lane: Lane): number {
    const seq = ++this.#seq;
    const s = schedule(lane);
    s.requested = seq;
    if (s.state === "ended") s.state = "idle";
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
    schedule(lane).state = "queued";
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
        this.#stalled.delete(id);
        if (this.#running.size === 0) this.#unwatch();
        this.#pump();
      });
      this.#running.set(id, p);
      this.#watchStalls();
    }
  }

  /**
   * Logs a running export once when it stalls and once when it moves again. /status and the
   * metrics do not wait for this: they ask progressOf when read.
   */
  #watchStalls(): void {
    if (this.#watch) return;
    const every = Math.min(30_000, Math.max(1000, this.#stallMs / 4));
    this.#watch = setInterval(() => {
      const now = Date.now();
      for (const id of this.#running.keys()) {
        const lane = this.lanes.get(id);
        if (!lane) continue;
        const { stalled, secondsWithoutProgress } = this.progressOf(lane, now);
        const where = { repository: lane.repository, branch: lane.branch };
        if (stalled && !this.#stalled.has(id)) {
          this.#stalled.add(id);
          this.#o.logger.warn(
            { ...where, secondsWithoutProgress: Math.round(secondsWithoutProgress) },
            "lane export is making no progress",
          );
        } else if (!stalled && this.#stalled.delete(id)) {
          this.#o.logger.info(where, "lane export is making progress again");
        }
      }
    }, every);
    this.#watch.unref();
  }

  #unwatch(): void {
    clearInterval(this.#watch);
    this.#watch = undefined;
  }

  async #runOnce(lane: Lane): Promise<void> {
    const s = schedule(lane);
    s.state = "exporting";
    // Starting is progress: the stall time counts from here until a task ends.
    s.lastProgressAt = new Date();
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
    const s = schedule(lane);
    try {
      const signal = AbortSignal.any([this.#abort.signal, own]);
      // Every request of the lane's export listens on it.
      setMaxListeners(0, signal);
      const outcome = await this.#o.run(lane, signal);
      if (!this.lanes.has(lane.id)) return;
      s.failures = 0;
      if (typeof outcome !== "object" || outcome.covered !== false) {
        s.covered = startedAt;
        this.#release(lane);
      }
      if (outcome === "ended") {
        // The events up to this run's start were for the branch that is gone. One that came
        // during the run may be for a branch of the same name created again: it runs again.
        // Otherwise the lane is dropped, so that branch churn does not grow memory; a later
        // event makes a new one.
        if (s.requested > startedAt) {
          s.state = "idle";
          this.#enqueue(lane);
          return;
        }
        s.state = "ended";
        this.#drop(lane);
        return;
      }
      s.state = "idle";
      if (typeof outcome === "object") {
        if (outcome.error !== undefined) s.lastError = outcome.error;
        this.#wakeAt(lane, outcome.retryAt);
      } else {
        s.lastError = undefined;
      }
      // Events that arrived during the export: one more run covers them all.
      if (s.requested > startedAt) this.#enqueue(lane);
    } catch (err) {
      if (this.#closed || !this.lanes.has(lane.id)) {
        s.state = "idle";
        return;
      }
      s.failures++;
      s.lastError = errorMessage(err);
      const base = Math.min(
        this.#o.retryMaxSeconds,
        this.#o.retryBaseSeconds * 2 ** (s.failures - 1),
      );
      const delay = base * (0.5 + Math.random() / 2);
      s.state = "backoff";
      this.#o.logger.warn(
        {
          repository: lane.repository,
          branch: lane.branch,
          err: s.lastError,
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

  /** Forgets an ended lane: its waiters are all covered, its timers stop. */
  #drop(lane: Lane): void {
    this.lanes.delete(lane.id);
    this.#waiters.delete(lane.id);
    clearTimeout(this.#timers.get(lane.id));
    this.#timers.delete(lane.id);
    this.#o.onEnded?.(lane);
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
    this.#unwatch();
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

/** The scheduler's own part of a lane, the one it writes (see lane.ts). */
function schedule(lane: Lane): LaneSchedule {
  return lane;
}

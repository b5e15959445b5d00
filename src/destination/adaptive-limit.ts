import { AbortedError } from "../errors.ts";

/** What became of a request that held a slot. */
export type RequestOutcome = "ok" | "throttled" | "other";

export interface LimitChange {
  /** The new limit; undefined: no limit (the store has not pushed back, or recovered). */
  limit: number | undefined;
  /** Requests in flight when it changed. */
  inFlight: number;
  cause: "throttled" | "grew" | "recovered";
}

export interface AdaptiveLimitOptions {
  /** The limit never drops below this; default 1. */
  min?: number;
  /** Called on every change of the limit (for logs and metrics). */
  onChange?: (change: LimitChange) => void;
}

export interface Slot {
  release(): void;
}

/**
 * How many tasks (a copy with its retries, a delete batch) may write to one store at once,
 * decided by the store's own answers to their requests:
 * additive increase, multiplicative decrease, as TCP does with its window. It starts with no
 * limit, so a store that never pushes back costs nothing. The first throttling answer (S3's
 * SlowDown, a 503, a 429) halves what was in flight; each further one halves the limit again,
 * but only once per generation, and only once no more tasks are in flight than the limit:
 * answers to requests sent before the last decrease, or by tasks let in before it (their
 * retries), were sent at the old rate and say nothing new. While requests succeed, the limit grows by one per
 * limit's worth of successes, and once it is back at the highest concurrency the store was
 * seen to refuse, the limit is lifted.
 */
export class AdaptiveLimit {
  readonly #min: number;
  readonly #onChange: ((change: LimitChange) => void) | undefined;
  #limit: number | undefined;
  /** The most requests in flight when the store pushed back: where the limit is lifted. */
  #ceiling = 0;
  #inFlight = 0;
  #successes = 0;
  /** Bumped at each decrease; a slot taken in an older generation cannot decrease again. */
  #generation = 0;
  readonly #waiting: { wake: () => void }[] = [];

  constructor(options: AdaptiveLimitOptions = {}) {
    const min = options.min ?? 1;
    if (!Number.isInteger(min) || min < 1)
      throw new TypeError(`adaptive limit min must be >= 1, got ${min}`);
    this.#min = min;
    this.#onChange = options.onChange;
  }

  /** The current limit; undefined when there is none. */
  get limit(): number | undefined {
    return this.#limit;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Waits for a free slot (in arrival order); rejects with AbortedError when `signal` aborts. */
  async acquire(signal?: AbortSignal): Promise<Slot> {
    if (signal?.aborted) throw new AbortedError("waiting for a request slot aborted");
    if (this.#waiting.length === 0 && this.#free()) this.#inFlight++;
    else {
      // Woken with its slot already counted (see #wake).
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          const i = this.#waiting.indexOf(entry);
          if (i >= 0) this.#waiting.splice(i, 1);
          reject(new AbortedError("waiting for a request slot aborted"));
        };
        const entry = {
          wake: () => {
            signal?.removeEventListener("abort", onAbort);
            resolve();
          },
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        this.#waiting.push(entry);
      });
    }
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.#inFlight--;
        this.#wake();
      },
    };
  }

  /** Which generation a request sent now belongs to (see `observe`). */
  get generation(): number {
    return this.#generation;
  }

  /**
   * What the store answered to one request sent in `generation`: a throttling answer lowers
   * the limit, a success counts towards raising it. Requests are observed whether or not they
   * hold a slot (a task holds one slot for all of its requests and retries).
   */
  observe(outcome: RequestOutcome, generation: number): void {
    this.#settle(outcome, generation);
    this.#wake();
  }

  /** Runs one request and observes its answer; `classify` says what its error meant. */
  async observed<T>(fn: () => Promise<T>, classify: (err: unknown) => RequestOutcome): Promise<T> {
    const generation = this.#generation;
    try {
      const value = await fn();
      this.observe("ok", generation);
      return value;
    } catch (err) {
      this.observe(classify(err), generation);
      throw err;
    }
  }

  #free(): boolean {
    return this.#limit === undefined || this.#inFlight < this.#limit;
  }

  /** Hands free slots to waiters, first come first served. */
  #wake(): void {
    while (this.#waiting.length > 0 && this.#free()) {
      this.#inFlight++;
      this.#waiting.shift()!.wake();
    }
  }

  #settle(outcome: RequestOutcome, generation: number): void {
    if (outcome === "throttled") {
      // Stale: sent before the last cut, or while more tasks are in flight than the last cut
      // allows (their retries are not new pressure: the cut has not taken effect yet).
      if (generation !== this.#generation) return;
      if (this.#limit !== undefined && this.#inFlight > this.#limit) return;
      const base = this.#limit ?? Math.max(this.#inFlight, 1);
      this.#ceiling = Math.max(this.#ceiling, this.#inFlight);
      const before = this.#limit;
      this.#limit = Math.max(this.#min, Math.floor(base / 2));
      this.#generation++;
      this.#successes = 0;
      if (this.#limit !== before)
        this.#onChange?.({ limit: this.#limit, inFlight: this.#inFlight, cause: "throttled" });
      return;
    }
    if (outcome !== "ok" || this.#limit === undefined) return;
    if (++this.#successes < this.#limit) return;
    this.#successes = 0;
    if (this.#limit + 1 >= this.#ceiling) {
      this.#limit = undefined;
      this.#onChange?.({ limit: undefined, inFlight: this.#inFlight, cause: "recovered" });
    } else {
      this.#limit++;
      this.#onChange?.({ limit: this.#limit, inFlight: this.#inFlight, cause: "grew" });
    }
  }
}

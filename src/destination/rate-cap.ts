import { setTimeout as sleep } from "node:timers/promises";

export interface RateCapOptions {
  /** Requests per second for the whole group; 0: no cap. */
  requestsPerSecond: number;
  /** Bytes per second for the whole group; 0: no cap. */
  bytesPerSecond: number;
  /** How many daemons share the caps now (each takes its share); at least 1. */
  share: () => number;
  /** Monotonic milliseconds (tests give their own clock). */
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/**
 * Caps one store's bulk writes at a rate in requests and bytes per second that holds for the
 * whole group: each daemon takes `1 / share()` of it (the members of the group's work consumer
 * group, as last seen). Two token buckets holding at most one second of this daemon's share
 * (the request bucket at least one request);
 * a request waits until both have what it takes. A request bigger than a second's bytes waits
 * until the bucket is full, then goes, leaving a debt the next requests wait out: the rate over
 * any window longer than a second stays within the cap.
 */
export class RateCap {
  readonly #o: RateCapOptions;
  readonly #now: () => number;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  #requests: number;
  #bytes: number;
  #at: number;
  /** Takers in order: one waits at a time, so a big request is not starved by small ones. */
  #queue: Promise<void> = Promise.resolve();

  constructor(options: RateCapOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => performance.now());
    this.#sleep = options.sleep ?? ((ms, signal) => sleep(ms, undefined, { signal }));
    this.#at = this.#now();
    this.#requests = this.#rates().requests;
    this.#bytes = this.#rates().bytes;
  }

  get capped(): boolean {
    return this.#o.requestsPerSecond > 0 || this.#o.bytesPerSecond > 0;
  }

  /** Waits until one request of `bytes` may go under the caps. */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (!this.capped) return Promise.resolve();
    const turn = this.#queue.then(() => this.#wait(bytes, signal));
    this.#queue = turn.catch(() => undefined);
    return turn;
  }

  /** This daemon's share of the caps, per second (Infinity: no cap). */
  #rates(): { requests: number; bytes: number } {
    const share = Math.max(1, this.#o.share());
    const per = (cap: number) => (cap > 0 ? cap / share : Number.POSITIVE_INFINITY);
    return { requests: per(this.#o.requestsPerSecond), bytes: per(this.#o.bytesPerSecond) };
  }

  async #wait(bytes: number, signal?: AbortSignal): Promise<void> {
    for (;;) {
      signal?.throwIfAborted();
      const rates = this.#rates();
      const now = this.#now();
      const seconds = (now - this.#at) / 1000;
      this.#at = now;
      // An uncapped bucket is always full (and Infinity × 0 is no count).
      // A bucket holds a second's worth, and at least one request (a share below 1/s).
      const refill = (held: number, rate: number, least: number) =>
        Number.isFinite(rate) ? Math.min(Math.max(rate, least), held + seconds * rate) : rate;
      this.#requests = refill(this.#requests, rates.requests, 1);
      this.#bytes = refill(this.#bytes, rates.bytes, 0);
      // A body bigger than a second's worth goes once the bucket is full.
      const needBytes = Math.min(bytes, rates.bytes);
      if (this.#requests >= 1 && this.#bytes >= needBytes) {
        this.#requests -= 1;
        this.#bytes -= bytes;
        return;
      }
      const waitRequests = this.#requests >= 1 ? 0 : (1 - this.#requests) / rates.requests;
      const waitBytes = this.#bytes >= needBytes ? 0 : (needBytes - this.#bytes) / rates.bytes;
      await this.#sleep(Math.max(1, Math.ceil(Math.max(waitRequests, waitBytes) * 1000)), signal);
    }
  }
}

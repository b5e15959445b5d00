import { RequestTimeoutError } from "../errors.ts";
import type { RequestWait } from "../errors.ts";

/**
 * Request deadlines that fit the request, shared by every HTTP client of the project (the S3
 * SDK's handler, the lean S3 path, lakeFS's API).
 *
 * A request has three phases, each with its own deadline:
 *
 * - sending its body: cut when the server stops taking it for `idleMs` (only time spent
 *   waiting on the server counts, never time our own source takes to produce bytes);
 * - waiting for the first byte of the answer once the request is sent: `firstByteMs`, plus
 *   the time the server may legitimately spend working first (bytes it copies or stores at
 *   `workBytesPerSecond`, keys it deletes or parts it assembles at `workMsPerEntry` each);
 * - reading the answer's body: cut when it stops for `idleMs` while the reader waits for it.
 *   A large download is never cut while its bytes keep moving.
 *
 * Amazon S3's performance guidelines ("Timeouts and retries for latency-sensitive
 * applications") advise retrying a small request that has not answered after 2 seconds, then
 * backing off, e.g. a second retry 4 seconds later. So the first-byte deadline doubles with
 * each attempt of the same request (up to 8 times the first one): a stalled request is retried
 * within seconds, while a server that is merely slow gets more time on every retry.
 */
export interface Deadlines {
  /** First byte of the answer after the request is sent, for a request the server answers at once. */
  firstByteMs: number;
  /** Longest a body may stop moving, in either direction, while the other side waits on it. */
  idleMs: number;
  /** Slowest rate at which the server may work through bytes before it answers. */
  workBytesPerSecond: number;
  /** Time the server may take per entry (a key to delete, a part to assemble) before it answers. */
  workMsPerEntry: number;
}

/** What a server does between receiving a request and answering it. */
export interface Work {
  bytes?: number | undefined;
  entries?: number | undefined;
}

const MiB = 1024 * 1024;

export const defaultDeadlines: Deadlines = {
  firstByteMs: 2_000,
  idleMs: 10_000,
  workBytesPerSecond: 8 * MiB,
  workMsPerEntry: 20,
};

/** The largest factor by which retries stretch a first-byte deadline. */
export const MAX_ESCALATION = 8;

/** How much longer than the first attempt's deadline attempt `attempt` (1-based) gets. */
export function escalation(attempt: number): number {
  const n = Number.isFinite(attempt) && attempt >= 1 ? Math.floor(attempt) : 1;
  return Math.min(2 ** (n - 1), MAX_ESCALATION);
}

/** The first-byte deadline, in ms, of attempt `attempt` of a request that does `work` first. */
export function firstByteDeadline(d: Deadlines, work: Work = {}, attempt = 1): number {
  const workMs =
    ((work.bytes ?? 0) / d.workBytesPerSecond) * 1000 + (work.entries ?? 0) * d.workMsPerEntry;
  return Math.ceil((d.firstByteMs + workMs) * escalation(attempt));
}

/** Checks a deadline configuration; the names are the configuration keys. */
export function assertDeadlines(d: Deadlines, prefix: string): void {
  for (const [name, value] of Object.entries(d)) {
    if (!(typeof value === "number" && Number.isFinite(value) && value > 0))
      throw new TypeError(`${prefix}.${name} must be a positive number, got ${String(value)}`);
  }
}

const waitingPhrase: Record<RequestWait, string> = {
  connection: "a connection",
  "first byte": "the first byte of the answer",
  "request body": "the server to take more of the request body",
  "response body": "more of the answer's body",
};

export function formatMs(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

/** The coded error of a request cut by a deadline, naming the request and what it waited for. */
export function requestTimeout(
  what: string,
  waitingFor: RequestWait,
  ms: number,
  cause?: unknown,
): RequestTimeoutError {
  return new RequestTimeoutError(
    `${what} timed out after ${formatMs(ms)} waiting for ${waitingPhrase[waitingFor]}`,
    waitingFor,
    ms,
    cause === undefined ? undefined : { cause },
  );
}

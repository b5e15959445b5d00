import pRetry from "p-retry";
import type { Logger } from "pino";
import { AbortedError, isRetriable } from "./errors.ts";

export interface RetryPolicy {
  /** Attempts after the first. */
  retries: number;
  minTimeoutMs: number;
  maxTimeoutMs: number;
  /** No new attempt starts after this much time since the first one. */
  maxRetryTimeMs: number;
}

export const defaultRetryPolicy: RetryPolicy = {
  retries: 6,
  minTimeoutMs: 200,
  maxTimeoutMs: 10_000,
  maxRetryTimeMs: 60_000,
};

export interface RetryOptions {
  policy?: Partial<RetryPolicy>;
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
  /** Names the operation in the warn line of each failed attempt. */
  operation: string;
}

/**
 * The one retry loop of the project: exponential backoff with full jitter, bounded in attempts
 * and time. Only errors marked retriable (network, 429, 5xx) are retried; everything else,
 * including programmer errors, fails at once.
 */
export async function withRetry<T>(fn: () => Promise<T>, options: RetryOptions): Promise<T> {
  const policy = { ...defaultRetryPolicy, ...options.policy };
  const { signal, logger, operation } = options;
  try {
    return await pRetry(
      async () => {
        if (signal?.aborted) throw new AbortedError(`${operation} aborted`);
        return fn();
      },
      {
        retries: policy.retries,
        minTimeout: policy.minTimeoutMs,
        maxTimeout: policy.maxTimeoutMs,
        maxRetryTime: policy.maxRetryTimeMs,
        randomize: true,
        signal,
        shouldRetry: ({ error }) => isRetriable(error),
        onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
          if (isRetriable(error) && retriesLeft > 0) {
            logger?.warn(
              { operation, attempt: attemptNumber, retriesLeft, err: error },
              "attempt failed, retrying",
            );
          }
        },
      },
    );
  } catch (err) {
    if (signal?.aborted && !(err instanceof AbortedError)) {
      throw new AbortedError(`${operation} aborted`, { cause: err });
    }
    throw err;
  }
}

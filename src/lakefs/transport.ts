import type { Readable } from "node:stream";
import type { Logger } from "pino";
import { Agent, request } from "undici";
import type { Dispatcher } from "undici";
import {
  LakefsAuthError,
  LakefsHttpError,
  LakefsNotFoundError,
  LakefsUnreachableError,
  errorMessage,
} from "../errors.ts";
import { withRetry } from "../retry.ts";
import type { RetryPolicy } from "../retry.ts";
import type { Page } from "./types.ts";

export type NotFoundKind = LakefsNotFoundError["what"];

export interface LakefsClientOptions {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  logger?: Logger | undefined;
  retry?: Partial<RetryPolicy> | undefined;
  /** Keep-alive connections per origin. */
  connections?: number | undefined;
  /** Entries per page of every list call; lakeFS caps it at 1000. */
  pageSize?: number | undefined;
  /** Time to open a connection. */
  connectTimeoutMs?: number | undefined;
  /** Time from sending a request to its response headers (a diff page can take a while). */
  headersTimeoutMs?: number | undefined;
  /** Longest silence between two chunks of a response body. */
  bodyTimeoutMs?: number | undefined;
}

export const defaultLakefsTimeouts = {
  connectTimeoutMs: 5_000,
  headersTimeoutMs: 60_000,
  bodyTimeoutMs: 60_000,
};

export interface CallOptions {
  method?: Dispatcher.HttpMethod;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  rawBody?: Buffer | Readable;
  headers?: Record<string, string>;
  notFound?: NotFoundKind;
  signal?: AbortSignal | undefined;
  /** Writes are not idempotent in general: only reads retry. */
  retry?: boolean;
}

/** lakeFS's API root. The S3 gateway answers on the same address under other paths. */
const API_PREFIX = "/api/v1";

/**
 * HTTP to lakeFS's API: one keep-alive connection pool, Basic auth, retries for reads, paging,
 * and lakeFS's error answers turned into coded errors.
 */
export class LakefsTransport {
  readonly endpoint: string;
  readonly #auth: string;
  readonly #agent: Agent;
  readonly #logger: Logger | undefined;
  readonly #retry: Partial<RetryPolicy> | undefined;
  readonly #pageSize: number;

  constructor(options: LakefsClientOptions) {
    this.endpoint = options.endpoint.replace(/\/+$/, "").replace(/\/api\/v1$/, "");
    this.#auth =
      "Basic " +
      Buffer.from(`${options.accessKeyId}:${options.secretAccessKey}`).toString("base64");
    this.#agent = new Agent({
      keepAliveTimeout: 30_000,
      connections: options.connections ?? 64,
      connectTimeout: options.connectTimeoutMs ?? defaultLakefsTimeouts.connectTimeoutMs,
      headersTimeout: options.headersTimeoutMs ?? defaultLakefsTimeouts.headersTimeoutMs,
      bodyTimeout: options.bodyTimeoutMs ?? defaultLakefsTimeouts.bodyTimeoutMs,
    });
    this.#logger = options.logger;
    this.#retry = options.retry;
    this.#pageSize = Math.min(options.pageSize ?? 1000, 1000);
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  async *pages<T>(path: string, options: CallOptions): AsyncGenerator<T[]> {
    let after = "";
    for (;;) {
      const page = await this.json<Page<T>>(path, {
        ...options,
        query: { ...options.query, amount: this.#pageSize, after: after || undefined },
      });
      yield page.results;
      if (!page.pagination.has_more) return;
      after = page.pagination.next_offset;
    }
  }

  /** A JSON answer. Reading the body is part of the attempt: a cut body is retried like a reset. */
  json<T>(path: string, options: CallOptions): Promise<T> {
    return this.call(path, options, async (res) => {
      try {
        return (await res.body.json()) as T;
      } catch (err) {
        if (options.signal?.aborted) throw err;
        throw new LakefsUnreachableError(
          `lakeFS at ${this.endpoint} broke off its answer (${options.method ?? "GET"} ${API_PREFIX}${path}): ${errorMessage(err)}`,
          { cause: err },
        );
      }
    });
  }

  call(path: string, options: CallOptions): Promise<Dispatcher.ResponseData>;
  call<T>(
    path: string,
    options: CallOptions,
    read: (res: Dispatcher.ResponseData) => Promise<T>,
  ): Promise<T>;
  async call<T>(
    path: string,
    options: CallOptions,
    read?: (res: Dispatcher.ResponseData) => Promise<T>,
  ): Promise<T | Dispatcher.ResponseData> {
    const method = options.method ?? "GET";
    const url = new URL(this.endpoint + API_PREFIX + path);
    for (const [k, v] of Object.entries(options.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    const what = `${method} ${API_PREFIX}${path}`;
    const once = async (): Promise<T | Dispatcher.ResponseData> => {
      const headers: Record<string, string> = { authorization: this.#auth, ...options.headers };
      let body: string | Buffer | Readable | undefined;
      if (options.body !== undefined) {
        headers["content-type"] = "application/json";
        body = JSON.stringify(options.body);
      } else {
        body = options.rawBody;
      }
      let res: Dispatcher.ResponseData;
      try {
        res = await request(url, {
          method,
          headers,
          body,
          dispatcher: this.#agent,
          signal: options.signal,
        });
      } catch (err) {
        if (options.signal?.aborted) throw err;
        throw new LakefsUnreachableError(
          `lakeFS at ${this.endpoint} unreachable (${what}): ${errorMessage(err)}`,
          { cause: err },
        );
      }
      if (res.statusCode >= 300) throw await this.#httpError(res, what, options.notFound);
      return read ? read(res) : res;
    };
    if (options.retry === false || method !== "GET") return once();
    return withRetry(once, {
      operation: what,
      logger: this.#logger,
      signal: options.signal,
      ...(this.#retry ? { policy: this.#retry } : {}),
    });
  }

  async #httpError(
    res: Dispatcher.ResponseData,
    what: string,
    notFound?: NotFoundKind,
  ): Promise<Error> {
    let reason = "";
    try {
      const text = await res.body.text();
      try {
        reason = (JSON.parse(text) as { message?: string }).message ?? text;
      } catch {
        reason = text;
      }
    } catch {
      // The body is only there to enrich the message.
    }
    const detail = `${what}: ${res.statusCode}${reason ? ` ${reason.trim()}` : ""}`;
    switch (res.statusCode) {
      case 401:
      case 403:
        return new LakefsAuthError(`lakeFS rejected the credentials (${detail})`);
      case 404:
        return new LakefsNotFoundError(
          `${notFound ?? "resource"} not found (${detail})`,
          notFound ?? "resource",
        );
      default:
        return new LakefsHttpError(`lakeFS request failed (${detail})`, res.statusCode);
    }
  }
}

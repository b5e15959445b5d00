import type { IncomingHttpHeaders } from "node:http";
import { PassThrough } from "node:stream";
import type { Readable } from "node:stream";
import type { Logger } from "pino";
import { Agent, request } from "undici";
import type { Dispatcher } from "undici";
import {
  LakefsAuthError,
  LakefsHttpError,
  LakefsNotFoundError,
  LakefsUnreachableError,
  SourceReadError,
  errorMessage,
} from "../errors.ts";
import { escalation, requestTimeout } from "../http/deadlines.ts";
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
  /**
   * Time from a read (GET) being sent to its answer's headers. Reads are retried, and lakeFS
   * answers them at once (a stat, a page of a listing or a diff), so a short deadline retries a
   * stalled one within seconds; it doubles with each attempt (see src/http/deadlines.ts).
   */
  firstByteTimeoutMs?: number | undefined;
  /**
   * Time from a write (a commit, an upload, an import) being sent to its answer's headers.
   * Writes are never retried and lakeFS may work long on them before it answers.
   */
  headersTimeoutMs?: number | undefined;
  /** Longest a response body may stop moving while it is read (a progress timeout). */
  bodyTimeoutMs?: number | undefined;
}

export const defaultLakefsTimeouts = {
  connectTimeoutMs: 5_000,
  firstByteTimeoutMs: 2_000,
  headersTimeoutMs: 60_000,
  bodyTimeoutMs: 10_000,
};

export interface CallOptions {
  method?: Dispatcher.HttpMethod;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  rawBody?: Buffer | Readable;
  headers?: Record<string, string>;
  notFound?: NotFoundKind;
  signal?: AbortSignal | undefined;
  /**
   * Writes are not idempotent in general: only reads retry, unless a write says it may (one
   * whose repeat leaves the same state, with a body that can be sent again).
   */
  retry?: boolean;
}

/** A byte range [start, end) of an object. */
export interface ByteSpan {
  start: number;
  end: number;
}

/** The HTTP Range header of [start, end): `bytes=start-(end-1)`, both ends inclusive. */
export function rangeHeader(range: ByteSpan): { range: string } {
  return { range: `bytes=${range.start}-${range.end - 1}` };
}

/** A header that came once, as a string; undefined when absent. */
export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return typeof v === "string" ? v : undefined;
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
  readonly #timeouts: typeof defaultLakefsTimeouts;

  constructor(options: LakefsClientOptions) {
    this.endpoint = options.endpoint.replace(/\/+$/, "").replace(/\/api\/v1$/, "");
    this.#auth =
      "Basic " +
      Buffer.from(`${options.accessKeyId}:${options.secretAccessKey}`).toString("base64");
    const t = {
      connectTimeoutMs: options.connectTimeoutMs ?? defaultLakefsTimeouts.connectTimeoutMs,
      firstByteTimeoutMs: options.firstByteTimeoutMs ?? defaultLakefsTimeouts.firstByteTimeoutMs,
      headersTimeoutMs: options.headersTimeoutMs ?? defaultLakefsTimeouts.headersTimeoutMs,
      bodyTimeoutMs: options.bodyTimeoutMs ?? defaultLakefsTimeouts.bodyTimeoutMs,
    };
    this.#timeouts = t;
    // undici starts a request's headers timeout once the request is on a socket and restarts
    // it when the body has been sent, so time queued for a connection never counts; its body
    // timeout is a progress timeout that does not run while the reader applies backpressure.
    this.#agent = new Agent({
      keepAliveTimeout: 30_000,
      connections: options.connections ?? 64,
      connectTimeout: t.connectTimeoutMs,
      headersTimeout: t.headersTimeoutMs,
      bodyTimeout: t.bodyTimeoutMs,
    });
    this.#logger = options.logger;
    this.#retry = options.retry;
    this.#pageSize = Math.min(options.pageSize ?? 1000, 1000);
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  /** Every page of a listing, from the first path after `options.after` (default: the first). */
  async *pages<T>(path: string, options: CallOptions & { after?: string }): AsyncGenerator<T[]> {
    let after = options.after ?? "";
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
        throw this.#bodyFailure(err, `${options.method ?? "GET"} ${API_PREFIX}${path}`);
      }
    });
  }

  /**
   * A streamed answer (an object's bytes). A body that fails while it is read fails with a
   * coded error too: a RequestTimeoutError when it stopped moving, else LakefsUnreachableError.
   */
  async stream(
    path: string,
    options: CallOptions,
  ): Promise<{ body: Readable; headers: IncomingHttpHeaders }> {
    const res = await this.call(path, options);
    const what = `${options.method ?? "GET"} ${API_PREFIX}${path}`;
    const body = new PassThrough();
    res.body.once("error", (err) =>
      body.destroy(options.signal?.aborted ? err : this.#bodyFailure(err, what)),
    );
    // A reader that lets go of the bytes early closes the connection under them.
    body.once("close", () => {
      if (!res.body.readableEnded) res.body.destroy();
    });
    res.body.pipe(body);
    return { body, headers: res.headers };
  }

  /**
   * GET of a pre-signed URL lakeFS handed out (its store, not lakeFS: no credentials are sent),
   * with the same connection pool and deadlines as lakeFS's reads; `range` is [start, end).
   * Answers with its status, headers and body; a failure to connect or a stalled answer is a
   * retriable SourceReadError. Messages name the URL without its query (the signature).
   */
  async presignedGet(
    url: string,
    range: ByteSpan | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Dispatcher.ResponseData> {
    const shown = url.split("?")[0]!;
    try {
      return await request(url, {
        method: "GET",
        headers: range ? rangeHeader(range) : {},
        dispatcher: this.#agent,
        signal,
        headersTimeout: this.#timeouts.firstByteTimeoutMs,
        bodyTimeout: this.#timeouts.bodyTimeoutMs,
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new SourceReadError(
        `pre-signed read of ${shown} failed: ${errorMessage(err)}`,
        undefined,
        { cause: err },
      );
    }
  }

  #bodyFailure(err: unknown, what: string): Error {
    if ((err as { code?: unknown }).code === "UND_ERR_BODY_TIMEOUT")
      return requestTimeout(`lakeFS ${what}`, "response body", this.#timeouts.bodyTimeoutMs, err);
    return new LakefsUnreachableError(
      `lakeFS at ${this.endpoint} broke off its answer (${what}): ${errorMessage(err)}`,
      { cause: err },
    );
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
    const t = this.#timeouts;
    let attempt = 0;
    const once = async (): Promise<T | Dispatcher.ResponseData> => {
      attempt++;
      const headersTimeout =
        method === "GET" ? t.firstByteTimeoutMs * escalation(attempt) : t.headersTimeoutMs;
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
          headersTimeout,
          bodyTimeout: t.bodyTimeoutMs,
        });
      } catch (err) {
        if (options.signal?.aborted) throw err;
        const code = (err as { code?: unknown }).code;
        if (code === "UND_ERR_HEADERS_TIMEOUT")
          throw requestTimeout(`lakeFS ${what}`, "first byte", headersTimeout, err);
        if (code === "UND_ERR_CONNECT_TIMEOUT")
          throw requestTimeout(`lakeFS ${what}`, "connection", t.connectTimeoutMs, err);
        throw new LakefsUnreachableError(
          `lakeFS at ${this.endpoint} unreachable (${what}): ${errorMessage(err)}`,
          { cause: err },
        );
      }
      if (res.statusCode >= 300) throw await this.#httpError(res, what, options.notFound);
      return read ? read(res) : res;
    };
    const repeatable = options.rawBody === undefined || Buffer.isBuffer(options.rawBody);
    if (!(options.retry ?? method === "GET") || !repeatable) return once();
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
      case 410:
        // A commit whose data is gone (its repository deleted and created again under the name,
        // its storage namespace emptied): for reading its tree or a diff from it, it is gone. An
        // object's 410 stays an error: the commit still has the path, only its bytes are lost.
        if (notFound === "ref" || notFound === "commit")
          return new LakefsNotFoundError(`${notFound} gone (${detail})`, notFound);
        return new LakefsHttpError(`lakeFS request failed (${detail})`, res.statusCode);
      default:
        return new LakefsHttpError(`lakeFS request failed (${detail})`, res.statusCode);
    }
  }
}

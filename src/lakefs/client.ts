import type { Readable } from "node:stream";
import type { Logger } from "pino";
import { Agent, request } from "undici";
import type { Dispatcher } from "undici";
import {
  LakefsAuthError,
  LakefsHttpError,
  LakefsNotFoundError,
  LakefsUnreachableError,
  SourceObjectError,
  errorMessage,
} from "../errors.ts";
import { withRetry } from "../retry.ts";
import type { RetryPolicy } from "../retry.ts";
import type {
  Commit,
  CommitCreation,
  DiffEntry,
  ObjectStats,
  Page,
  Ref,
  Repository,
} from "./types.ts";

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
}

type NotFoundKind = LakefsNotFoundError["what"];

interface CallOptions {
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

export interface ObjectBody {
  body: Readable;
  contentLength: number | undefined;
}

/** lakeFS's API root. The S3 gateway answers on the same address under other paths. */
const API_PREFIX = "/api/v1";

const seg = encodeURIComponent;

/**
 * A small typed client over lakeFS's REST API with HTTP keep-alive and Basic auth. Every list
 * call pages with `after`/`next_offset`; reads retry on 429, 5xx and network errors. Object
 * reads take commit IDs: a branch name would include uncommitted (staged) data.
 */
export class LakefsClient {
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
    this.#agent = new Agent({ keepAliveTimeout: 30_000, connections: options.connections ?? 64 });
    this.#logger = options.logger;
    this.#retry = options.retry;
    this.#pageSize = Math.min(options.pageSize ?? 1000, 1000);
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  /** 204 without credentials when lakeFS is up. */
  async healthcheck(signal?: AbortSignal): Promise<void> {
    await this.#call("/healthcheck", { signal });
  }

  getRepository(repo: string, signal?: AbortSignal): Promise<Repository> {
    return this.#json(`/repositories/${seg(repo)}`, { notFound: "repository", signal });
  }

  getBranch(repo: string, branch: string, signal?: AbortSignal): Promise<Ref> {
    return this.#json(`/repositories/${seg(repo)}/branches/${seg(branch)}`, {
      notFound: "branch",
      signal,
    });
  }

  /** Branches of a repository, a page at a time. */
  listBranches(repo: string, signal?: AbortSignal): AsyncGenerator<Ref[]> {
    return this.#pages<Ref>(`/repositories/${seg(repo)}/branches`, {
      notFound: "repository",
      signal,
    });
  }

  getCommit(repo: string, commitId: string, signal?: AbortSignal): Promise<Commit> {
    return this.#json(`/repositories/${seg(repo)}/commits/${seg(commitId)}`, {
      notFound: "commit",
      signal,
    });
  }

  /** Commits reachable from `ref`, newest first, one page per iteration. */
  logCommits(repo: string, ref: string, signal?: AbortSignal): AsyncGenerator<Commit[]> {
    return this.#pages<Commit>(`/repositories/${seg(repo)}/refs/${seg(ref)}/commits`, {
      notFound: "ref",
      signal,
    });
  }

  /**
   * The two-dot diff `left..right`: what changed from `left` to `right` directly. The API's
   * default three-dot diff compares against the merge base, which is wrong for an export; a
   * delimiter would fold changes into prefixes, so none is passed.
   */
  diff(
    repo: string,
    left: string,
    right: string,
    signal?: AbortSignal,
  ): AsyncGenerator<DiffEntry[]> {
    return this.#pages<DiffEntry>(
      `/repositories/${seg(repo)}/refs/${seg(left)}/diff/${seg(right)}`,
      {
        query: { type: "two_dot" },
        notFound: "ref",
        signal,
      },
    );
  }

  /** Every object of `ref` under `prefix`, with physical address, size, content type and metadata. */
  listObjects(
    repo: string,
    ref: string,
    prefix = "",
    signal?: AbortSignal,
  ): AsyncGenerator<ObjectStats[]> {
    return this.#pages<ObjectStats>(`/repositories/${seg(repo)}/refs/${seg(ref)}/objects/ls`, {
      query: { prefix: prefix || undefined, user_metadata: true },
      notFound: "ref",
      signal,
    });
  }

  statObject(repo: string, ref: string, path: string, signal?: AbortSignal): Promise<ObjectStats> {
    return this.#json(`/repositories/${seg(repo)}/refs/${seg(ref)}/objects/stat`, {
      query: { path, user_metadata: true },
      notFound: "object",
      signal,
    });
  }

  /** Streams an object's bytes. A missing or expired object is a SourceObjectError. */
  async getObject(
    repo: string,
    ref: string,
    path: string,
    signal?: AbortSignal,
  ): Promise<ObjectBody> {
    try {
      const res = await this.#call(`/repositories/${seg(repo)}/refs/${seg(ref)}/objects`, {
        query: { path },
        notFound: "object",
        signal,
      });
      const len = res.headers["content-length"];
      return { body: res.body, contentLength: typeof len === "string" ? Number(len) : undefined };
    } catch (err) {
      if (
        err instanceof LakefsNotFoundError ||
        (err instanceof LakefsHttpError && err.status === 410)
      ) {
        throw new SourceObjectError(`cannot read ${path} at ${ref}: ${err.message}`, {
          cause: err,
        });
      }
      throw err;
    }
  }

  // --- writes: used by tests, the demo and the benchmark to shape repositories ----------------

  createRepository(
    name: string,
    storageNamespace: string,
    defaultBranch = "main",
  ): Promise<Repository> {
    return this.#json("/repositories", {
      method: "POST",
      body: { name, storage_namespace: storageNamespace, default_branch: defaultBranch },
    });
  }

  async deleteRepository(repo: string): Promise<void> {
    await this.#call(`/repositories/${seg(repo)}`, { method: "DELETE", notFound: "repository" });
  }

  async createBranch(repo: string, name: string, source: string): Promise<void> {
    await this.#call(`/repositories/${seg(repo)}/branches`, {
      method: "POST",
      body: { name, source },
      notFound: "ref",
    });
  }

  async deleteBranch(repo: string, branch: string): Promise<void> {
    await this.#call(`/repositories/${seg(repo)}/branches/${seg(branch)}`, {
      method: "DELETE",
      notFound: "branch",
    });
  }

  /** Uploads (stages) one object. User metadata travels as `X-Lakefs-Meta-*` headers. */
  uploadObject(
    repo: string,
    branch: string,
    path: string,
    content: Buffer | string,
    options: { contentType?: string; metadata?: Record<string, string> } = {},
  ): Promise<ObjectStats> {
    const headers: Record<string, string> = {
      "content-type": options.contentType ?? "application/octet-stream",
    };
    for (const [k, v] of Object.entries(options.metadata ?? {})) headers[`x-lakefs-meta-${k}`] = v;
    return this.#json(`/repositories/${seg(repo)}/branches/${seg(branch)}/objects`, {
      method: "POST",
      query: { path },
      rawBody: typeof content === "string" ? Buffer.from(content) : content,
      headers,
      notFound: "branch",
    });
  }

  async deleteObject(repo: string, branch: string, path: string): Promise<void> {
    await this.#call(`/repositories/${seg(repo)}/branches/${seg(branch)}/objects`, {
      method: "DELETE",
      query: { path },
      notFound: "object",
    });
  }

  commit(repo: string, branch: string, creation: CommitCreation): Promise<Commit> {
    return this.#json(`/repositories/${seg(repo)}/branches/${seg(branch)}/commits`, {
      method: "POST",
      body: creation,
      notFound: "branch",
    });
  }

  async merge(
    repo: string,
    source: string,
    destination: string,
    message?: string,
  ): Promise<string> {
    const res = await this.#json<{ reference: string }>(
      `/repositories/${seg(repo)}/refs/${seg(source)}/merge/${seg(destination)}`,
      { method: "POST", body: message ? { message } : {}, notFound: "ref" },
    );
    return res.reference;
  }

  async hardReset(repo: string, branch: string, ref: string): Promise<void> {
    await this.#call(`/repositories/${seg(repo)}/branches/${seg(branch)}/hard_reset`, {
      method: "PUT",
      query: { ref, force: false },
      notFound: "ref",
    });
  }

  // --- plumbing ---------------------------------------------------------------------------

  async *#pages<T>(path: string, options: CallOptions): AsyncGenerator<T[]> {
    let after = "";
    for (;;) {
      const page = await this.#json<Page<T>>(path, {
        ...options,
        query: { ...options.query, amount: this.#pageSize, after: after || undefined },
      });
      yield page.results;
      if (!page.pagination.has_more) return;
      after = page.pagination.next_offset;
    }
  }

  async #json<T>(path: string, options: CallOptions): Promise<T> {
    const res = await this.#call(path, options);
    return (await res.body.json()) as T;
  }

  async #call(path: string, options: CallOptions): Promise<Dispatcher.ResponseData> {
    const method = options.method ?? "GET";
    const url = new URL(this.endpoint + API_PREFIX + path);
    for (const [k, v] of Object.entries(options.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    const what = `${method} ${API_PREFIX}${path}`;
    const once = async (): Promise<Dispatcher.ResponseData> => {
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
          {
            cause: err,
          },
        );
      }
      if (res.statusCode < 300) return res;
      throw await this.#httpError(res, what, options.notFound);
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

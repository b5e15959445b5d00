import type { Readable } from "node:stream";
import { LakefsHttpError, LakefsNotFoundError, SourceObjectError } from "../errors.ts";
import { LakefsTransport, headerValue, rangeHeader } from "./transport.ts";
import type { ByteSpan, LakefsClientOptions } from "./transport.ts";
import type {
  Commit,
  CommitCreation,
  DiffEntry,
  ImportLocation,
  ImportStatus,
  ObjectStats,
  Page,
  Ref,
  Repository,
} from "./types.ts";

export type { LakefsClientOptions } from "./transport.ts";

export interface ObjectBody {
  body: Readable;
  contentLength: number | undefined;
  /** The answer's Content-Range (a ranged read's `bytes start-end/size`). */
  contentRange: string | undefined;
}

const seg = encodeURIComponent;

/**
 * A small typed client over lakeFS's REST API with HTTP keep-alive and Basic auth. Every list
 * call pages with `after`/`next_offset`; reads retry on 429, 5xx and network errors. Object
 * reads take commit IDs: a branch name would include uncommitted (staged) data.
 */
export class LakefsClient {
  readonly #http: LakefsTransport;

  constructor(options: LakefsClientOptions) {
    this.#http = new LakefsTransport(options);
  }

  get endpoint(): string {
    return this.#http.endpoint;
  }

  close(): Promise<void> {
    return this.#http.close();
  }

  /** 204 without credentials when lakeFS is up. */
  async healthcheck(signal?: AbortSignal): Promise<void> {
    await this.#http.call("/healthcheck", { signal });
  }

  getRepository(repo: string, signal?: AbortSignal): Promise<Repository> {
    return this.#http.json(`/repositories/${seg(repo)}`, { notFound: "repository", signal });
  }

  getBranch(repo: string, branch: string, signal?: AbortSignal): Promise<Ref> {
    return this.#http.json(`/repositories/${seg(repo)}/branches/${seg(branch)}`, {
      notFound: "branch",
      signal,
    });
  }

  /** Branches of a repository, a page at a time. */
  listBranches(repo: string, signal?: AbortSignal): AsyncGenerator<Ref[]> {
    return this.#http.pages<Ref>(`/repositories/${seg(repo)}/branches`, {
      notFound: "repository",
      signal,
    });
  }

  getCommit(repo: string, commitId: string, signal?: AbortSignal): Promise<Commit> {
    return this.#http.json(`/repositories/${seg(repo)}/commits/${seg(commitId)}`, {
      notFound: "commit",
      signal,
    });
  }

  /** Commits reachable from `ref`, newest first, one page per iteration. */
  logCommits(repo: string, ref: string, signal?: AbortSignal): AsyncGenerator<Commit[]> {
    return this.#http.pages<Commit>(`/repositories/${seg(repo)}/refs/${seg(ref)}/commits`, {
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
    after = "",
  ): AsyncGenerator<DiffEntry[]> {
    return this.#http.pages<DiffEntry>(
      `/repositories/${seg(repo)}/refs/${seg(left)}/diff/${seg(right)}`,
      {
        query: { type: "two_dot" },
        notFound: "ref",
        signal,
        after,
      },
    );
  }

  /**
   * Every object of `ref` under `prefix` (after `after`, when given), with physical address,
   * size, content type and metadata.
   */
  listObjects(
    repo: string,
    ref: string,
    prefix = "",
    signal?: AbortSignal,
    after = "",
  ): AsyncGenerator<ObjectStats[]> {
    return this.#http.pages<ObjectStats>(`/repositories/${seg(repo)}/refs/${seg(ref)}/objects/ls`, {
      query: { prefix: prefix || undefined, user_metadata: true },
      notFound: "ref",
      signal,
      after,
    });
  }

  /**
   * One level of `ref` under `prefix`, split at `delimiter`: objects directly below it and the
   * common prefixes of the rest, at most `amount` entries after `after`, with whether more
   * follow. For dividing a commit's key space without listing every object.
   */
  async listLevel(
    repo: string,
    ref: string,
    prefix: string,
    delimiter: string,
    amount: number,
    signal?: AbortSignal,
  ): Promise<{ results: ObjectStats[]; hasMore: boolean }> {
    const page = await this.#http.json<Page<ObjectStats>>(
      `/repositories/${seg(repo)}/refs/${seg(ref)}/objects/ls`,
      {
        query: { prefix: prefix || undefined, delimiter, amount },
        notFound: "ref",
        signal,
      },
    );
    return { results: page.results, hasMore: page.pagination.has_more };
  }

  /**
   * One page of `ref`'s objects: at most `amount` (≤ 1000) whose paths sort after `after`, with
   * whether more follow. For jumping through a listing rather than reading it whole.
   */
  async listObjectsAfter(
    repo: string,
    ref: string,
    after: string,
    amount: number,
    signal?: AbortSignal,
  ): Promise<{ results: ObjectStats[]; hasMore: boolean }> {
    const page = await this.#http.json<Page<ObjectStats>>(
      `/repositories/${seg(repo)}/refs/${seg(ref)}/objects/ls`,
      {
        query: { after: after || undefined, amount, user_metadata: true },
        notFound: "ref",
        signal,
      },
    );
    return { results: page.results, hasMore: page.pagination.has_more };
  }

  statObject(repo: string, ref: string, path: string, signal?: AbortSignal): Promise<ObjectStats> {
    return this.#http.json(`/repositories/${seg(repo)}/refs/${seg(ref)}/objects/stat`, {
      query: { path, user_metadata: true },
      notFound: "object",
      signal,
    });
  }

  /**
   * A pre-signed URL that reads the object straight from the repository's store (lakeFS's
   * `presign=true`), with when it expires (ms since the epoch); undefined when lakeFS does not
   * sign for that store (its blockstore cannot, or `disable_pre_signed` is set).
   */
  async presignedUrl(
    repo: string,
    ref: string,
    path: string,
    signal?: AbortSignal,
  ): Promise<{ url: string; expiresAt: number | undefined } | undefined> {
    let stats: ObjectStats;
    try {
      stats = await this.#http.json(`/repositories/${seg(repo)}/refs/${seg(ref)}/objects/stat`, {
        query: { path, presign: true },
        notFound: "object",
        signal,
      });
    } catch (err) {
      // lakeFS refuses presign=true with a 400 or 501 where it cannot sign.
      if (err instanceof LakefsHttpError && (err.status === 400 || err.status === 501))
        return undefined;
      throw err;
    }
    if (!/^https?:\/\//.test(stats.physical_address)) return undefined;
    const expiry = stats.physical_address_expiry;
    return {
      url: stats.physical_address,
      expiresAt: typeof expiry === "number" && expiry > 0 ? expiry * 1000 : undefined,
    };
  }

  /** GET of a pre-signed URL (see LakefsTransport.presignedGet); `range` is [start, end). */
  async presignedGet(
    url: string,
    range: ByteSpan | undefined,
    signal?: AbortSignal,
  ): Promise<{ status: number; body: Readable; contentRange: string | undefined }> {
    const res = await this.#http.presignedGet(url, range, signal);
    return {
      status: res.statusCode,
      body: res.body,
      contentRange: headerValue(res.headers, "content-range"),
    };
  }

  /**
   * Streams an object's bytes, or with `range` the bytes [start, end) of it (an HTTP Range
   * request, answered 206). A missing or expired object is a SourceObjectError.
   */
  async getObject(
    repo: string,
    ref: string,
    path: string,
    signal?: AbortSignal,
    range?: ByteSpan,
  ): Promise<ObjectBody> {
    try {
      const res = await this.#http.stream(`/repositories/${seg(repo)}/refs/${seg(ref)}/objects`, {
        query: { path },
        notFound: "object",
        signal,
        ...(range ? { headers: rangeHeader(range) } : {}),
      });
      const len = headerValue(res.headers, "content-length");
      return {
        body: res.body,
        contentLength: len !== undefined ? Number(len) : undefined,
        contentRange: headerValue(res.headers, "content-range"),
      };
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
    return this.#http.json("/repositories", {
      method: "POST",
      body: { name, storage_namespace: storageNamespace, default_branch: defaultBranch },
    });
  }

  async deleteRepository(repo: string): Promise<void> {
    await this.#http.call(`/repositories/${seg(repo)}`, {
      method: "DELETE",
      notFound: "repository",
    });
  }

  async createBranch(repo: string, name: string, source: string): Promise<void> {
    await this.#http.call(`/repositories/${seg(repo)}/branches`, {
      method: "POST",
      body: { name, source },
      notFound: "ref",
    });
  }

  async deleteBranch(repo: string, branch: string): Promise<void> {
    await this.#http.call(`/repositories/${seg(repo)}/branches/${seg(branch)}`, {
      method: "DELETE",
      notFound: "branch",
    });
  }

  /**
   * Uploads (stages) one object. User metadata travels as `X-Lakefs-Meta-*` headers. Staging the
   * same bytes at the same path twice leaves what once does, so a failed upload is tried again
   * (lakeFS answers 500 when its own write to the blockstore fails).
   */
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
    return this.#http.json(`/repositories/${seg(repo)}/branches/${seg(branch)}/objects`, {
      method: "POST",
      query: { path },
      rawBody: typeof content === "string" ? Buffer.from(content) : content,
      headers,
      notFound: "branch",
      retry: true,
    });
  }

  async deleteObject(repo: string, branch: string, path: string): Promise<void> {
    await this.#http.call(`/repositories/${seg(repo)}/branches/${seg(branch)}/objects`, {
      method: "DELETE",
      query: { path },
      notFound: "object",
    });
  }

  commit(repo: string, branch: string, creation: CommitCreation): Promise<Commit> {
    return this.#http.json(`/repositories/${seg(repo)}/branches/${seg(branch)}/commits`, {
      method: "POST",
      body: creation,
      notFound: "branch",
    });
  }

  /** Starts a lakeFS import (objects referenced where they are, committed once). Returns its ID. */
  async startImport(
    repo: string,
    branch: string,
    paths: ImportLocation[],
    commit: CommitCreation,
  ): Promise<string> {
    const res = await this.#http.json<{ id: string }>(
      `/repositories/${seg(repo)}/branches/${seg(branch)}/import`,
      { method: "POST", body: { paths, commit }, notFound: "branch" },
    );
    return res.id;
  }

  importStatus(repo: string, branch: string, id: string): Promise<ImportStatus> {
    return this.#http.json(`/repositories/${seg(repo)}/branches/${seg(branch)}/import`, {
      query: { id },
      // The branch, or the import ID: lakeFS answers 404 for either.
      notFound: "resource",
    });
  }

  async merge(
    repo: string,
    source: string,
    destination: string,
    message?: string,
  ): Promise<string> {
    const res = await this.#http.json<{ reference: string }>(
      `/repositories/${seg(repo)}/refs/${seg(source)}/merge/${seg(destination)}`,
      { method: "POST", body: message ? { message } : {}, notFound: "ref" },
    );
    return res.reference;
  }

  /** Reverts the changes of commit `ref` on `branch` with a new commit (lakeFS's revertBranch). */
  async revert(repo: string, branch: string, ref: string): Promise<void> {
    await this.#http.call(`/repositories/${seg(repo)}/branches/${seg(branch)}/revert`, {
      method: "POST",
      body: { ref, parent_number: 0 },
      notFound: "ref",
    });
  }

  async hardReset(repo: string, branch: string, ref: string): Promise<void> {
    await this.#http.call(`/repositories/${seg(repo)}/branches/${seg(branch)}/hard_reset`, {
      method: "PUT",
      query: { ref, force: false },
      notFound: "ref",
    });
  }
}

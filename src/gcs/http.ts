import type { Readable } from "node:stream";
import type { Storage } from "@google-cloud/storage";
import { Agent, request } from "undici";
import type { Dispatcher } from "undici";

/** A JSON API error answer, as Cloud Storage sends it: the HTTP status and the first reason. */
export class GcsAnswer extends Error {
  readonly status: number;
  /** `notFound`, `conditionNotMet`, `rateLimitExceeded`…; "" when the body named none. */
  readonly reason: string;
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.name = "GcsAnswer";
    this.status = status;
    this.reason = reason;
  }
}

export interface GcsResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable & { json(): Promise<unknown>; text(): Promise<string> };
}

export interface SendOptions {
  headers?: Record<string, string>;
  body?: string | Uint8Array | Readable;
  signal?: AbortSignal | undefined;
  /** Statuses that are answers rather than errors (a resumable chunk's 308). */
  accept?: readonly number[];
}

/**
 * The JSON API requests the client library does not make the way an export needs them:
 * uploads whose every chunk passes the fence, media reads that answer 404 before a stream
 * exists, rewrites whose calls pass the fence one by one. Same endpoint and credentials as the
 * library's client (its `authClient`); a custom endpoint (fake-gcs-server) gets no credentials
 * unless told to, as the library does.
 */
export class GcsHttp {
  /** `https://storage.googleapis.com`, or the custom endpoint, without a trailing slash. */
  readonly endpoint: string;
  readonly #storage: Storage;
  readonly #auth: boolean;
  readonly #agent: Agent;

  constructor(storage: Storage, endpoint: string, auth: boolean, connections: number) {
    this.#storage = storage;
    this.endpoint = endpoint.replace(/\/+$/, "");
    this.#auth = auth;
    this.#agent = new Agent({ connections, keepAliveTimeout: 10_000 });
  }

  objectUrl(bucket: string, name: string, query: Record<string, string> = {}): string {
    return this.#url(`/storage/v1/b/${enc(bucket)}/o/${enc(name)}`, query);
  }

  uploadUrl(bucket: string, query: Record<string, string>): string {
    return this.#url(`/upload/storage/v1/b/${enc(bucket)}/o`, query);
  }

  rewriteUrl(
    from: { bucket: string; key: string },
    to: { bucket: string; key: string },
    query: Record<string, string>,
  ): string {
    const path =
      `/storage/v1/b/${enc(from.bucket)}/o/${enc(from.key)}` +
      `/rewriteTo/b/${enc(to.bucket)}/o/${enc(to.key)}`;
    return this.#url(path, query);
  }

  /** Sends one request; an error status (one not in `accept`) throws GcsAnswer. */
  async send(
    method: Dispatcher.HttpMethod,
    url: string,
    o: SendOptions = {},
  ): Promise<GcsResponse> {
    const res = await request(url, {
      method,
      dispatcher: this.#agent,
      headers: { ...(await this.#authHeaders()), ...o.headers },
      body: o.body ?? null,
      signal: o.signal ?? null,
    });
    const status = res.statusCode;
    if (status < 400 && (status < 300 || (o.accept ?? []).includes(status)))
      return { status, headers: res.headers, body: res.body };
    throw answerOf(status, await res.body.text().catch(() => ""));
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  #url(path: string, query: Record<string, string>): string {
    const qs = new URLSearchParams(query).toString();
    return `${this.endpoint}${path}${qs ? `?${qs}` : ""}`;
  }

  async #authHeaders(): Promise<Record<string, string>> {
    if (!this.#auth) return {};
    const headers = await this.#storage.authClient.getRequestHeaders();
    return Object.fromEntries(headers.entries());
  }
}

/** `/` and every other reserved character percent-encoded: object names are one path segment. */
function enc(s: string): string {
  return encodeURIComponent(s);
}

function answerOf(status: number, text: string): GcsAnswer {
  try {
    const body = JSON.parse(text) as {
      error?: { message?: string; errors?: { reason?: string }[] };
    };
    const reason = body.error?.errors?.[0]?.reason ?? "";
    return new GcsAnswer(status, reason, body.error?.message || `HTTP ${status}`);
  } catch {
    return new GcsAnswer(status, "", text.slice(0, 200) || `HTTP ${status}`);
  }
}

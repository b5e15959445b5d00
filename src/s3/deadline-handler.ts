import { request as httpRequest } from "node:http";
import type { Agent as HttpAgent, ClientRequest, IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Agent as HttpsAgent } from "node:https";
import type { HttpHandlerOptions, HttpRequest, HttpResponse } from "@smithy/types";
import { assertDeadlines, firstByteDeadline, requestTimeout } from "../http/deadlines.ts";
import type { Deadlines, Work } from "../http/deadlines.ts";
import {
  ProgressTimedBody,
  bodyLength,
  currentWriteFence,
  writeRequestBody,
} from "../http/timed-streams.ts";
import type { RequestBody } from "../http/timed-streams.ts";
import { S3_LIMITS } from "./limits.ts";

/** Per-request options a caller may pass to `S3Client.send`, besides the abort signal. */
export interface S3RequestOptions extends HttpHandlerOptions {
  /**
   * Bytes a CopyObject copies, which its request does not say. Without it the deadline allows
   * for the largest CopyObject S3 takes (5 GiB).
   */
  copyBytes?: number | undefined;
}

/** `S3Client.send` options for a CopyObject of `bytes` bytes. */
export function copyRequestOptions(bytes: number, signal?: AbortSignal): S3RequestOptions {
  return { copyBytes: bytes, ...(signal ? { abortSignal: signal } : {}) };
}

export interface DeadlineHandlerOptions {
  httpAgent: HttpAgent;
  httpsAgent: HttpsAgent;
  connectTimeoutMs: number;
  deadlines: Deadlines;
}

/** How long a request that announces `Expect: 100-continue` waits for the go-ahead. */
const CONTINUE_WAIT_MS = 1_000;

/** What the server does before it answers, read from the request as the SDK built it. */
export interface Plan {
  work: Work;
  /**
   * The server works while it answers: Amazon S3 may send a 200 header at once for CopyObject,
   * UploadPartCopy and CompleteMultipartUpload, then whitespace while it works, and the result
   * (or an error) at the end (their API reference). MinIO answers only once done. Either way
   * the whole answer, not only its first byte, gets the work's deadline, and silences inside
   * it are not cut early.
   */
  workInAnswer: boolean;
}

function count(text: RequestBody, tag: string): number {
  if (typeof text !== "string") return 0;
  let n = 0;
  for (let i = text.indexOf(tag); i !== -1; i = text.indexOf(tag, i + tag.length)) n++;
  return n;
}

export function requestPlan(request: HttpRequest, copyBytes: number | undefined): Plan {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(request.headers)) headers[k.toLowerCase()] = v;
  const query = request.query ?? {};
  const method = request.method.toUpperCase();
  const body = request.body as RequestBody;
  if (method === "PUT" && headers["x-amz-copy-source"] !== undefined) {
    const range = /^bytes=(\d+)-(\d+)$/.exec(headers["x-amz-copy-source-range"] ?? "");
    const bytes = range
      ? Number(range[2]) - Number(range[1]) + 1
      : (copyBytes ?? S3_LIMITS.maxPartBytes);
    return { work: { bytes }, workInAnswer: true };
  }
  if (method === "POST" && "uploadId" in query)
    return { work: { entries: count(body, "<Part>") }, workInAnswer: true };
  if (method === "POST" && "delete" in query)
    return { work: { entries: count(body, "<Object>") }, workInAnswer: true };
  // An upload: the server stores its tail after the last byte arrives.
  const bytes = bodyLength(body) ?? Number(headers["content-length"] ?? 0);
  return { work: { bytes: Number.isFinite(bytes) ? bytes : 0 }, workInAnswer: false };
}

/** The SDK's standard retry strategy numbers its attempts in this header (`attempt=2; max=3`). */
function attemptOf(request: HttpRequest): number {
  const m = /attempt=(\d+)/.exec(request.headers["amz-sdk-request"] ?? "");
  return m ? Number(m[1]) : 1;
}

function queryString(query: HttpRequest["query"]): string {
  const esc = (s: string) =>
    encodeURIComponent(s).replace(
      /[!'()*]/g,
      (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
    );
  const parts: string[] = [];
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value === null || value === undefined) parts.push(esc(key));
    else
      for (const v of Array.isArray(value) ? value : [value]) parts.push(`${esc(key)}=${esc(v)}`);
  }
  return parts.join("&");
}

function flatHeaders(res: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers)) {
    if (v !== undefined) out[k] = Array.isArray(v) ? v.join(",") : v;
  }
  return out;
}

/** The AWS SDK's retry strategy retries errors that carry this trait (and never AbortError). */
function sdkRetriable<E extends Error>(err: E): E {
  return Object.assign(err, { $retryable: {}, $metadata: {} });
}

function abortError(signal: AbortSignal | undefined): Error {
  const err = new Error("Request aborted", { cause: signal?.reason });
  err.name = "AbortError";
  return err;
}

/**
 * The S3 client's HTTP handler (in place of the SDK's NodeHttpHandler, whose one socket
 * timeout covers every phase of every request alike): node:http with keep-alive agents, and
 * deadlines that fit each request (see src/http/deadlines.ts). The clocks start only once a
 * socket is connected, so a request queued for a socket is never cut for waiting in line; a
 * cut request fails with a RequestTimeoutError that the SDK's retry strategy retries, on a new
 * connection.
 */
export class DeadlineHttpHandler {
  readonly metadata = { handlerProtocol: "http/1.1" };
  readonly #o: DeadlineHandlerOptions;

  constructor(options: DeadlineHandlerOptions) {
    assertDeadlines(options.deadlines, "deadlines");
    this.#o = options;
  }

  destroy(): void {
    this.#o.httpAgent.destroy();
    this.#o.httpsAgent.destroy();
  }

  /** The SDK calls this for settings of its own handler; this one has none to change. */
  updateHttpClientConfig(): void {}

  httpHandlerConfigs(): Record<string, never> {
    return {};
  }

  handle(
    request: HttpRequest,
    options: S3RequestOptions = {},
  ): Promise<{ response: HttpResponse }> {
    const signal = options.abortSignal as AbortSignal | undefined;
    const fence = currentWriteFence();
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const { deadlines, connectTimeoutMs } = this.#o;
    const plan = requestPlan(request, options.copyBytes);
    const firstByteMs = firstByteDeadline(deadlines, plan.work, attemptOf(request));
    const tls = request.protocol === "https:";
    const qs = queryString(request.query);
    const path = `${request.path}${qs ? `?${qs}` : ""}`;
    const what = `${request.method} ${path}`;
    const timeout = (waitingFor: Parameters<typeof requestTimeout>[1], ms: number) =>
      sdkRetriable(requestTimeout(`S3 request ${what}`, waitingFor, ms));
    const hostname =
      request.hostname.startsWith("[") && request.hostname.endsWith("]")
        ? request.hostname.slice(1, -1)
        : request.hostname;

    return new Promise((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const arm = (ms: number, err: () => Error) => {
        clearTimeout(timer);
        timer = setTimeout(() => req.destroy(err()), ms).unref();
      };
      const fail = (err: Error) => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        reject(err);
      };
      const req: ClientRequest = (tls ? httpsRequest : httpRequest)({
        host: hostname,
        port: request.port,
        method: request.method,
        path,
        headers: request.headers,
        agent: tls ? this.#o.httpsAgent : this.#o.httpAgent,
        ...(request.username != null || request.password != null
          ? { auth: `${request.username ?? ""}:${request.password ?? ""}` }
          : {}),
      });
      req.on("error", fail);
      const onAbort = () => {
        const err = abortError(signal);
        fail(err);
        req.destroy(err);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      req.once("close", () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      });

      const sendBody = () => {
        const body = request.body as RequestBody;
        const write = () =>
          writeRequestBody(req, body, deadlines.idleMs, (ms) => timeout("request body", ms), fence);
        const expect = request.headers.Expect ?? request.headers.expect;
        if (expect !== "100-continue" || !body) {
          write();
          return;
        }
        // RFC 9110 §10.1.1: a client need not wait for 100 (Continue) indefinitely.
        let sent = false;
        const go = () => {
          if (sent) return;
          sent = true;
          clearTimeout(wait);
          write();
        };
        const wait = setTimeout(go, CONTINUE_WAIT_MS).unref();
        req.once("continue", go);
        req.once("response", () => {
          sent = true;
          clearTimeout(wait);
        });
      };
      req.once("socket", (socket) => {
        if (!socket.connecting) {
          sendBody();
          return;
        }
        arm(connectTimeoutMs, () => timeout("connection", connectTimeoutMs));
        socket.once(tls ? "secureConnect" : "connect", () => {
          clearTimeout(timer);
          sendBody();
        });
      });
      // The whole request is on the socket: the server's turn.
      const sentAt = { ms: 0 };
      req.once("finish", () => {
        sentAt.ms = Date.now();
        arm(firstByteMs, () => timeout("first byte", firstByteMs));
      });
      req.once("response", (res: IncomingMessage) => {
        clearTimeout(timer);
        if (settled) {
          res.destroy();
          return;
        }
        settled = true;
        const body = new ProgressTimedBody(
          res,
          plan.workInAnswer
            ? {
                // The work's deadline covers the whole answer; a result that arrives just
                // before it still gets an idle period to be read.
                endBy: Math.max(
                  (sentAt.ms || Date.now()) + firstByteMs,
                  Date.now() + deadlines.idleMs,
                ),
                onTimeout: (ms) => timeout("response body", ms),
              }
            : { idleMs: deadlines.idleMs, onTimeout: (ms) => timeout("response body", ms) },
        );
        resolve({
          response: {
            statusCode: res.statusCode ?? -1,
            reason: res.statusMessage,
            headers: flatHeaders(res),
            body,
          },
        });
      });
    });
  }
}

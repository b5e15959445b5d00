import type { S3Client } from "@aws-sdk/client-s3";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { SignatureV4 } from "@smithy/signature-v4";
import type { HttpRequest as SmithyRequest } from "@smithy/types";
import { Agent } from "undici";
import type { Dispatcher } from "undici";
import {
  assertDeadlines,
  defaultDeadlines,
  firstByteDeadline,
  requestTimeout,
} from "../http/deadlines.ts";
import type { Deadlines, Work } from "../http/deadlines.ts";
import { withRetry } from "../retry.ts";
import { S3_LIMITS } from "./limits.ts";
import { S3Answer, toDestinationError } from "./s3-error.ts";

/** SHA-256 of an empty body, the payload hash of a request without one. */
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const PROBE_KEY = "lakefs-mirror-endpoint-probe";

/** Where requests for one bucket go and how they are signed, as the SDK itself resolved it. */
interface BucketRoute {
  origin: string;
  /** The path before the URL-encoded key: `/bucket/` path-style, `/` virtual-hosted. */
  keyPath: string;
  hostname: string;
  signer: SignatureV4;
}

/** Thrown by the probe middleware to stop the SDK before it sends anything. */
type AuthScheme = { name?: string; signingRegion?: string; signingName?: string } | undefined;
class Resolved extends Error {
  readonly request: SmithyRequest;
  readonly scheme: AuthScheme;
  constructor(request: SmithyRequest, scheme: AuthScheme) {
    super("resolved");
    this.request = request;
    this.scheme = scheme;
  }
}

/** An S3 key as a URL path: every byte but `/` and unreserved characters percent-encoded. */
function encodeKey(key: string): string {
  return key
    .split("/")
    .map((s) =>
      encodeURIComponent(s).replace(
        /[!'()*]/g,
        (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
      ),
    )
    .join("/");
}

function xmlField(body: string, name: string): string | undefined {
  const m = new RegExp(`<${name}>([^<]*)</${name}>`).exec(body);
  return m?.[1];
}

export interface LeanOptions {
  connectTimeoutMs: number;
  /** The S3 client's request deadlines (see src/http/deadlines.ts). */
  deadlines?: Partial<Deadlines> | undefined;
  maxSockets: number;
}

/** What one lean request is and how its deadlines are set. */
interface LeanRequest {
  method: "PUT" | "HEAD";
  key: string;
  headers: Record<string, string>;
  /** What the server does before it answers; copies answer only once they have copied. */
  work?: Work | undefined;
}

/**
 * The two requests an export sends per object, CopyObject and HeadObject, without the SDK's
 * per-request machinery (a CPU profile of a 10,000-object export put about half of this
 * process's time in the SDK's middleware, endpoint rules, schema walks and signer set-up).
 *
 * Everything users configure stays the SDK's: for each bucket the client itself resolves the
 * endpoint, addressing style and signing region once (a probe command stopped before it is
 * sent); requests are signed by the SDK's SigV4 signer with the client's own credential
 * provider (so refreshes and roles behave the same); attempts follow the client's
 * `maxAttempts` with the standard strategy's exponential, jittered back-off; failures become
 * the same DestinationError, with S3's code and status, as the SDK path's. A bucket whose
 * route is not plain SigV4 on S3 (S3 Express, access-point ARNs) uses the SDK.
 */
export class LeanS3 {
  readonly #client: S3Client;
  readonly #agent: Agent;
  readonly #deadlines: Deadlines;
  readonly #connectTimeoutMs: number;
  readonly #routes = new Map<string, Promise<BucketRoute | undefined>>();

  constructor(client: S3Client, options: LeanOptions) {
    this.#client = client;
    this.#deadlines = { ...defaultDeadlines, ...options.deadlines };
    assertDeadlines(this.#deadlines, "deadlines");
    this.#connectTimeoutMs = options.connectTimeoutMs;
    // Each request sets its own headers and body timeouts (see #send); undici starts the
    // headers timeout once the request is on a socket, never while it waits for one.
    this.#agent = new Agent({
      connections: options.maxSockets,
      connect: { timeout: options.connectTimeoutMs },
      keepAliveTimeout: 4_000,
    });
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  /** The route for `bucket`, or undefined when its requests must go through the SDK. */
  route(bucket: string): Promise<BucketRoute | undefined> {
    let route = this.#routes.get(bucket);
    if (!route) {
      route = this.#resolve(bucket).catch((err: unknown) => {
        this.#routes.delete(bucket);
        throw err;
      });
      this.#routes.set(bucket, route);
    }
    return route;
  }

  async #resolve(bucket: string): Promise<BucketRoute | undefined> {
    const probe = new HeadObjectCommand({ Bucket: bucket, Key: PROBE_KEY });
    probe.middlewareStack.add(
      (_next, context) => (args) => {
        const endpoint = (context as { endpointV2?: { properties?: { authSchemes?: unknown[] } } })
          .endpointV2;
        const scheme = endpoint?.properties?.authSchemes?.[0] as AuthScheme;
        throw new Resolved(args.request as SmithyRequest, scheme);
      },
      { step: "build", priority: "low", name: "lakefsMirrorRouteProbe" },
    );
    let resolved: Resolved | undefined;
    try {
      await this.#client.send(probe);
    } catch (err) {
      if (!(err instanceof Resolved)) throw err;
      resolved = err;
    }
    const request = resolved?.request;
    const scheme = resolved?.scheme;
    if (!request || !request.path.endsWith(PROBE_KEY)) return undefined;
    if (scheme && (scheme.name !== "sigv4" || (scheme.signingName ?? "s3") !== "s3"))
      return undefined;
    const config = this.#client.config;
    const region = scheme?.signingRegion ?? (await config.region());
    const port = request.port ? `:${request.port}` : "";
    return {
      origin: `${request.protocol}//${request.hostname}${port}`,
      hostname: `${request.hostname}${port}`,
      keyPath: request.path.slice(0, -PROBE_KEY.length),
      signer: new SignatureV4({
        credentials: config.credentials,
        region,
        service: "s3",
        sha256: config.sha256,
        uriEscapePath: false,
      }),
    };
  }

  /**
   * CopyObject with the metadata replaced. Failures are DestinationErrors whose message starts
   * with `what`, as the SDK path's are.
   */
  async copyObject(
    what: string,
    route: BucketRoute,
    input: {
      copySource: string;
      key: string;
      contentType: string | undefined;
      metadata: Record<string, string>;
      /** The bytes copied: S3 copies them before it answers, so the deadline scales with them. */
      size?: number | undefined;
    },
    signal?: AbortSignal,
  ): Promise<void> {
    const headers: Record<string, string> = {
      "x-amz-copy-source": input.copySource,
      "x-amz-metadata-directive": "REPLACE",
    };
    if (input.contentType !== undefined) headers["content-type"] = input.contentType;
    for (const [name, value] of Object.entries(input.metadata))
      headers[`x-amz-meta-${name}`] = value;
    // Without a size, the deadline allows for the largest CopyObject S3 takes.
    const work = { bytes: input.size ?? S3_LIMITS.maxPartBytes };
    const req: LeanRequest = { method: "PUT", key: input.key, headers, work };
    await this.#send(what, route, req, signal, async (res) => {
      // CopyObject can answer 200 and still fail: the error is in the body.
      const body = await res.body.text();
      if (body.includes("<Error>")) throw this.#bodyError(body, 200);
    });
  }

  /** HeadObject: the object's size, ETag, Content-Type and user metadata; undefined when absent. */
  headObject(
    what: string,
    route: BucketRoute,
    key: string,
    signal?: AbortSignal,
  ): Promise<
    | {
        size: number;
        contentId: string;
        contentType: string | undefined;
        metadata: Record<string, string>;
      }
    | undefined
  > {
    return this.#send(
      what,
      route,
      { method: "HEAD", key, headers: {} },
      signal,
      async (res) => {
        // A HEAD answer has no body; consuming it returns the connection to the pool.
        await res.body.dump();
        const h = res.headers;
        const one = (name: string) => {
          const v = h[name];
          return Array.isArray(v) ? v[0] : v;
        };
        const metadata: Record<string, string> = {};
        for (const [name, value] of Object.entries(h)) {
          if (name.startsWith("x-amz-meta-") && value !== undefined)
            metadata[name.slice("x-amz-meta-".length)] = Array.isArray(value)
              ? value.join(",")
              : value;
        }
        return {
          size: Number(one("content-length") ?? 0),
          contentId: (one("etag") ?? "").replaceAll('"', ""),
          contentType: one("content-type"),
          metadata,
        };
      },
      true,
    );
  }

  async #send<T>(
    what: string,
    route: BucketRoute,
    lean: LeanRequest,
    signal: AbortSignal | undefined,
    onOk: (res: Dispatcher.ResponseData) => Promise<T>,
    notFoundIsUndefined = false,
  ): Promise<T> {
    const { method, key, headers: extra, work } = lean;
    const maxAttempts = await this.#client.config.maxAttempts();
    const path = route.keyPath + encodeKey(key);
    const d = this.#deadlines;
    let attempt = 0;
    // The project's retry loop with the client's attempt count and the standard strategy's
    // back-off (full jitter on 100 ms doubling, at most 20 s).
    return withRetry(
      async () => {
        attempt++;
        const firstByteMs = firstByteDeadline(d, work, attempt);
        // Amazon S3 may send a copy's 200 header at once, then whitespace while it copies and
        // the result at the end (CopyObject's API reference); MinIO answers when it is done.
        // So after its headers a copy's answer gets the copy's deadline again, as a whole, and
        // its silences are not cut before that.
        const bodyMs = work ? Math.max(firstByteMs, d.idleMs) : d.idleMs;
        let answerTimer: NodeJS.Timeout | undefined;
        try {
          const signed = await route.signer.sign({
            method,
            protocol: "",
            hostname: route.hostname,
            path,
            query: {},
            headers: {
              ...extra,
              host: route.hostname,
              "x-amz-content-sha256": EMPTY_SHA256,
              ...(method === "PUT" ? { "content-length": "0" } : {}),
            },
          } as SmithyRequest);
          const res = await this.#agent.request({
            origin: route.origin,
            method,
            path,
            headers: signed.headers,
            ...(signal ? { signal } : {}),
            headersTimeout: firstByteMs,
            bodyTimeout: bodyMs,
          });
          if (work)
            answerTimer = setTimeout(
              () => res.body.destroy(requestTimeout("the request", "response body", bodyMs)),
              bodyMs,
            ).unref();
          if (res.statusCode >= 200 && res.statusCode < 300) return await onOk(res);
          if (res.statusCode === 404 && notFoundIsUndefined) {
            await res.body.dump();
            return undefined as T;
          }
          // A HEAD answer has no body to read the error from: the status says it.
          const body = method === "HEAD" ? "" : await res.body.text();
          if (method === "HEAD") await res.body.dump();
          throw this.#bodyError(body, res.statusCode);
        } catch (err) {
          throw toDestinationError(this.#timeoutOf(err, firstByteMs, bodyMs), what);
        } finally {
          clearTimeout(answerTimer);
        }
      },
      {
        operation: what,
        signal,
        policy: {
          retries: Math.max(0, maxAttempts - 1),
          minTimeoutMs: 100,
          maxTimeoutMs: 20_000,
          maxRetryTimeMs: Number.POSITIVE_INFINITY,
        },
      },
    );
  }

  /** undici's timeout errors as the project's coded RequestTimeoutError. */
  #timeoutOf(err: unknown, firstByteMs: number, bodyMs: number): unknown {
    switch ((err as { code?: unknown }).code) {
      case "UND_ERR_HEADERS_TIMEOUT":
        return requestTimeout("the request", "first byte", firstByteMs, err);
      case "UND_ERR_BODY_TIMEOUT":
        return requestTimeout("the request", "response body", bodyMs, err);
      case "UND_ERR_CONNECT_TIMEOUT":
        return requestTimeout("the request", "connection", this.#connectTimeoutMs, err);
      default:
        return err;
    }
  }

  #bodyError(body: string, status: number): S3Answer {
    const code = xmlField(body, "Code") ?? (status === 404 ? "NotFound" : `Http${status}`);
    return new S3Answer(code, status, xmlField(body, "Message") ?? "");
  }
}

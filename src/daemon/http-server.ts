import { timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { HookEvent } from "../lakefs/types.ts";
import { Lifecycle } from "../lifecycle.ts";
import { EventInvalidError, HttpRequestError } from "../errors.ts";
import { parseHookEvent } from "./intake.ts";
import type { Metrics } from "./metrics.ts";

export interface HttpServerOptions {
  host: string;
  port: number;
  bodyLimitBytes: number;
  /** The bearer token webhooks must present; undefined when authentication is disabled. */
  token: string | undefined;
  /**
   * The bearer token `/status` and `/metrics` ask for; undefined: they are open (fit for a
   * loopback address only). Health and readiness stay open for the kubelet's probes.
   */
  statusToken?: string | undefined;
  metrics: Metrics;
  logger: Logger;
  /** Records the event; resolves to what the response says. Rejects when it could not be recorded. */
  onEvent: (
    event: HookEvent,
  ) => Promise<{ result: "accepted" | "ignored"; reason?: string; lanes: number }>;
  status: () => unknown;
  ready: () => boolean;
  /** The state of the parts that may be away without making the daemon unready (Kafka). */
  parts: () => Record<string, string>;
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  contentType = "application/json",
): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? NaN);
  if (declared > limit)
    return Promise.reject(new HttpRequestError(413, `body larger than ${limit} bytes`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new HttpRequestError(413, `body larger than ${limit} bytes`));
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function tokenMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? "");
  if (!m?.[1]) return false;
  const a = Buffer.from(m[1].trim());
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The daemon's HTTP face: lakeFS action webhooks, Prometheus metrics, health, readiness and
 * per-lane status. A webhook gets 202 only once its event is durably recorded.
 */
export class HttpServer {
  readonly #o: HttpServerOptions;
  readonly #server: Server;
  #accepting = true;
  readonly #life = new Lifecycle("the HTTP server");

  constructor(options: HttpServerOptions) {
    this.#o = options;
    this.#server = createServer((req, res) => {
      this.#route(req, res).catch((err: unknown) => {
        const status = err instanceof HttpRequestError ? err.status : 500;
        if (status === 500) this.#o.logger.error({ err }, "request failed");
        if (!res.headersSent) send(res, status, { error: (err as Error).message });
      });
    });
    this.#server.keepAliveTimeout = 5_000;
  }

  get address(): string {
    const a = this.#server.address() as AddressInfo;
    return `http://${a.address.includes(":") ? `[${a.address}]` : a.address}:${a.port}`;
  }

  start(): Promise<void> {
    return this.#life.open(
      () =>
        new Promise<void>((resolve, reject) => {
          this.#server.once("error", reject);
          this.#server.listen(this.#o.port, this.#o.host, () => {
            this.#server.off("error", reject);
            resolve();
          });
        }),
    );
  }

  /** Stops accepting webhooks (503) while metrics and status stay readable. */
  stopIntake(): void {
    this.#accepting = false;
  }

  /** Idempotent; concurrent callers wait for the same close. */
  close(): Promise<void> {
    this.#accepting = false;
    return this.#life.close(
      () =>
        new Promise<void>((resolve) => {
          if (!this.#server.listening) return resolve();
          this.#server.close(() => resolve());
          this.#server.closeIdleConnections();
        }),
    );
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://localhost");
    switch (url.pathname) {
      case "/webhooks/lakefs":
        return this.#webhook(req, res);
      case "/metrics":
        if (!this.#statusAllowed(req, res)) return;
        return send(
          res,
          200,
          await this.#o.metrics.registry.metrics(),
          this.#o.metrics.registry.contentType,
        );
      case "/healthz":
        return send(res, 200, { status: "ok" });
      case "/readyz":
        // Webhooks and the reconciler work without Kafka: its state is told, not required.
        return this.#o.ready() && this.#accepting
          ? send(res, 200, { status: "ready", ...this.#o.parts() })
          : send(res, 503, { status: "not ready", ...this.#o.parts() });
      case "/status":
        if (!this.#statusAllowed(req, res)) return;
        return send(res, 200, this.#o.status());
      default:
        return send(res, 404, { error: `no route ${url.pathname}` });
    }
  }

  /** Answers 401 and returns false when a status token is set and the request lacks it. */
  #statusAllowed(req: IncomingMessage, res: ServerResponse): boolean {
    const token = this.#o.statusToken;
    if (token === undefined || tokenMatches(req.headers.authorization, token)) return true;
    req.resume();
    send(res, 401, { error: "missing or wrong bearer token (server.statusToken)" });
    return false;
  }

  async #webhook(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const reject = (status: number, error: string) => {
      this.#o.metrics.intake("webhook", "rejected");
      this.#o.logger.warn({ status, error, remote: req.socket.remoteAddress }, "webhook rejected");
      req.resume();
      send(res, status, { error });
    };
    if (req.method !== "POST") return reject(405, "use POST");
    if (!this.#accepting) return reject(503, "shutting down");
    if (this.#o.token !== undefined && !tokenMatches(req.headers.authorization, this.#o.token)) {
      return reject(401, "missing or wrong bearer token");
    }
    const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
    if (type !== "application/json") return reject(415, "content-type must be application/json");
    let event: HookEvent;
    try {
      const body = await readBody(req, this.#o.bodyLimitBytes);
      event = parseHookEvent(JSON.parse(body.toString("utf8")));
    } catch (err) {
      if (err instanceof HttpRequestError) return reject(err.status, err.message);
      if (err instanceof SyntaxError) return reject(400, `body is not valid JSON: ${err.message}`);
      if (err instanceof EventInvalidError) return reject(400, err.message);
      throw err;
    }
    try {
      const outcome = await this.#o.onEvent(event);
      send(res, outcome.result === "accepted" ? 202 : 200, outcome);
    } catch (err) {
      // Not recorded, so not acknowledged: lakeFS logs the failed hook and the reconciler catches up.
      this.#o.metrics.intake("webhook", "failed");
      this.#o.logger.error({ err }, "could not record webhook event");
      send(res, 503, { error: `event not recorded: ${(err as Error).message}` });
    }
  }
}

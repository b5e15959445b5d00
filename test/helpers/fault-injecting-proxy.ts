import { Agent, createServer, request } from "node:http";
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { Transform } from "node:stream";

/**
 * Injected faults: a transparent HTTP proxy in front of a real server (the stack's MinIO S3
 * server, or the lakeFS REST API) that answers some requests the way an overloaded server or a
 * broken network does. Real S3, lakeFS and networks do all of these now and then, but a real
 * server cannot be told to do them on demand, for a chosen request, at a chosen rate, which is
 * why this fake exists:
 *
 * - `slowdown`: not forwarded; the request body is drained and a 503 answered (S3's
 *   `<Error><Code>SlowDown</Code>…` XML, or lakeFS's JSON `{"message": …}`); the connection stays
 *   usable.
 * - `reset`: not forwarded; the client's connection is reset as soon as the request head arrives.
 * - `cut`: forwarded, so the upstream really acts on it (a write happens); then the upstream's
 *   status and headers (Content-Length unchanged) and only the first half of its body are sent
 *   before the connection is closed. An empty upstream body means no answer at all.
 * - `stall`: not forwarded; the request body is drained and no answer ever comes, until the
 *   client gives up or the proxy is closed.
 * - `stallHeaders`: forwarded; the upstream's status and headers are sent, then nothing more:
 *   the body never starts.
 * - `stallBody`: forwarded; the status, headers and first half of the upstream's body are sent,
 *   then nothing more, with the connection left open.
 * - `stallUpload`: not forwarded; the proxy reads the first half of the request body, then stops
 *   reading (the client's writes back up) and never answers.
 *
 * Besides faults, `setThrottle` makes every passed-through body (both directions) slow but
 * moving, and `setLag` holds matching answers for a while before sending them, as a server
 * does that works before it answers (a large copy).
 *
 * Everything else passes through unchanged, Host header included, so AWS SigV4 signatures still
 * verify. Which fault (if any) a request gets is drawn from a seeded PRNG, so a run is repeatable.
 * `setDown(true)` imitates a stopped server: connections are refused and open ones dropped.
 */

export type Fault =
  "slowdown" | "reset" | "cut" | "stall" | "stallHeaders" | "stallBody" | "stallUpload";

/**
 * Probability 0..1 per eligible request, checked in the order slowdown, reset, cut, stall,
 * stallHeaders, stallBody, stallUpload (a kind at rate 0 draws nothing, so adding kinds does not
 * change which requests a seed picks for the others).
 */
export type FaultRates = Partial<Record<Fault, number>>;

export interface FaultInjectingProxyOptions {
  /**
   * "s3": 503 answers are S3 XML `<Error><Code>SlowDown</Code><Message>…(injected)</Message></Error>`;
   * "lakefs": JSON `{"message": "… (injected)"}` with 503; "gcs": the JSON API's 429
   * `rateLimitExceeded`. An answer to HEAD has no body, so the AWS SDK names that error
   * "Unknown" (as it does for real S3), not "SlowDown". "azure": Azure's throttling answer, 503
   * with `x-ms-error-code: ServerBusy` and the same code in its XML body.
   */
  flavor: "s3" | "lakefs" | "gcs" | "azure";
  rates?: FaultRates;
  /** Seed of the deterministic PRNG that decides which requests get a fault; default 1. */
  seed?: number;
  /** Which requests may get a fault; default: all. */
  eligible?: (method: string, url: string) => boolean;
  /**
   * Called as each request arrives, before its fault is drawn; a function it returns is called
   * once the request is over (answered, or its connection gone): how tests count what is in
   * flight at the store.
   */
  onRequest?: (
    method: string,
    url: string,
    headers: IncomingHttpHeaders,
  ) => (() => void) | undefined;
}

export interface FaultInjectingProxy {
  /** http://127.0.0.1:<port> */
  url: string;
  /** Replaces the rates; `{}` turns faults off. */
  setRates(rates: FaultRates): void;
  /** Passed-through bodies, both directions, move at about this rate; undefined: full speed. */
  setThrottle(bytesPerSecond: number | undefined): void;
  /** Answers to matching requests are held `ms` before they are sent; 0 turns it off. */
  setLag(ms: number, match?: (method: string, url: string) => boolean): void;
  /**
   * true: close the listener so new connections are refused (ECONNREFUSED) and destroy every open
   * connection, as if the server were stopped; false: listen again on the same port.
   */
  setDown(down: boolean): Promise<void>;
  /** How many of each fault were injected so far. */
  injected(): Record<Fault, number>;
  /** Requests passed to the upstream (pass-through and `cut`). */
  forwarded(): number;
  /** Body bytes of the upstream's answers relayed to clients so far. */
  answeredBytes(): number;
  /** Closes the listener and all connections, stalled ones included. */
  close(): Promise<void>;
}

const faultOrder: readonly Fault[] = [
  "slowdown",
  "reset",
  "cut",
  "stall",
  "stallHeaders",
  "stallBody",
  "stallUpload",
];

/** A stream that lets bytes through at about `bytesPerSecond`, each chunk when its time comes. */
function throttled(bytesPerSecond: number): Transform {
  let due = Date.now();
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      due = Math.max(due, Date.now()) + (chunk.length / bytesPerSecond) * 1000;
      setTimeout(() => done(null, chunk), Math.max(0, due - Date.now()));
    },
  });
}

/** Hop-by-hop headers: they describe one connection, not the message, so they are not relayed. */
const hopByHop = new Set(["connection", "keep-alive", "proxy-connection", "upgrade"]);

function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!hopByHop.has(name)) out[name] = value;
  }
  return out;
}

/** mulberry32: a tiny seeded generator of uniform numbers in [0, 1). */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000;
  };
}

function slowDownBody(flavor: "s3" | "lakefs" | "gcs" | "azure"): {
  status: number;
  contentType: string;
  body: string;
  headers?: Record<string, string>;
} {
  if (flavor === "azure") {
    return {
      status: 503,
      contentType: "application/xml",
      headers: { "x-ms-error-code": "ServerBusy" },
      body:
        '<?xml version="1.0" encoding="utf-8"?>\n' +
        "<Error><Code>ServerBusy</Code><Message>The server is busy. (injected)</Message></Error>",
    };
  }
  if (flavor === "gcs") {
    // Cloud Storage throttles with 429 and the JSON API's `rateLimitExceeded`.
    return {
      status: 429,
      contentType: "application/json",
      body: JSON.stringify({
        error: {
          code: 429,
          message: "The rate of requests is too high (injected)",
          errors: [{ domain: "usageLimits", reason: "rateLimitExceeded" }],
        },
      }),
    };
  }
  if (flavor === "s3") {
    return {
      status: 503,
      contentType: "application/xml",
      body:
        '<?xml version="1.0" encoding="UTF-8"?>\n' +
        "<Error><Code>SlowDown</Code><Message>Please reduce your request rate. (injected)</Message></Error>",
    };
  }
  return {
    status: 503,
    contentType: "application/json",
    body: JSON.stringify({ message: "service unavailable, slow down (injected)" }) + "\n",
  };
}

export async function startFaultInjectingProxy(
  target: string,
  options: FaultInjectingProxyOptions,
): Promise<FaultInjectingProxy> {
  const upstream = new URL(target);
  const upstreamPort = upstream.port || "80";
  const random = seededRandom(options.seed ?? 1);
  const eligible = options.eligible ?? (() => true);
  const slowDown = slowDownBody(options.flavor);
  let rates: FaultRates = { ...options.rates };
  const counts: Record<Fault, number> = {
    slowdown: 0,
    reset: 0,
    cut: 0,
    stall: 0,
    stallHeaders: 0,
    stallBody: 0,
    stallUpload: 0,
  };
  let forwardedCount = 0;
  let relayed = 0;
  let throttle: number | undefined;
  let lag: { ms: number; match: (method: string, url: string) => boolean } | undefined;

  // Our own pool for upstream connections, so close() can drop them all.
  const agent = new Agent({ keepAlive: true });
  const sockets = new Set<Socket>();
  const stalled = new Set<Socket>();

  function pickFault(method: string, url: string): Fault | undefined {
    if (!eligible(method, url)) return undefined;
    for (const fault of faultOrder) {
      const rate = rates[fault] ?? 0;
      if (rate > 0 && random() < rate) return fault;
    }
    return undefined;
  }

  /** Sends the request upstream; `onResponse` gets the upstream's answer. */
  function forward(
    req: IncomingMessage,
    res: ServerResponse,
    onResponse: (up: IncomingMessage) => void,
  ): void {
    forwardedCount++;
    let answered = false;
    const bps = throttle;
    const lagMs = lag && lag.ms > 0 && lag.match(req.method ?? "GET", req.url ?? "/") ? lag.ms : 0;
    const fwd = request(
      {
        agent,
        host: upstream.hostname,
        port: upstreamPort,
        method: req.method,
        path: req.url,
        headers: endToEnd(req.headers),
      },
      (up) => {
        up.on("error", () => req.socket.destroy());
        up.on("end", () => {
          answered = true;
        });
        if (lagMs > 0) setTimeout(() => onResponse(up), lagMs);
        else onResponse(up);
      },
    );
    fwd.on("error", () => req.socket.destroy());
    // The client went away (or the proxy dropped it) before its answer was complete.
    res.on("close", () => {
      if (!answered && !res.writableFinished) fwd.destroy();
    });
    if (bps === undefined) req.pipe(fwd);
    else req.pipe(throttled(bps)).pipe(fwd);
  }

  function passThrough(req: IncomingMessage, res: ServerResponse): void {
    const bps = throttle;
    forward(req, res, (up) => {
      res.writeHead(up.statusCode ?? 502, endToEnd(up.headers));
      up.on("data", (chunk: Buffer) => (relayed += chunk.length));
      if (bps === undefined) up.pipe(res);
      else up.pipe(throttled(bps)).pipe(res);
    });
  }

  function holdOpen(req: IncomingMessage): void {
    const socket = req.socket;
    stalled.add(socket);
    socket.once("close", () => stalled.delete(socket));
  }

  /** Forwards, sends the answer's head and `share` of its body, then nothing more. */
  function stallAnswer(req: IncomingMessage, res: ServerResponse, share: number): void {
    holdOpen(req);
    forward(req, res, (up) => {
      const chunks: Buffer[] = [];
      up.on("data", (chunk: Buffer) => chunks.push(chunk));
      up.on("end", () => {
        const body = Buffer.concat(chunks);
        res.writeHead(up.statusCode ?? 502, endToEnd(up.headers));
        res.flushHeaders();
        const part = body.subarray(0, Math.floor(body.length * share));
        if (part.length > 0) res.write(part);
      });
    });
  }

  function cut(req: IncomingMessage, res: ServerResponse): void {
    forward(req, res, (up) => {
      const chunks: Buffer[] = [];
      up.on("data", (chunk: Buffer) => chunks.push(chunk));
      up.on("end", () => {
        const body = Buffer.concat(chunks);
        if (body.length === 0) {
          // The upstream acted on the request; its answer is lost.
          req.socket.destroy();
          return;
        }
        res.writeHead(up.statusCode ?? 502, endToEnd(up.headers));
        res.flushHeaders();
        const half = body.subarray(0, Math.floor(body.length / 2));
        relayed += half.length;
        res.write(half, () => req.socket.destroy());
      });
    });
  }

  const server: Server = createServer((req, res) => {
    // Errors here only ever mean the client's connection is gone, which is ours to cause.
    req.on("error", () => undefined);
    res.on("error", () => undefined);
    const over = options.onRequest?.(req.method ?? "GET", req.url ?? "/", req.headers);
    if (over) res.once("close", over);
    const fault = pickFault(req.method ?? "GET", req.url ?? "/");
    if (fault) counts[fault]++;
    switch (fault) {
      case undefined:
        passThrough(req, res);
        return;
      case "slowdown":
        req.resume();
        req.on("end", () => {
          res.writeHead(slowDown.status, {
            ...slowDown.headers,
            "content-type": slowDown.contentType,
            "content-length": Buffer.byteLength(slowDown.body),
          });
          res.end(slowDown.body);
        });
        return;
      case "reset":
        req.socket.resetAndDestroy();
        return;
      case "cut":
        cut(req, res);
        return;
      case "stall": {
        holdOpen(req);
        req.resume();
        return;
      }
      case "stallHeaders":
        stallAnswer(req, res, 0);
        return;
      case "stallBody":
        stallAnswer(req, res, 0.5);
        return;
      case "stallUpload": {
        holdOpen(req);
        const half = Number(req.headers["content-length"] ?? 0) / 2;
        let received = 0;
        req.on("data", (chunk: Buffer) => {
          received += chunk.length;
          if (received >= half) req.pause();
        });
        return;
      }
    }
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });

  function listen(port: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once("error", onError);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", onError);
        resolve();
      });
    });
  }

  /** Stops listening and drops every connection; resolves once the listener is closed. */
  async function stop(): Promise<void> {
    const closed = server.listening
      ? new Promise<void>((resolve) => server.close(() => resolve()))
      : Promise.resolve();
    server.closeAllConnections();
    for (const socket of [...sockets, ...stalled]) socket.destroy();
    await closed;
    // Let clients in this process see their connections close (a real server that stopped is
    // noticed before the next request), or a pooled keep-alive socket is picked for the next
    // request and fails with ECONNRESET instead of ECONNREFUSED.
    await new Promise<void>((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  await listen(0);
  const port = (server.address() as AddressInfo).port;
  let down = false;
  let closed = false;

  return {
    url: `http://127.0.0.1:${port}`,
    setRates(next) {
      rates = { ...next };
    },
    setThrottle(bytesPerSecond) {
      throttle = bytesPerSecond;
    },
    setLag(ms, match = () => true) {
      lag = { ms, match };
    },
    async setDown(next) {
      if (closed) throw new Error("fault-injecting proxy is closed");
      if (next === down) return;
      down = next;
      if (next) await stop();
      else await listen(port);
    },
    injected: () => ({ ...counts }),
    forwarded: () => forwardedCount,
    answeredBytes: () => relayed,
    async close() {
      if (closed) return;
      closed = true;
      await stop();
      agent.destroy();
    },
  };
}

import { AsyncLocalStorage } from "node:async_hooks";
import type { ClientRequest } from "node:http";
import { Readable } from "node:stream";

/** Slices of a large in-memory body, so that its progress onto the socket can be timed. */
const SLICE_BYTES = 64 * 1024;

export interface BodyTimers {
  /** Cut the body when the reader has waited this long for the next bytes. */
  idleMs?: number | undefined;
  /** Cut the body if it has not ended by this time (Date.now() milliseconds). */
  endBy?: number | undefined;
  /** The error a cut body fails with; `ms` is the limit that was exceeded. */
  onTimeout: (ms: number) => Error;
}

/**
 * A response body whose silences are timed only while its reader waits for bytes: when the
 * reader stops reading (backpressure), the clock stops too, so a slow consumer never makes a
 * healthy server look stalled. The source is destroyed (its connection closed, never reused)
 * when the body is cut or abandoned before its end.
 */
export class ProgressTimedBody extends Readable {
  readonly #src: Readable;
  readonly #idleMs: number | undefined;
  readonly #onTimeout: (ms: number) => Error;
  #idle: NodeJS.Timeout | undefined;
  #deadline: NodeJS.Timeout | undefined;

  constructor(src: Readable, timers: BodyTimers) {
    super();
    this.#src = src;
    this.#idleMs = timers.idleMs;
    this.#onTimeout = timers.onTimeout;
    src.pause();
    src.on("data", (chunk: Buffer) => {
      if (this.push(chunk)) {
        this.#armIdle();
      } else {
        this.#clearIdle();
        src.pause();
      }
    });
    src.once("end", () => {
      this.#clearTimers();
      this.push(null);
    });
    src.once("error", (err) => this.destroy(err));
    if (timers.endBy !== undefined) {
      const ms = Math.max(0, timers.endBy - Date.now());
      this.#deadline = setTimeout(() => this.destroy(this.#onTimeout(ms)), ms).unref();
    }
  }

  override _read(): void {
    this.#armIdle();
    this.#src.resume();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#clearTimers();
    if (!this.#src.readableEnded) this.#src.destroy(err ?? undefined);
    callback(err);
  }

  #armIdle(): void {
    const ms = this.#idleMs;
    if (ms === undefined || this.destroyed) return;
    if (this.#idle) this.#idle.refresh();
    // Not unref'd: a reader is waiting on it, as on a socket.
    else this.#idle = setTimeout(() => this.destroy(this.#onTimeout(ms)), ms);
  }

  #clearIdle(): void {
    clearTimeout(this.#idle);
    this.#idle = undefined;
  }

  #clearTimers(): void {
    this.#clearIdle();
    clearTimeout(this.#deadline);
  }
}

/** The body types the AWS SDK hands a request handler in Node. */
export type RequestBody = string | Uint8Array | Readable | null | undefined;

/** Bytes of a body known before it is sent; undefined for a stream. */
export function bodyLength(body: RequestBody): number | undefined {
  if (body === null || body === undefined) return 0;
  if (typeof body === "string") return Buffer.byteLength(body);
  if (body instanceof Uint8Array) return body.byteLength;
  return undefined;
}

/**
 * Writes a request body, timing only the waits for the server to take more of it: a write
 * that fills the socket's buffer starts the clock, the socket's `drain` stops it. Time spent
 * by a streamed source producing its bytes is the source's own business (its own timeouts).
 * Ends the request when the body is done; a source error destroys the request.
 */
export function writeRequestBody(
  req: ClientRequest,
  body: RequestBody,
  idleMs: number,
  onTimeout: (ms: number) => Error,
  beforeWrite?: () => void,
): void {
  // Passed right before bytes go to the socket: a process paused between the caller's own
  // check and the write (SIGSTOP, a long GC) must not send them once it may no longer write.
  const passes = (): boolean => {
    if (!beforeWrite) return true;
    try {
      beforeWrite();
      return true;
    } catch (err) {
      req.destroy(err as Error);
      return false;
    }
  };
  let idle: NodeJS.Timeout | undefined;
  const waitForDrain = (then: () => void) => {
    idle = setTimeout(() => req.destroy(onTimeout(idleMs)), idleMs).unref();
    req.once("drain", () => {
      clearTimeout(idle);
      then();
    });
  };
  req.once("close", () => clearTimeout(idle));

  if (body instanceof Readable) {
    // A stream read by an earlier attempt has nothing left to give and would never end.
    if (body.readableEnded || body.destroyed) {
      req.destroy(new Error("the request body stream was already read or destroyed"));
      return;
    }
    const onData = (chunk: Buffer) => {
      if (!passes()) return;
      if (!req.write(chunk)) {
        body.pause();
        waitForDrain(() => body.resume());
      }
    };
    const onEnd = () => {
      if (passes()) req.end();
    };
    const onError = (err: Error) => req.destroy(err);
    body.on("data", onData);
    body.once("end", onEnd);
    body.once("error", onError);
    // A source paused by its producer does not flow by itself when a reader attaches.
    body.resume();
    // A request that ends early (an error answer, a cut) lets go of the source unread; the
    // caller decides what becomes of it.
    req.once("close", () => {
      body.off("data", onData);
      body.off("end", onEnd);
      body.off("error", onError);
      if (!body.readableEnded) body.pause();
    });
    return;
  }
  if (body === null || body === undefined) {
    if (passes()) req.end();
    return;
  }
  const bytes = typeof body === "string" ? Buffer.from(body) : body;
  if (bytes.byteLength <= SLICE_BYTES) {
    if (passes()) req.end(bytes);
    return;
  }
  let offset = 0;
  const next = () => {
    while (offset < bytes.byteLength) {
      if (!passes()) return;
      const slice = bytes.subarray(offset, offset + SLICE_BYTES);
      offset += slice.byteLength;
      if (!req.write(slice)) {
        waitForDrain(next);
        return;
      }
    }
    req.end();
  };
  next();
}

const writeFence = new AsyncLocalStorage<() => void>();

/**
 * Runs `send` with `fence` in its async context, where the HTTP handler finds it (currentWriteFence)
 * and passes it right before each write of the request's body to the socket (writeRequestBody):
 * it survives the SDK's wrapping of the body and of the abort signal.
 */
export function withWriteFence<T>(fence: (() => void) | undefined, send: () => T): T {
  return fence ? writeFence.run(fence, send) : send();
}

/** The fence of the request being sent (withWriteFence), if any. */
export function currentWriteFence(): (() => void) | undefined {
  return writeFence.getStore();
}

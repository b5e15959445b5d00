import { setMaxListeners } from "node:events";
import { PassThrough, Readable } from "node:stream";
import { AbortedError, MirrorError, SourceObjectError, SourceReadError } from "../errors.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import type { ByteSpan } from "../lakefs/transport.ts";

/** Bytes [start, end) of an object. */
export type ByteRange = ByteSpan;

/**
 * Where a streamed copy reads an object's bytes: lakeFS's getObject, or a URL lakeFS pre-signed
 * for the repository's store (the bytes then skip the lakeFS server).
 */
export interface ObjectSource {
  readonly via: "lakefs" | "presigned";
  /**
   * The object's bytes, or those of `range`, as a stream, with the answer's Content-Range (a
   * ranged answer must say which bytes it carries).
   */
  open(range: ByteRange | undefined, signal?: AbortSignal): Promise<OpenedRange>;
}

export interface OpenedRange {
  body: Readable;
  contentRange: string | undefined;
}

export interface ObjectAt {
  lakefs: LakefsClient;
  repository: string;
  ref: string;
  path: string;
}

/** Reads through lakeFS's getObject (a Range header for a range). */
export function lakefsSource(o: ObjectAt): ObjectSource {
  return {
    via: "lakefs",
    open: async (range, signal) => {
      const { body, contentRange } = await o.lakefs.getObject(
        o.repository,
        o.ref,
        o.path,
        signal,
        range,
      );
      return { body, contentRange };
    },
  };
}

/** A pre-signed URL is asked for again when it has less than this left (or a quarter of its life). */
const URL_MARGIN_MS = 30_000;

/**
 * Reads from a URL lakeFS pre-signed for the object (stat with `presign=true`), asked for again
 * when it is about to expire or the store answers 403 to it (expired after all: clocks differ).
 * Undefined when lakeFS does not sign for the repository's store.
 */
export async function presignedSource(
  o: ObjectAt,
  signal?: AbortSignal,
): Promise<ObjectSource | undefined> {
  const sign = () => o.lakefs.presignedUrl(o.repository, o.ref, o.path, signal);
  let signed = await sign();
  if (!signed) return undefined;
  const life = signed.expiresAt !== undefined ? signed.expiresAt - Date.now() : Infinity;
  const margin = Math.min(URL_MARGIN_MS, life / 4);
  const fresh = async (renew: boolean) => {
    const left = signed?.expiresAt !== undefined ? signed.expiresAt - Date.now() : Infinity;
    if (renew || left < margin) signed = (await sign()) ?? signed;
    return signed!.url;
  };
  return {
    via: "presigned",
    async open(range, sig) {
      for (let renewed = false; ; renewed = true) {
        const url = await fresh(renewed);
        const res = await o.lakefs.presignedGet(url, range, sig);
        const ok = range ? res.status === 206 : res.status === 200;
        const shown = `${o.path} (pre-signed ${url.split("?")[0]})`;
        if (ok) return { body: sourceBody(res.body, shown, sig), contentRange: res.contentRange };
        res.body.resume();
        // Expired after all (clocks differ): some stores answer 403, others 400.
        if ((res.status === 403 || res.status === 400) && !renewed) continue;
        if (res.status === 404)
          throw new SourceObjectError(`cannot read ${shown} at ${o.ref}: the store answered 404`);
        if (range && res.status === 200)
          throw new SourceReadError(`the store ignored the Range header reading ${shown}`, 200);
        throw new SourceReadError(`the store answered ${res.status} reading ${shown}`, res.status);
      }
    },
  };
}

/**
 * The store's body with its failures as retriable SourceReadErrors (an abort stays an abort);
 * a reader that lets go early closes the connection under it.
 */
function sourceBody(body: Readable, what: string, signal?: AbortSignal): Readable {
  const out = new PassThrough();
  body.once("error", (err) =>
    out.destroy(
      signal?.aborted
        ? err
        : new SourceReadError(`reading ${what} broke off: ${err.message}`, undefined, {
            cause: err,
          }),
    ),
  );
  out.once("close", () => {
    if (!body.readableEnded) body.destroy();
  });
  body.pipe(out);
  return out;
}

/**
 * One range of an object of `size` bytes read whole, checked: the answer must say it carries
 * exactly these bytes of an object of that size (Content-Range), and carry that many. A body
 * broken off or short is a retriable SourceReadError, so the caller's retry reads that range
 * again, and only that range; an answer that is not this range (a 200 with the whole object,
 * another range, another size) is a permanent one.
 */
export async function readRange(
  source: ObjectSource,
  range: ByteRange,
  size: number,
  what: string,
  signal?: AbortSignal,
): Promise<Buffer> {
  const { body, contentRange } = await source.open(range, signal);
  const want = range.end - range.start;
  const expected = `bytes ${range.start}-${range.end - 1}/${size}`;
  if (contentRange?.trim() !== expected) {
    body.destroy();
    throw new SourceReadError(
      `reading ${what}: asked for ${expected}, the answer carries ${contentRange ? `"${contentRange}"` : "no Content-Range"} (the object changed size, or something between ignores ranges)`,
      200,
    );
  }
  // Copied once, into a buffer of the range's size (collecting the chunks and joining them
  // would copy every byte twice).
  const bytes = Buffer.allocUnsafe(want);
  let got = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (got + chunk.length > want) {
        got += chunk.length;
        break;
      }
      chunk.copy(bytes, got);
      got += chunk.length;
    }
  } catch (err) {
    if (signal?.aborted || err instanceof MirrorError) throw err;
    throw new SourceReadError(`reading ${what} broke off: ${(err as Error).message}`, undefined, {
      cause: err,
    });
  } finally {
    body.destroy();
  }
  if (got !== want)
    throw new SourceReadError(
      `reading bytes ${range.start}-${range.end - 1} of ${what} gave ${got > want ? "more than" : got} of ${want}`,
      undefined,
    );
  return bytes;
}

/**
 * A fixed number of permits, handed out in arrival order: how many ranges one export holds
 * in memory at once, however many objects it streams.
 */
export class RangePermits {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(permits: number) {
    if (!Number.isInteger(permits) || permits < 1)
      throw new TypeError(`range permits must be >= 1, got ${permits}`);
    this.#free = permits;
  }

  async take(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) throw new AbortedError("waiting to read a range aborted");
    if (this.#free > 0 && this.#waiting.length === 0) this.#free--;
    else {
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        };
        const onAbort = () => {
          const i = this.#waiting.indexOf(wake);
          if (i >= 0) this.#waiting.splice(i, 1);
          reject(new AbortedError("waiting to read a range aborted"));
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        this.#waiting.push(wake);
      });
    }
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const next = this.#waiting.shift();
      // A waiter inherits the permit; with none waiting it is free again.
      if (next) next();
      else this.#free++;
    };
  }
}

export interface RangedBodyOptions {
  size: number;
  rangeBytes: number;
  /** Ranges of this object read at once. */
  parallel: number;
  /** Shared by every object of the export; a permit is held from a range's read to its use. */
  permits: RangePermits;
  /** Reads one range whole (with its own retries). */
  read: (range: ByteRange, signal: AbortSignal) => Promise<Buffer>;
  signal?: AbortSignal | undefined;
}

/**
 * An object's bytes as one stream, read `parallel` ranges ahead, in order. Memory is bounded by
 * the permits: a range holds one from before its read until the stream hands it on. A failed
 * range (after its retries) fails the stream; destroying the stream aborts the reads in flight.
 */
export function rangedBody(o: RangedBodyOptions): Readable {
  const stop = new AbortController();
  const signal = o.signal ? AbortSignal.any([o.signal, stop.signal]) : stop.signal;
  // Every range read and permit wait listens on it.
  setMaxListeners(0, signal);
  const ahead: Promise<{ bytes: Buffer; release: () => void }>[] = [];
  let next = 0;
  let pumping = false;
  /** The permit of the range last handed on, given back once the reader has taken it. */
  let handed: (() => void) | undefined;
  const start = () => {
    const range = { start: next, end: Math.min(o.size, next + o.rangeBytes) };
    next = range.end;
    const read = o.permits.take(signal).then(async (release) => {
      try {
        return { bytes: await o.read(range, signal), release };
      } catch (err) {
        release();
        throw err;
      }
    });
    // Awaited in turn; a failure before its turn must not go unhandled.
    read.catch(() => undefined);
    ahead.push(read);
  };
  // Hands ranges on in order while the reader wants more; reads stay `parallel` ahead.
  const pump = async () => {
    pumping = true;
    try {
      while (!body.destroyed) {
        const first = ahead.shift();
        if (!first) {
          body.push(null);
          return;
        }
        const { bytes, release } = await first;
        if (body.destroyed) {
          release();
          return;
        }
        if (next < o.size) start();
        // Held until the reader asks for more (it has the range then), not just until it is
        // in the stream's buffer: the permits bound the ranges in memory.
        if (!body.push(bytes)) {
          handed = release;
          return;
        }
        release();
      }
    } catch (err) {
      body.destroy(err as Error);
    } finally {
      pumping = false;
    }
  };
  const body = new Readable({
    // Nothing buffered beyond the range last handed on: each push waits for the reader.
    highWaterMark: 0,
    read() {
      handed?.();
      handed = undefined;
      if (!pumping) void pump();
    },
    // Immediate, even while a range is awaited: the reads in flight are aborted, and permits
    // of ranges read but never handed on go back.
    destroy(err, done) {
      stop.abort();
      handed?.();
      handed = undefined;
      for (const read of ahead.splice(0))
        void read.then(({ release }) => release()).catch(() => undefined);
      done(err);
    },
  });
  while (ahead.length < o.parallel && next < o.size) start();
  return body;
}

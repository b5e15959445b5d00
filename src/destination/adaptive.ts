import type { Readable } from "node:stream";
import { DestinationError } from "../errors.ts";
import type { AdaptiveLimit, RequestOutcome, Slot } from "./adaptive-limit.ts";
import type { RateCap } from "./rate-cap.ts";
import type {
  DeleteRefusal,
  Destination,
  ListedObject,
  ObjectMeta,
  StorageAddress,
  WriteCondition,
} from "./destination.ts";

/**
 * A store's answer that means "too fast": S3's SlowDown and any 503, GCS's 429, Azure's
 * ServerBusy. Other failures (a 500, a lost upload, a reset) say nothing about the rate and
 * leave the limit alone.
 */
export function throttlingOutcome(err: unknown): RequestOutcome {
  if (err instanceof DestinationError && (err.reason === "SlowDown" || err.httpStatus === 503))
    return "throttled";
  return "other";
}

/**
 * A destination that paces bulk writes by the store's AdaptiveLimit, shared by every
 * destination of that container in the process: each object write, copy and delete batch is
 * observed (a throttling answer lowers the limit, a success counts towards raising it), and
 * `writeSlot` gives an export's task its slot before it starts (before it reads the object
 * from lakeFS, so no body waits unread). Small state writes (the ledger, the lease, status
 * files) and reads neither wait nor count: a lease must renew however busy the store is.
 * With a RateCap, the same bulk writes also wait for their share of the group's caps on
 * requests and bytes per second (a multipart upload counts as one request of its size).
 */
export class AdaptiveDestination implements Destination {
  readonly #d: Destination;
  readonly #limit: AdaptiveLimit | undefined;
  readonly #cap: RateCap | undefined;

  constructor(inner: Destination, limit: AdaptiveLimit | undefined, cap?: RateCap) {
    this.#d = inner;
    this.#limit = limit;
    this.#cap = cap;
  }

  /** A bulk write: after its share of the caps, paced and observed by the limit. */
  async #bulk<T>(bytes: number, signal: AbortSignal | undefined, write: () => Promise<T>) {
    await this.#cap?.take(bytes, signal);
    return this.#limit ? this.#limit.observed(write, throttlingOutcome) : write();
  }

  get uri(): string {
    return this.#d.uri;
  }
  get prefix(): string {
    return this.#d.prefix;
  }
  get capabilities() {
    return this.#d.capabilities;
  }

  describe(path?: string): string {
    return this.#d.describe(path);
  }
  key(path: string): string {
    return this.#d.key(path);
  }
  at(prefix: string): Destination {
    return new AdaptiveDestination(this.#d.at(prefix), this.#limit, this.#cap);
  }

  writeSlot(signal?: AbortSignal): Promise<Slot> {
    return this.#limit
      ? this.#limit.acquire(signal)
      : Promise.resolve({ release: () => undefined });
  }

  put(path: string, body: string | Uint8Array, meta: ObjectMeta, signal?: AbortSignal) {
    const bytes = typeof body === "string" ? Buffer.byteLength(body) : body.byteLength;
    return this.#bulk(bytes, signal, () => this.#d.put(path, body, meta, signal));
  }
  putText(path: string, text: string, signal?: AbortSignal, contentType?: string) {
    return this.#d.putText(path, text, signal, contentType);
  }
  putStream(
    path: string,
    body: Readable,
    size: number,
    meta: ObjectMeta,
    signal?: AbortSignal,
    fence?: () => void,
  ) {
    return this.#bulk(size, signal, () => this.#d.putStream(path, body, size, meta, signal, fence));
  }
  serverSideCopy(
    source: StorageAddress,
    path: string,
    size: number,
    meta: ObjectMeta,
    signal?: AbortSignal,
    fence?: () => void,
  ) {
    return this.#bulk(size, signal, () =>
      this.#d.serverSideCopy(source, path, size, meta, signal, fence),
    );
  }
  deleteBatch(paths: string[], signal?: AbortSignal): Promise<DeleteRefusal[]> {
    return this.#bulk(0, signal, () => this.#d.deleteBatch(paths, signal));
  }
  list(subPrefix?: string, signal?: AbortSignal): AsyncGenerator<ListedObject[]> {
    return this.#d.list(subPrefix, signal);
  }
  head(path: string, signal?: AbortSignal) {
    return this.#d.head(path, signal);
  }
  read(path: string, signal?: AbortSignal) {
    return this.#d.read(path, signal);
  }
  getText(path: string, signal?: AbortSignal) {
    return this.#d.getText(path, signal);
  }
  getVersioned(path: string, signal?: AbortSignal) {
    return this.#d.getVersioned(path, signal);
  }
  putConditional(path: string, text: string, condition: WriteCondition, signal?: AbortSignal) {
    return this.#d.putConditional(path, text, condition, signal);
  }
}

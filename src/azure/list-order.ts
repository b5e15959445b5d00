import { DestinationError } from "../errors.ts";
import { compareUtf8 } from "../export/order.ts";

const isSurrogate = (unit: number) => unit >= 0xd800 && unit <= 0xdfff;

/**
 * Whether a key `x` already seen may still be passed, in UTF-8 order, by a key listed after
 * `latest`. Two orders of keys are possible from a listing: UTF-8 byte order (code points),
 * and UTF-16 code-unit order, which Azurite lists in. They differ only where one key has a
 * surrogate (a code point above U+FFFF) and another a unit of U+E000..U+FFFF at the first
 * position they differ: UTF-16 puts the surrogate first. So `x` waits while a later key could
 * share its units up to a surrogate of `x` and continue with such a unit: while the newest key
 * still starts with `x` up to one of its surrogates.
 */
function mayBePassed(x: string, latest: string): boolean {
  const n = Math.min(x.length, latest.length);
  let common = 0;
  while (common < n && x.charCodeAt(common) === latest.charCodeAt(common)) common++;
  const last = Math.min(common, x.length - 1);
  for (let i = 0; i <= last; i++) if (isSurrogate(x.charCodeAt(i))) return true;
  return false;
}

/**
 * Puts the keys of a listing that comes in UTF-8 or in UTF-16 code-unit order into UTF-8
 * order, holding back only the keys a later one may still come before (in practice, keys with
 * a character above U+FFFF whose siblings have one of U+E000..U+FFFF). A listing in any other
 * order fails: `push` throws rather than hand on keys out of order.
 */
export class Utf8Reorder<T> {
  readonly #keyOf: (item: T) => string;
  readonly #what: string;
  /** Held items in UTF-8 order of their keys. */
  readonly #held: T[] = [];
  #emitted: string | undefined;

  constructor(keyOf: (item: T) => string, what: string) {
    this.#keyOf = keyOf;
    this.#what = what;
  }

  /** Takes the next listed item; returns those now known to come next, in UTF-8 order. */
  push(item: T): T[] {
    const key = this.#keyOf(item);
    if (this.#emitted !== undefined && compareUtf8(key, this.#emitted) <= 0)
      throw new DestinationError(
        `${this.#what}: the store listed "${key}" after "${this.#emitted}", out of UTF-8 and UTF-16 order`,
        false,
        { reason: "Unknown" },
      );
    this.#insert(item, key);
    const out: T[] = [];
    while (this.#held.length > 0 && !mayBePassed(this.#keyOf(this.#held[0]!), key)) {
      out.push(this.#take());
    }
    return out;
  }

  /** The items still held, at the end of the listing. */
  flush(): T[] {
    const out: T[] = [];
    while (this.#held.length > 0) out.push(this.#take());
    return out;
  }

  /** How many items are held back now. */
  get holding(): number {
    return this.#held.length;
  }

  #take(): T {
    const item = this.#held.shift()!;
    this.#emitted = this.#keyOf(item);
    return item;
  }

  #insert(item: T, key: string): void {
    let lo = 0;
    let hi = this.#held.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareUtf8(this.#keyOf(this.#held[mid]!), key) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo < this.#held.length && this.#keyOf(this.#held[lo]!) === key)
      throw new DestinationError(`${this.#what}: the store listed "${key}" twice`, false, {
        reason: "Unknown",
      });
    this.#held.splice(lo, 0, item);
  }
}

/**
 * Pages of a listing put in UTF-8 order (see Utf8Reorder), re-cut so that no page is longer
 * than `pageSize`; empty pages are not yielded.
 */
export async function* inUtf8Order<T>(
  pages: AsyncIterable<T[]> | Iterable<T[]>,
  keyOf: (item: T) => string,
  pageSize: number,
  what: string,
): AsyncGenerator<T[]> {
  const reorder = new Utf8Reorder(keyOf, what);
  let ready: T[] = [];
  for await (const page of pages) {
    for (const item of page) ready.push(...reorder.push(item));
    while (ready.length >= pageSize) {
      yield ready.slice(0, pageSize);
      ready = ready.slice(pageSize);
    }
    if (ready.length > 0) {
      yield ready;
      ready = [];
    }
  }
  ready.push(...reorder.flush());
  for (let i = 0; i < ready.length; i += pageSize) yield ready.slice(i, i + pageSize);
}

import { DestinationError } from "../errors.ts";
import { compareUtf8 } from "../export/order.ts";

/**
 * Checks that a listing arrives in strictly ascending UTF-8 byte order, page after page.
 * Cloud Storage documents its listings as "lexicographic by name"; its names are UTF-8 and the
 * order is that of their bytes (the contract test's astral-plane and U+FFFD keys show it on
 * fake-gcs-server). Reconcile and verify merge a listing against lakeFS's, so a listing out
 * of order would make them copy or delete the wrong keys: it fails instead, loudly.
 */
export class ListOrderCheck {
  #last: string | undefined;
  readonly #what: string;

  constructor(what: string) {
    this.#what = what;
  }

  /** Throws a DestinationError when a key is not after every key before it. */
  accept(keys: readonly string[]): void {
    for (const key of keys) {
      if (this.#last !== undefined && compareUtf8(this.#last, key) >= 0)
        throw new DestinationError(
          `${this.#what}: the store listed ${JSON.stringify(key)} after ${JSON.stringify(this.#last)}, out of UTF-8 byte order`,
          false,
          { reason: "Unknown" },
        );
      this.#last = key;
    }
  }
}

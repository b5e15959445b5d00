import { ClosedError } from "./errors.ts";

export type LifecycleState = "new" | "opening" | "open" | "closing" | "closed";

/**
 * The one way long-lived parts start and stop (as abstract-level does): `open` and `close` are
 * idempotent, concurrent callers share one completion, a part that failed to open is closed,
 * and use after close is a coded error (`LM_CLOSED`).
 */
export class Lifecycle {
  readonly #name: string;
  #state: LifecycleState = "new";
  #opening: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(name: string) {
    this.#name = name;
  }

  get state(): LifecycleState {
    return this.#state;
  }

  open(start: () => Promise<void> | void): Promise<void> {
    if (this.#closing) return Promise.reject(new ClosedError(`${this.#name} is ${this.#state}`));
    this.#opening ??= (async () => {
      this.#state = "opening";
      try {
        await start();
        this.#state = "open";
      } catch (err) {
        this.#state = "closed";
        this.#opening = undefined;
        throw err;
      }
    })();
    return this.#opening;
  }

  close(stop: () => Promise<void> | void): Promise<void> {
    this.#closing ??= (async () => {
      await this.#opening?.catch(() => undefined);
      this.#state = "closing";
      try {
        await stop();
      } finally {
        this.#state = "closed";
      }
    })();
    return this.#closing;
  }

  /** Throws LM_CLOSED unless open. */
  assertOpen(): void {
    if (this.#state !== "open") throw new ClosedError(`${this.#name} is ${this.#state}`);
  }
}

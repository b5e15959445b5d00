/**
 * Runs tasks with at most `limit` in flight. `submit` waits for a free slot, which is what
 * makes a producer (a paginated listing) slow down to the pace of the copies: memory stays
 * bounded by `limit` tasks plus the page being read, whatever the size of the diff.
 */
export class TaskPool {
  readonly #limit: number;
  readonly #running = new Set<Promise<void>>();

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1)
      throw new TypeError(`pool limit must be >= 1, got ${limit}`);
    this.#limit = limit;
  }

  get running(): number {
    return this.#running.size;
  }

  /** Starts `task` once a slot is free. The task must not reject: report failures inside it. */
  async submit(task: () => Promise<void>): Promise<void> {
    while (this.#running.size >= this.#limit) await Promise.race(this.#running);
    const p: Promise<void> = task().finally(() => this.#running.delete(p));
    this.#running.add(p);
  }

  /** Resolves when every submitted task has settled. */
  async drain(): Promise<void> {
    while (this.#running.size > 0) await Promise.race(this.#running);
  }
}

/** One message read from a partition, until its lane has exported its commit. */
export interface Ticket {
  partition: number;
  offset: bigint;
  done: boolean;
}

/**
 * Which offset of each partition may be committed, and when a partition should pause. Kafka
 * commits a position, not a set: only the longest run of finished messages from the front of a
 * partition may be committed, whatever finished after a gap. A partition with `maxWaiting`
 * messages unfinished should pause, and resume once half of them are done.
 */
export class OffsetTracker {
  readonly #maxWaiting: number;
  readonly #queues = new Map<number, Ticket[]>();
  readonly #paused = new Set<number>();

  constructor(maxWaiting: number) {
    if (!Number.isInteger(maxWaiting) || maxWaiting < 1)
      throw new TypeError(`maxWaiting must be >= 1, got ${maxWaiting}`);
    this.#maxWaiting = maxWaiting;
  }

  read(partition: number, offset: string): Ticket {
    const ticket: Ticket = { partition, offset: BigInt(offset), done: false };
    const queue = this.#queues.get(partition) ?? [];
    queue.push(ticket);
    this.#queues.set(partition, queue);
    return ticket;
  }

  /** Marks a message finished; returns the offset to commit now (the next one to read), if any. */
  finish(ticket: Ticket): string | undefined {
    ticket.done = true;
    const queue = this.#queues.get(ticket.partition);
    // A ticket from before a rebalance: its partition's queue was forgotten.
    if (!queue?.includes(ticket)) return undefined;
    let last: Ticket | undefined;
    while (queue[0]?.done) last = queue.shift();
    return last ? (last.offset + 1n).toString() : undefined;
  }

  waiting(partition: number): number {
    return this.#queues.get(partition)?.length ?? 0;
  }

  /** Whether a partition must pause or may resume now (each said once), else undefined. */
  pressure(partition: number): "pause" | "resume" | undefined {
    const waiting = this.waiting(partition);
    if (!this.#paused.has(partition) && waiting >= this.#maxWaiting) {
      this.#paused.add(partition);
      return "pause";
    }
    if (this.#paused.has(partition) && waiting <= this.#maxWaiting / 2) {
      this.#paused.delete(partition);
      return "resume";
    }
    return undefined;
  }

  /** After a rebalance uncommitted messages come again: forget everything. */
  reset(): void {
    this.#queues.clear();
    this.#paused.clear();
  }
}

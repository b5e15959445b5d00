/** One message read from a partition, until its lane has exported its commit. */
export interface Ticket {
  readonly partition: number;
  readonly offset: bigint;
  done: boolean;
}

/** What a partition's messages are doing, for /status and the metrics. */
export interface PartitionBacklog {
  partition: number;
  /** Messages read and not committed yet (finished ones behind an unfinished one included). */
  uncommitted: number;
  /** The offset after the highest message read since the last rebalance; null before one. */
  readOffset: string | null;
  /** The last offset handed out for commit since the last rebalance; null before one. */
  committedOffset: string | null;
  paused: boolean;
}

interface PartitionQueue {
  /** Tickets not committed yet, by ascending offset. */
  tickets: Ticket[];
  byOffset: Map<bigint, Ticket>;
  /** The last offset returned for commit: every message before it is finished. */
  committed: bigint | undefined;
  /** The highest offset read. */
  read: bigint | undefined;
}

/**
 * Which offset of each partition may be committed, and when a partition should pause. Kafka
 * commits a position, not a set: only the longest run of finished messages from the front of a
 * partition may be committed, whatever finished after a gap. A partition with `maxWaiting`
 * messages unfinished should pause, and resume once half of them are done.
 *
 * A message can be delivered again in one generation: kafkajs retries a batch from the message
 * whose handler threw. Each offset has one ticket, and a delivery of an offset already committed
 * gets a ticket that commits nothing, so a second delivery can neither hold the partition back
 * nor move its position backwards.
 */
export class OffsetTracker {
  readonly #maxWaiting: number;
  readonly #queues = new Map<number, PartitionQueue>();
  readonly #paused = new Set<number>();

  constructor(maxWaiting: number) {
    if (!Number.isInteger(maxWaiting) || maxWaiting < 1)
      throw new TypeError(`maxWaiting must be >= 1, got ${maxWaiting}`);
    this.#maxWaiting = maxWaiting;
  }

  read(partition: number, offset: string): Ticket {
    const at = BigInt(offset);
    let q = this.#queues.get(partition);
    if (!q) {
      q = { tickets: [], byOffset: new Map(), committed: undefined, read: undefined };
      this.#queues.set(partition, q);
    }
    if (q.read === undefined || at > q.read) q.read = at;
    // Delivered again after its position was committed: its ticket is not tracked.
    if (q.committed !== undefined && at < q.committed)
      return { partition, offset: at, done: false };
    const known = q.byOffset.get(at);
    if (known) return known;
    const ticket: Ticket = { partition, offset: at, done: false };
    q.byOffset.set(at, ticket);
    const { tickets } = q;
    // Offsets arrive in order but for redeliveries (already known): appending is the rule.
    let i = tickets.length;
    while (i > 0 && tickets[i - 1]!.offset > at) i--;
    tickets.splice(i, 0, ticket);
    return ticket;
  }

  /** Marks a message finished; returns the offset to commit now (the next one to read), if any. */
  finish(ticket: Ticket): string | undefined {
    ticket.done = true;
    const q = this.#queues.get(ticket.partition);
    // A ticket from before a rebalance (its partition's queue was forgotten), or an untracked one.
    if (q?.byOffset.get(ticket.offset) !== ticket) return undefined;
    let last: Ticket | undefined;
    while (q.tickets[0]?.done) {
      last = q.tickets.shift()!;
      q.byOffset.delete(last.offset);
    }
    if (!last) return undefined;
    const next = last.offset + 1n;
    if (q.committed !== undefined && next <= q.committed) return undefined;
    q.committed = next;
    return next.toString();
  }

  waiting(partition: number): number {
    return this.#queues.get(partition)?.tickets.length ?? 0;
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

  /** Each partition read since the last rebalance, by partition number. */
  backlog(): PartitionBacklog[] {
    return [...this.#queues]
      .sort(([a], [b]) => a - b)
      .map(([partition, q]) => ({
        partition,
        uncommitted: q.tickets.length,
        readOffset: q.read === undefined ? null : (q.read + 1n).toString(),
        committedOffset: q.committed === undefined ? null : q.committed.toString(),
        paused: this.#paused.has(partition),
      }));
  }

  /** After a rebalance uncommitted messages come again: forget everything. */
  reset(): void {
    this.#queues.clear();
    this.#paused.clear();
  }
}

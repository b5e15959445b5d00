import { laneKey, partitionOf } from "../kafka/client.ts";

export interface OwnershipView {
  mode: "all" | "group";
  /** The topic's partitions this daemon holds; null while it holds none it knows of. */
  partitions: number[] | null;
  /** Whether, with Kafka away for longer than the grace, this daemon works on every lane. */
  fallback: boolean;
}

/**
 * Which lanes this daemon works on. Alone (no Kafka intake), all of them. In a consumer group,
 * the lanes whose key (`<repository>/<branch>`) the producer's partitioner sends to a partition
 * this daemon holds; when Kafka has been away for longer than `graceMs` (no assignment at all),
 * every lane again, so that webhooks and the reconciler keep the mirrors current. Either way the
 * destination's lease makes sure one daemon at a time writes a lane.
 */
export class Ownership {
  readonly #mode: "all" | "group";
  readonly #graceMs: number;
  readonly #now: () => number;
  #held: ReadonlySet<number> | undefined;
  #partitionCount = 0;
  #detachedSince: number;

  constructor(mode: "all" | "group", graceMs = 0, now: () => number = Date.now) {
    this.#mode = mode;
    this.#graceMs = graceMs;
    this.#now = now;
    this.#detachedSince = now();
  }

  owns(repository: string, branch: string): boolean {
    if (this.#mode === "all") return true;
    if (!this.#held) return this.#now() - this.#detachedSince >= this.#graceMs;
    return this.#held.has(partitionOf(laneKey(repository, branch), this.#partitionCount));
  }

  /** Whether another daemon of the group holds the lane's partition (this one holds others). */
  ownedElsewhere(repository: string, branch: string): boolean {
    return this.#mode === "group" && this.#held !== undefined && !this.owns(repository, branch);
  }

  assign(held: ReadonlySet<number>, partitionCount: number): void {
    this.#held = new Set(held);
    this.#partitionCount = partitionCount;
  }

  detach(): void {
    if (this.#held) this.#detachedSince = this.#now();
    this.#held = undefined;
  }

  view(): OwnershipView {
    return {
      mode: this.#mode,
      partitions: this.#held ? [...this.#held].sort((a, b) => a - b) : null,
      fallback:
        this.#mode === "group" && !this.#held && this.#now() - this.#detachedSince >= this.#graceMs,
    };
  }
}

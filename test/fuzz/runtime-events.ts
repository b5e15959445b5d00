import type { Prng } from "../helpers/crash.ts";
import { commitEvent } from "../helpers/daemon.ts";
import type { Fleet } from "./fleet.ts";
import type { KafkaSide } from "./runtime-kafka.ts";
import type { Change } from "./runtime-world.ts";
import { short } from "./world.ts";

/**
 * How the runtime fuzz's lakeFS events reach the group, as an unreliable world delivers them:
 * some never (a hook that failed), some twice (a retried hook, a producer's retry), some late
 * (after newer events of the same branch), through a webhook to any daemon of the group (which
 * forwards it to the topic, or handles it itself when Kafka cannot take it) or straight to the
 * topic (lakeFS's events through a pipeline), by a producer that may still count the topic's
 * partitions as they were before a change. Every choice is drawn when the event is made, so a
 * seed makes the same choices whatever the timing.
 */

export interface DeliveryCounts {
  events: number;
  dropped: number;
  duplicated: number;
  late: number;
  /** Events of a burst sent in another order than their commits. */
  shuffled: number;
  webhook: number;
  kafka: number;
  /** Sent by the producer that keeps its first view of the topic's partitions. */
  staleProducer: number;
  /** Sent, and not taken: the daemon was down or did not answer, or Kafka was away. */
  undelivered: number;
}

type Send = { route: "webhook"; slot: number } | { route: "kafka"; stale: boolean };

interface Held {
  event: Record<string, unknown>;
  sends: Send[];
  due: number;
  what: string;
}

export class Deliveries {
  readonly counts: DeliveryCounts = {
    events: 0,
    dropped: 0,
    duplicated: 0,
    late: 0,
    shuffled: 0,
    webhook: 0,
    kafka: 0,
    staleProducer: 0,
    undelivered: 0,
  };
  readonly #rng: Prng;
  readonly #o: { drop: number; duplicate: number; late: number };
  readonly #fleet: Fleet;
  readonly #kafka: KafkaSide;
  readonly #note: (op: string, detail: string) => void;
  readonly #held: Held[] = [];
  readonly #inflight = new Set<Promise<void>>();

  constructor(
    rng: Prng,
    o: { drop: number; duplicate: number; late: number },
    fleet: Fleet,
    kafka: KafkaSide,
    note: (op: string, detail: string) => void,
  ) {
    this.#rng = rng;
    this.#o = o;
    this.#fleet = fleet;
    this.#kafka = kafka;
    this.#note = note;
  }

  /** The events of `changes` (in another order when `shuffle`), each dropped, late or sent. */
  emit(changes: readonly Change[], step: number, shuffle = false): void {
    const rng = this.#rng;
    let list = changes.filter((c) => c.event);
    if (shuffle && list.length > 1) {
      const before = list.map((c) => c.event!.commit).join();
      list = rng.sample(list, list.length);
      if (list.map((c) => c.event!.commit).join() !== before) this.counts.shuffled++;
    }
    for (const c of list) {
      const e = commitEvent(c.repo, c.branch, c.event!.commit ?? "", c.event!.type);
      const event: Record<string, unknown> = { ...e };
      if (c.event!.commit === null) delete event.commit_id;
      const what = `${c.event!.type} ${c.repo}/${c.branch}${c.event!.commit ? ` ${short(c.event!.commit)}` : ""}`;
      this.counts.events++;
      if (rng.next() < this.#o.drop) {
        this.counts.dropped++;
        this.#note("event", `${what}: dropped`);
        continue;
      }
      const sends = [this.#route()];
      if (rng.next() < this.#o.duplicate) {
        sends.push(this.#route());
        this.counts.duplicated++;
      }
      if (rng.next() < this.#o.late) {
        const due = step + rng.int(1, 3);
        this.#held.push({ event, sends, due, what });
        this.counts.late++;
        this.#note("event", `${what}: held back until step ${due}`);
        continue;
      }
      this.#send(event, sends, what);
    }
  }

  /** Sends the held events that are due at `step` (every one when `step` is undefined). */
  due(step: number | undefined): void {
    for (let i = 0; i < this.#held.length;) {
      const h = this.#held[i]!;
      if (step !== undefined && h.due > step) {
        i++;
        continue;
      }
      this.#held.splice(i, 1);
      this.#send(h.event, h.sends, `${h.what} (late)`);
    }
  }

  /** Waits for every send in flight. */
  async drain(): Promise<void> {
    while (this.#inflight.size) await Promise.allSettled([...this.#inflight]);
  }

  #route(): Send {
    const rng = this.#rng;
    if (rng.next() < 0.5)
      return { route: "webhook", slot: rng.int(0, this.#fleet.slots.length - 1) };
    return { route: "kafka", stale: rng.next() < 0.3 };
  }

  #send(event: Record<string, unknown>, sends: Send[], what: string): void {
    const described = sends.map((s) =>
      s.route === "webhook"
        ? `webhook to daemon ${s.slot}`
        : `Kafka${s.stale ? " (stale producer)" : ""}`,
    );
    this.#note("event", `${what}: ${described.join(" and ")}`);
    for (const s of sends) {
      const p = (async () => {
        if (s.route === "webhook") {
          this.counts.webhook++;
          const status = await this.#fleet.post(s.slot, event, 10_000);
          if (status !== 202 && status !== 200) this.counts.undelivered++;
        } else {
          this.counts.kafka++;
          if (s.stale) this.counts.staleProducer++;
          if (!(await this.#kafka.produce(event, s.stale))) this.counts.undelivered++;
        }
      })();
      this.#inflight.add(p);
      void p.finally(() => this.#inflight.delete(p));
    }
  }
}

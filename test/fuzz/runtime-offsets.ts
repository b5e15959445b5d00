import { handledEvents } from "../../src/daemon/intake.ts";
import { sleep } from "../helpers/crash.ts";
import type { KafkaSide, TopicMessage } from "./runtime-kafka.ts";
import type { RuntimeWorld } from "./runtime-world.ts";
import { short } from "./world.ts";

/**
 * The offset rule: a message's offset is committed only once its lane has exported that
 * message's commit or a newer one (README, "Kafka"; Kafka commits a position, so every message
 * before a committed offset counts as handled). The group's committed offsets are polled often;
 * whenever one moves forward, each lane's ledger at its destination is read at once, and every
 * message before the new offset whose event names a commit of a mirrored branch must find its
 * lane's ledger (base or newest SUCCESS) at that commit or at one that was HEAD since, or the
 * branch deleted since (its lane ended). The ledgers are read after the offsets, so a lane
 * that exports just then is taken as having done so in time: the rule can only be lenient by
 * a poll's time, never strict by it.
 */

export interface LaneRecord {
  base: string | null;
  lastSuccess: string | null;
}

/** Reads each lane's ledger at its destination, by `<repository>/<branch>`. */
export type LedgerReader = () => Promise<Map<string, LaneRecord | undefined>>;

interface Advance {
  partition: number;
  from: bigint;
  to: bigint;
  /** When the committed offset was seen. */
  seenAt: number;
  ledgers: Map<string, LaneRecord | undefined>;
}

export interface OffsetCounts {
  polls: number;
  pollErrors: number;
  advances: number;
  /** Messages set against a ledger. */
  checked: number;
  /** Messages the rule does not apply to (ignored branches, deletions, other event types). */
  exempt: number;
  /** Committed offsets seen moving backwards (a redelivery after a rebalance). */
  rewinds: number;
}

export class OffsetWatch {
  readonly #kafka: KafkaSide;
  readonly #world: RuntimeWorld;
  readonly #read: LedgerReader;
  readonly #pollMs: number;
  readonly #last = new Map<number, bigint>();
  readonly #pending: Advance[] = [];
  readonly violations: string[] = [];
  readonly counts: OffsetCounts = {
    polls: 0,
    pollErrors: 0,
    advances: 0,
    checked: 0,
    exempt: 0,
    rewinds: 0,
  };
  #loop: Promise<void> | undefined;
  #stopped = false;

  constructor(kafka: KafkaSide, world: RuntimeWorld, read: LedgerReader, pollMs = 250) {
    this.#kafka = kafka;
    this.#world = world;
    this.#read = read;
    this.#pollMs = pollMs;
  }

  start(): void {
    this.#loop ??= (async () => {
      while (!this.#stopped) {
        try {
          await this.poll();
        } catch {
          // The broker is away (a restart): the next poll sees what was committed meanwhile.
          this.counts.pollErrors++;
        }
        await sleep(this.#pollMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }

  /** Advances whose messages the observer has not read yet. */
  get waiting(): number {
    return this.#pending.length;
  }

  async poll(): Promise<void> {
    this.counts.polls++;
    const committed = await this.#kafka.committed();
    const seenAt = Date.now();
    const moved: [number, bigint, bigint][] = [];
    for (const [p, c] of committed) {
      const last = this.#last.get(p) ?? 0n;
      if (c < last) this.counts.rewinds++;
      if (c > last) moved.push([p, last, c]);
    }
    if (moved.length) {
      const ledgers = await this.#read();
      for (const [partition, from, to] of moved) {
        this.#last.set(partition, to);
        this.#pending.push({ partition, from, to, seenAt, ledgers });
        this.counts.advances++;
      }
    }
    this.#judge();
  }

  #judge(): void {
    for (let i = 0; i < this.#pending.length;) {
      const a = this.#pending[i]!;
      const msgs = this.#kafka.messages(a.partition, a.from, a.to);
      if (!msgs) {
        i++;
        continue;
      }
      this.#pending.splice(i, 1);
      for (const m of msgs) {
        const why = this.#broken(m, a);
        if (why) this.violations.push(why);
      }
    }
  }

  /** Why committing past `m` broke the rule, or undefined. */
  #broken(m: TopicMessage, a: Advance): string | undefined {
    const e = m.event;
    const branch = e && this.#world.repos.find((r) => r.name === e.repo)?.branches.get(e.branch);
    if (
      !e ||
      !e.commit ||
      !branch?.mirrored ||
      !(handledEvents as readonly string[]).includes(e.type)
    ) {
      this.counts.exempt++;
      return undefined;
    }
    this.counts.checked++;
    const ledger = a.ledgers.get(branch.key);
    const ok =
      (ledger?.base && branch.atOrAfter(ledger.base, e.commit)) ||
      (ledger?.lastSuccess && branch.atOrAfter(ledger.lastSuccess, e.commit)) ||
      branch.deletedAfter(e.commit, a.seenAt);
    if (ok) return undefined;
    const iso = (t: number | undefined) => (t ? new Date(t).toISOString().slice(11, 23) : "-");
    const spans = branch.timeline
      .map((s) => `${short(s.commit)} ${iso(s.from)}–${iso(s.to)}`)
      .join(", ");
    return (
      `partition ${m.partition} offset ${m.offset} (${e.type} ${branch.key} at ${short(e.commit)}) ` +
      `is behind committed offset ${a.to}, seen at ${iso(a.seenAt)}, while the lane's ledger ` +
      `holds ${ledger ? `base ${short(ledger.base)}, lastSuccess ${short(ledger.lastSuccess)}` : "nothing"}` +
      `; the branch's HEADs: ${spans}`
    );
  }
}

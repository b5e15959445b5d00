import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { OffsetTracker } from "../../../src/kafka/offsets.ts";
import type { Ticket } from "../../../src/kafka/offsets.ts";

describe("Kafka offset tracking", () => {
  it("commits only the run of finished messages from the front of a partition", () => {
    const t = new OffsetTracker(100);
    const [a, b, c] = ["10", "11", "12"].map((o) => t.read(0, o));
    const other = t.read(1, "5");
    assert.equal(t.finish(b!), undefined, "10 is not finished: nothing may be committed");
    assert.equal(t.finish(c!), undefined);
    assert.equal(t.finish(a!), "13", "10, 11 and 12 are done: resume reading at 13");
    assert.equal(t.finish(other), "6", "partitions are independent");
    assert.equal(t.waiting(0), 0);
  });

  it("says pause at the limit and resume at half of it, once each", () => {
    const t = new OffsetTracker(4);
    const tickets = ["0", "1", "2"].map((o) => t.read(7, o));
    assert.equal(t.pressure(7), undefined);
    tickets.push(t.read(7, "3"));
    assert.equal(t.pressure(7), "pause");
    assert.equal(t.pressure(7), undefined, "said once");
    t.finish(tickets[0]!);
    assert.equal(t.pressure(7), undefined, "3 waiting: still above half");
    t.finish(tickets[1]!);
    assert.equal(t.pressure(7), "resume");
    assert.equal(t.pressure(7), undefined);
  });

  it("forgets everything on a rebalance, and ignores tickets from before it", () => {
    const t = new OffsetTracker(2);
    const old = t.read(0, "1");
    t.read(0, "2");
    assert.equal(t.pressure(0), "pause");
    t.reset();
    assert.equal(t.waiting(0), 0);
    assert.equal(t.finish(old), undefined);
    const again = t.read(0, "1");
    assert.equal(t.finish(again), "2");
  });
});

describe("Kafka offset tracking with redeliveries", () => {
  it("a message delivered twice in one generation leaves one ticket, and its partition commits once it finishes", () => {
    // kafkajs delivers a batch again from the message whose handler threw, in the same generation.
    const t = new OffsetTracker(100);
    const first = t.read(0, "5");
    const again = t.read(0, "5");
    assert.equal(t.waiting(0), 1, "one offset, one ticket");
    assert.equal(t.finish(again), "6");
    assert.equal(t.waiting(0), 0);
    assert.equal(t.finish(first), undefined, "finished already");
  });

  it("a message delivered again after its offset was committed neither holds the partition back nor moves it backwards", () => {
    const t = new OffsetTracker(100);
    assert.equal(t.finish(t.read(0, "1")), "2");
    assert.equal(t.finish(t.read(0, "2")), "3");
    const stale = t.read(0, "1");
    const next = t.read(0, "3");
    assert.equal(t.waiting(0), 1);
    assert.equal(t.finish(next), "4");
    assert.equal(t.finish(stale), undefined);
  });

  it("tells each partition's backlog: uncommitted messages, read and committed offsets, pause", () => {
    const t = new OffsetTracker(2);
    const a = t.read(3, "7");
    t.read(3, "9");
    t.pressure(3);
    assert.deepEqual(t.backlog(), [
      { partition: 3, uncommitted: 2, readOffset: "10", committedOffset: null, paused: true },
    ]);
    t.finish(a);
    t.pressure(3);
    assert.deepEqual(t.backlog(), [
      { partition: 3, uncommitted: 1, readOffset: "10", committedOffset: "8", paused: false },
    ]);
  });
});

type Step =
  | { kind: "read"; partition: number; gap: number }
  | { kind: "redeliver"; partition: number; pick: number }
  | { kind: "finish"; pick: number }
  | { kind: "reset"; rewind: boolean };

/** What the tracker must say, from the messages of the current generation alone. */
class Model {
  generation = 0;
  readonly next = new Map<number, bigint>();
  /** Per partition: offsets read in this generation, and those some delivery of finished. */
  read = new Map<number, Set<bigint>>();
  finished = new Map<number, Set<bigint>>();
  committed = new Map<number, bigint>();

  /** A rebalance; with `rewind`, the partitions are read again from their committed offsets. */
  reset(rewind: boolean): void {
    if (rewind) for (const [p, c] of this.committed) this.next.set(p, c);
    this.generation++;
    this.read = new Map();
    this.finished = new Map();
    this.committed = new Map();
  }

  set(map: Map<number, Set<bigint>>, partition: number): Set<bigint> {
    let s = map.get(partition);
    if (!s) map.set(partition, (s = new Set()));
    return s;
  }

  /** The end of the longest run of finished messages from the front, if any. */
  frontRunEnd(partition: number): bigint | undefined {
    const finished = this.set(this.finished, partition);
    let end: bigint | undefined;
    for (const o of [...this.set(this.read, partition)].sort((a, b) => (a < b ? -1 : 1))) {
      if (!finished.has(o)) break;
      end = o;
    }
    return end;
  }
}

const steps: fc.Arbitrary<Step[]> = fc.array(
  fc.oneof(
    {
      arbitrary: fc.record({
        kind: fc.constant("read" as const),
        partition: fc.nat(2),
        gap: fc.integer({ min: 1, max: 3 }),
      }),
      weight: 4,
    },
    {
      arbitrary: fc.record({
        kind: fc.constant("redeliver" as const),
        partition: fc.nat(2),
        pick: fc.nat(),
      }),
      weight: 2,
    },
    { arbitrary: fc.record({ kind: fc.constant("finish" as const), pick: fc.nat() }), weight: 4 },
    {
      arbitrary: fc.record({ kind: fc.constant("reset" as const), rewind: fc.boolean() }),
      weight: 1,
    },
  ),
  { maxLength: 120 },
);

describe("Kafka offset tracking, any interleaving", () => {
  it("never commits past an unfinished message, and commits everything up to the first unfinished one", () => {
    fc.assert(
      fc.property(
        // Offsets past 2^53 too: they are 64-bit in Kafka.
        fc.bigInt({ min: 0n, max: 2n ** 63n - 1000n }),
        fc.integer({ min: 1, max: 8 }),
        steps,
        (start, maxWaiting, plan) => {
          const t = new OffsetTracker(maxWaiting);
          const m = new Model();
          const handed: { ticket: Ticket; generation: number }[] = [];
          for (const step of plan) {
            switch (step.kind) {
              case "read": {
                const offset = (m.next.get(step.partition) ?? start) + BigInt(step.gap - 1);
                m.next.set(step.partition, offset + 1n);
                handed.push({
                  ticket: t.read(step.partition, offset.toString()),
                  generation: m.generation,
                });
                m.set(m.read, step.partition).add(offset);
                break;
              }
              case "redeliver": {
                const earlier = [...m.set(m.read, step.partition)];
                if (earlier.length === 0) break;
                const offset = earlier[step.pick % earlier.length]!;
                handed.push({
                  ticket: t.read(step.partition, offset.toString()),
                  generation: m.generation,
                });
                break;
              }
              case "finish": {
                if (handed.length === 0) break;
                const { ticket, generation } = handed[step.pick % handed.length]!;
                const p = ticket.partition;
                if (generation === m.generation) m.set(m.finished, p).add(ticket.offset);
                const commit = t.finish(ticket);
                if (commit === undefined) break;
                assert.equal(
                  generation,
                  m.generation,
                  "a ticket from before a reset commits nothing",
                );
                const c = BigInt(commit);
                const before = m.committed.get(p);
                assert.ok(before === undefined || c > before, `commit ${c} after ${before}`);
                for (const o of m.set(m.read, p))
                  if (o < c)
                    assert.ok(m.set(m.finished, p).has(o), `committed ${c} past unfinished ${o}`);
                m.committed.set(p, c);
                break;
              }
              case "reset":
                t.reset();
                m.reset(step.rewind);
                break;
            }
            for (const p of [0, 1, 2]) {
              const end = m.frontRunEnd(p);
              assert.equal(
                m.committed.get(p),
                end === undefined ? undefined : end + 1n,
                `partition ${p} commits up to its first unfinished message`,
              );
              const pending = [...m.set(m.read, p)].filter((o) => end === undefined || o > end);
              assert.equal(
                t.waiting(p),
                pending.length,
                `partition ${p}: one ticket per uncommitted offset`,
              );
            }
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

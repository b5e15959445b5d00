import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { OffsetTracker } from "../../../src/kafka/offsets.ts";

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

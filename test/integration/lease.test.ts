import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { LEASE_PATH } from "../../src/export/reserved.ts";
import { Lease, parseLease } from "../../src/lease/lease.ts";
import { S3Destination } from "../../src/s3/destination.ts";
import { readKey, silentLogger } from "../helpers/mirror.ts";
import { connectStack, createBucket } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

/** The lease against the stack's real MinIO, with a clock the test moves (no sleeping). */
describe("destination lease", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await stack.close();
  });

  async function setup() {
    const bucket = await createBucket(stack);
    const dest = new S3Destination(stack.s3, { bucket, prefix: "m/" });
    let now = Date.parse("2026-11-25T12:00:00Z");
    const clock = {
      now: () => now,
      advance: (ms: number) => {
        now += ms;
      },
    };
    const lease = (owner: string) =>
      new Lease({
        dest,
        owner,
        repository: "repo",
        branch: "main",
        ttlMs: 9000,
        logger: silentLogger,
        now: clock.now,
      });
    const record = async () =>
      parseLease((await readKey(stack, bucket, `m/${LEASE_PATH}`)).toString());
    return { lease, clock, record };
  }

  it("one owner at a time: the second is refused until the first's lease expires, then takes over in a new epoch", async () => {
    const { lease, clock, record } = await setup();
    const a = lease("daemon-a");
    const b = lease("daemon-b");
    assert.equal(await a.ensure(), true, "a new holder");
    assert.equal((await record())?.owner, "daemon-a");
    assert.equal(a.epoch, 1);
    await assert.rejects(b.ensure(), { code: "LM_LEASE_HELD", message: /daemon-a/ });

    // a goes silent (paused or dead); past the TTL b takes over.
    clock.advance(9001);
    assert.equal(await b.ensure(), true);
    assert.deepEqual(
      { owner: (await record())?.owner, epoch: b.epoch },
      { owner: "daemon-b", epoch: 2 },
    );
    // a wakes up: its lease is gone, whether it asks its clock or S3.
    assert.equal(a.held, false);
    assert.throws(() => a.assertHeld(), { code: "LM_LEASE_LOST" });
    await assert.rejects(a.renew(), { code: "LM_LEASE_LOST" });
    assert.equal((await record())?.owner, "daemon-b", "a's attempts changed nothing");
  });

  it("a holder renews within its TTL without being taken over, and a renewal by a stale ETag fails", async () => {
    const { lease, clock, record } = await setup();
    const a = lease("daemon-a");
    const b = lease("daemon-b");
    await a.ensure();
    clock.advance(5000);
    assert.equal(await a.ensure(), false, "renewed, same holder");
    clock.advance(5000);
    assert.equal(a.held, true, "renewed 5 s ago with a 9 s TTL");
    await assert.rejects(b.ensure(), { code: "LM_LEASE_HELD" });
    const first = await record();
    await a.renew();
    assert.notEqual((await record())?.token, first?.token);
    assert.equal((await record())?.epoch, 1, "renewals keep the epoch");
  });

  it("a paused holder treats its lease as lost a third of a TTL before it expires", async () => {
    const { lease, clock } = await setup();
    const a = lease("daemon-a");
    await a.ensure();
    clock.advance(5000);
    assert.doesNotThrow(() => a.assertHeld());
    clock.advance(1001);
    assert.throws(() => a.assertHeld(), { code: "LM_LEASE_LOST" });
  });

  it("release hands over at once; the same owner after a restart carries on in its epoch", async () => {
    const { lease, record } = await setup();
    const a = lease("daemon-a");
    await a.ensure();
    await a.release();
    const b = lease("daemon-b");
    assert.equal(await b.ensure(), true, "no wait for the TTL");
    assert.equal(b.epoch, 2);
    const bAgain = lease("daemon-b");
    assert.equal(await bAgain.ensure(), false, "a restart of the same owner is not a new holder");
    assert.equal(bAgain.epoch, 2);
    assert.equal((await record())?.owner, "daemon-b");
  });

  it("after an idle spell past the TTL, its last holder takes it back in the same epoch", async () => {
    const { lease, clock } = await setup();
    const a = lease("daemon-a");
    assert.equal(await a.ensure(), true);
    clock.advance(60_000);
    assert.equal(await a.ensure(), false, "nobody held it meanwhile: nothing to read again");
    assert.equal(a.epoch, 1);
  });

  it("held through work longer than its TTL, even when the work starts late in the lease's life", async () => {
    const bucket = await createBucket(stack);
    const dest = new S3Destination(stack.s3, { bucket, prefix: "" });
    let renewals = 0;
    const a = new Lease({
      dest,
      owner: "daemon-a",
      repository: "repo",
      branch: "main",
      ttlMs: 3000,
      logger: silentLogger,
      onRenewed: () => renewals++,
    });
    await a.ensure();
    // The run loads its ledger and measures lag before it starts writing: half the TTL gone.
    await sleep(1500);
    let checks = 0;
    await a.hold(AbortSignal.timeout(30_000), async (signal) => {
      const until = Date.now() + 4500;
      while (Date.now() < until) {
        a.assertHeld();
        checks++;
        await sleep(100, undefined, { signal });
      }
    });
    assert.ok(checks > 30);
    assert.ok(renewals >= 3, `${renewals} renewals in 4.5 s of a 3 s lease`);
  });

  it("of two daemons racing for a free lease, exactly one gets it (S3 If-None-Match)", async () => {
    const { lease, record } = await setup();
    const racers = Array.from({ length: 6 }, (_, i) => lease(`racer-${i}`));
    const outcomes = await Promise.allSettled(racers.map((r) => r.ensure()));
    const won = outcomes.filter((o) => o.status === "fulfilled");
    assert.equal(won.length, 1, JSON.stringify(outcomes.map((o) => o.status)));
    const winner = racers[outcomes.findIndex((o) => o.status === "fulfilled")]!;
    assert.equal(winner.held, true);
    assert.equal(racers.filter((r) => r.held).length, 1);
    assert.match((await record())?.owner ?? "", /^racer-\d$/);
  });
});

import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { DeleteObjectCommand } from "@aws-sdk/client-s3";
import { LEASE_PATH } from "../../src/export/reserved.ts";
import { LeaseHeldError } from "../../src/errors.ts";
import { Lease, parseLease } from "../../src/lease/lease.ts";
import { createS3Client } from "../../src/s3/client.ts";
import { S3Destination } from "../../src/s3/destination.ts";
import { startFaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
import type { Fault } from "../helpers/fault-injecting-proxy.ts";
import { headKey, readKey, silentLogger } from "../helpers/mirror.ts";
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
    return { lease, clock, record, bucket };
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

  it("regression: a lease that names split runs is waited out even by its own owner restarted under the same name", async () => {
    const { lease, clock, record } = await setup();
    const a = lease("daemon-a");
    await a.ensure();
    await a.openRun("run-1");
    assert.deepEqual((await record())?.runs, ["run-1"]);
    // Killed (or stopped: release leaves such a lease to expire), then back under the same name.
    await a.release();
    const again = lease("daemon-a");
    await assert.rejects(again.ensure(), LeaseHeldError, "its run's workers may still write");
    clock.advance(9001);
    assert.equal(await again.ensure(), false);
    assert.equal((await record())?.runs, undefined, "the new record names no run");
  });

  it("regression: a run opened or closed while a renewal is under way does not lose the lease", async () => {
    // Seen in the bench: the owner's closeRun raced the hold's own renewal with the same
    // version, lost, and took the lease for taken over.
    const { lease, record } = await setup();
    const a = lease("daemon-a");
    await a.ensure();
    await Promise.all([a.renew(), a.openRun("run-1"), a.renew(), a.openRun("run-2")]);
    assert.deepEqual((await record())?.runs, ["run-1", "run-2"]);
    await Promise.all([a.closeRun("run-1", 0), a.renew(), a.closeRun("run-2", 0)]);
    assert.ok(a.held);
    assert.equal((await record())?.runs, undefined, "the last write names no run");
  });

  it("regression: a lease whose closeRun failed is left to expire on release, not handed over", async () => {
    const { lease, record } = await setup();
    const a = lease("daemon-a");
    await a.ensure();
    await a.openRun("run-1");
    // The write that would take the run out never happens (its request is cut at once).
    await assert.rejects(a.closeRun("run-1", 0, AbortSignal.abort()));
    assert.deepEqual((await record())?.runs, ["run-1"], "the object still names the run");
    assert.equal(a.held, false, "a failed closeRun gives the lease up");
    await a.release();
    await assert.rejects(lease("daemon-b").ensure(), LeaseHeldError, "its workers may still write");
  });

  it("regression: a lease is not handed over while a closed run's workers may still write", async () => {
    // Seen by review: a shutdown during the owner's wait after closeRun released the lease at
    // once, and a new holder wrote while views from before the close still let workers write.
    const { lease } = await setup();
    const a = lease("daemon-a");
    await a.ensure();
    await a.openRun("run-1");
    await a.closeRun("run-1", 60_000);
    await a.release();
    await assert.rejects(lease("daemon-b").ensure(), LeaseHeldError);
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

  it("a holder whose lease object is deleted under it stops writing at its next renewal, not at its deadline", async () => {
    const { lease, clock, record, bucket } = await setup();
    const a = lease("daemon-a");
    await a.ensure();
    let writes = 0;
    const holding = a.hold(AbortSignal.timeout(30_000), async (signal) => {
      for (;;) {
        a.assertHeld();
        writes++;
        await sleep(50, undefined, { signal });
      }
    });
    holding.catch(() => undefined);
    await sleep(200);
    await stack.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: `m/${LEASE_PATH}` }));
    const deletedAt = Date.now();
    // A third of the TTL on: the renewal is due, and its If-Match finds no object (404).
    clock.advance(3001);
    // By its clocks A could go on for another 3 s; it must stop at the renewal (ticks of 1.5 s).
    const outcome = await Promise.race([
      holding.then(
        () => "resolved",
        (err: unknown) => err,
      ),
      sleep(2500, "still writing"),
    ]);
    assert.equal((outcome as { code?: string }).code, "LM_LEASE_LOST", String(outcome));
    assert.match(String((outcome as Error).message), /gone/);
    assert.ok(Date.now() - deletedAt < 2500);
    assert.ok(writes > 0);
    assert.equal(a.held, false);
    assert.throws(() => a.assertHeld(), { code: "LM_LEASE_LOST" });
    // Whoever comes next creates a new lease object without waiting.
    const b = lease("daemon-b");
    assert.equal(await b.ensure(), true);
    assert.equal((await record())?.owner, "daemon-b");
  });

  /**
   * Holder A's renewals go through a fault proxy that gives every lease write `fault` once the
   * work has started, while the work has a request in flight: a slow upload that would end
   * long after A's lease. A must abort it and stop by its deadline, before another daemon may
   * take over (its lease's expiresAt).
   */
  async function renewalFailsUnderWork(fault: Fault) {
    const bucket = await createBucket(stack);
    let faulty = false;
    const proxy = await startFaultInjectingProxy(stack.env.AWS_ENDPOINT_URL, {
      flavor: "s3",
      rates: { [fault]: 1 },
      eligible: (method, url) => faulty && method === "PUT" && url.includes("lease.json"),
    });
    const s3 = createS3Client({
      endpoint: proxy.url,
      region: stack.env.AWS_REGION,
      credentials: {
        accessKeyId: stack.env.AWS_ACCESS_KEY_ID,
        secretAccessKey: stack.env.AWS_SECRET_ACCESS_KEY,
      },
      // Longer than the whole test: only the lease's own deadline can end the stalled request.
      idleTimeoutMs: 60_000,
    });
    try {
      const dest = new S3Destination(s3, { bucket, prefix: "" });
      const a = new Lease({
        dest,
        owner: "daemon-a",
        repository: "repo",
        branch: "main",
        ttlMs: 3000,
        logger: silentLogger,
      });
      await a.ensure();
      const taken = parseLease((await readKey(stack, bucket, LEASE_PATH)).toString())!;
      faulty = true;
      const size = 100 * 1024;
      let sent = 0;
      // 1 KiB every 100 ms: 10 s of upload, far past the 3 s lease.
      const slow = new Readable({
        read() {
          setTimeout(() => {
            sent += 1024;
            this.push(Buffer.alloc(1024, 97));
            if (sent >= size) this.push(null);
          }, 100);
        },
      });
      const started = Date.now();
      let stoppedAt = 0;
      await assert.rejects(
        a.hold(AbortSignal.timeout(60_000), async (signal) => {
          try {
            await dest.putStream(
              "slow.bin",
              slow,
              size,
              { contentType: undefined, metadata: {} },
              signal,
            );
          } finally {
            stoppedAt = Date.now();
          }
        }),
        { code: "LM_LEASE_LOST" },
      );
      const returnedAt = Date.now();
      const expiresAt = Date.parse(taken.expiresAt);
      assert.ok(
        stoppedAt < expiresAt,
        `the upload ran until ${new Date(stoppedAt).toISOString()}, past the lease's ${taken.expiresAt}`,
      );
      assert.ok(
        returnedAt < expiresAt + 500,
        `hold returned ${returnedAt - expiresAt} ms after the lease expired`,
      );
      assert.ok(sent < size, "the upload was still sending when it was stopped");
      assert.equal(a.held, false);
      assert.throws(() => a.assertHeld(), { code: "LM_LEASE_LOST" });
      await sleep(200);
      await assert.rejects(headKey(stack, bucket, "slow.bin"), { name: "NotFound" });
      assert.ok(proxy.injected()[fault] >= 1);
      return { stoppedAfterMs: stoppedAt - started, expiresAfterMs: expiresAt - started };
    } finally {
      s3.destroy();
      await proxy.close();
    }
  }

  it("a renewal that hangs does not keep its holder writing past its deadline", async (t) => {
    const m = await renewalFailsUnderWork("stall");
    t.diagnostic(
      `stopped ${m.stoppedAfterMs} ms into the work; the lease ran out at ${m.expiresAfterMs} ms`,
    );
  });

  it("renewals answered only with 503s do not keep their holder writing past its deadline", async (t) => {
    const m = await renewalFailsUnderWork("slowdown");
    t.diagnostic(
      `stopped ${m.stoppedAfterMs} ms into the work; the lease ran out at ${m.expiresAfterMs} ms`,
    );
  });
});

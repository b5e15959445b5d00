import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Kafka, logLevel } from "kafkajs";
import type { Admin, Producer } from "kafkajs";
import type { DaemonStatus } from "../../src/daemon/daemon.ts";
import { laneKey, partitionOf } from "../../src/kafka/client.ts";
import {
  commitConcurrently,
  daemonAddress,
  mirroredKeys,
  Prng,
  seedFrom,
  sleep,
  tail,
} from "../helpers/crash.ts";
import {
  commitEvent,
  postWebhook,
  spawnDaemon,
  waitFor,
  writeDaemonConfig,
} from "../helpers/daemon.ts";
import type { DaemonProcess, DaemonSettings } from "../helpers/daemon.ts";
import {
  branchesOverPartitions,
  concurrentWriters,
  daemonStatus,
  exportIntervals,
  leasesTaken,
  median,
  metricSamples,
  metricsText,
} from "../helpers/group.ts";
import type { ExportInterval } from "../helpers/group.ts";
import { assertMirrorEqual, commitPaths, listKeys, statusKeys } from "../helpers/mirror.ts";
import type { SeedObject } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo, uniqueName } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const PARTITIONS = 6;

describe("consumer group", () => {
  let stack: Stack;
  let kafka: Kafka;
  let admin: Admin;
  let producer: Producer | undefined;
  const daemons: DaemonProcess[] = [];

  before(async () => {
    stack = await connectStack();
    kafka = new Kafka({ brokers: stack.env.KAFKA_BROKERS.split(","), logLevel: logLevel.NOTHING });
    admin = kafka.admin();
    await admin.connect();
  });
  after(async () => {
    for (const d of daemons) if (d.child.exitCode === null) d.child.kill("SIGTERM");
    await Promise.race([Promise.all(daemons.map((d) => d.exited)), sleep(15_000)]);
    for (const d of daemons) if (d.child.exitCode === null) d.child.kill("SIGKILL");
    await producer?.disconnect();
    await admin.disconnect();
    await stack.close();
  });

  const auth = () => ({ authorization: `Bearer ${stack.env.LAKEFSACTION_MIRROR_TOKEN}` });

  /** Whether `statuses` are group members that hold every partition exactly once between them. */
  function holdAllPartitions(statuses: DaemonStatus[]): boolean {
    const held = statuses.flatMap((s) => s.ownership.partitions ?? []);
    return (
      statuses.every((s) => s.kafka === "running" && (s.ownership.partitions?.length ?? 0) > 0) &&
      held.length === PARTITIONS &&
      new Set(held).size === PARTITIONS
    );
  }

  it("three daemons in one consumer group share 12 lanes; a kill -9 and a fourth daemon converge every branch, commit every offset, and never let two daemons write one destination at once", async () => {
    const began = Date.now();
    const prng = new Prng(seedFrom("GROUP_TEST_SEED"));
    console.log(`seed ${prng.seed} (GROUP_TEST_SEED replays the object choices)`);
    const repo = await createRepo(stack, "group");
    const bucket = await createBucket(stack, "group");
    const branches = branchesOverPartitions(repo, PARTITIONS, 2);
    assert.equal(branches.length, 12);

    // What each branch holds, to pick overwrites and deletes from.
    const present = new Map<string, Set<string>>();
    const body = (branch: string, path: string, round: number) =>
      Buffer.concat([
        Buffer.from(`${branch} round ${round} ${path}\n`),
        prng.bytes(prng.int(64, 4096)),
      ]);
    await commitConcurrently(
      stack,
      repo,
      "main",
      Array.from({ length: 20 }, (_, i) => ({
        path: `base/${i}.bin`,
        content: body("main", `base/${i}.bin`, 0),
      })),
      [],
      "base",
    );
    for (const b of branches) {
      await stack.lakefs.createBranch(repo, b, "main");
      present.set(b, new Set(Array.from({ length: 20 }, (_, i) => `base/${i}.bin`)));
    }

    const topic = uniqueName("group-events");
    const groupId = uniqueName("group");
    const kafkaSettings = {
      topic,
      groupId,
      partitions: PARTITIONS,
      sessionTimeoutMs: 6000,
      heartbeatIntervalMs: 1000,
    };
    const settings = (forwardToKafka: boolean): DaemonSettings => ({
      mirrors: [{ repository: repo, branches: ["b-*"], destination: `s3://${bucket}/{branch}/` }],
      kafka: kafkaSettings,
      forwardToKafka,
      reconcileIntervalSeconds: 2,
      extra: {
        lease: { enabled: true, ttlSeconds: 6 },
        scheduler: { maxParallelLanes: 4, retryBaseSeconds: 1, retryMaxSeconds: 2 },
        export: { concurrency: 4, copyMode: "stream" },
        shutdown: { graceSeconds: 2 },
      },
    });
    const names = ["d1", "d2", "d3", "d4"];
    const spawn = (forward: boolean) => {
      const d = spawnDaemon(stack, writeDaemonConfig(stack, settings(forward)).file);
      daemons.push(d);
      return d;
    };
    const logDir = mkdtempSync(join(tmpdir(), "group-test-logs-"));
    const keepLogs = () => {
      daemons.forEach((d, i) => writeFileSync(join(logDir, `${names[i]}.log`), d.output()));
    };

    try {
      const first = [spawn(true), spawn(false), spawn(false)];
      const urls = await Promise.all(first.map((d) => daemonAddress(d, 60_000)));
      const formed = await waitFor(
        "three daemons holding the 6 partitions between them",
        async () => {
          const statuses = await Promise.all(urls.map(daemonStatus));
          return holdAllPartitions(statuses) ? statuses : undefined;
        },
        90_000,
      );
      console.log(
        `group formed ${((Date.now() - began) / 1000).toFixed(1)} s after the start: ${formed
          .map((s, i) => `${names[i]} [${s.ownership.partitions?.join(",")}]`)
          .join(" ")}`,
      );

      const heads = new Map<string, string>();
      /** One commit on every branch (adds, overwrites, deletes), and its webhook to daemon 1. */
      const round = async (n: number) => {
        await Promise.all(
          branches.map(async (b) => {
            const have = present.get(b)!;
            const existing = [...have];
            const overwrites = n === 0 ? [] : prng.sample(existing, prng.int(10, 20));
            const deletes =
              n === 0
                ? []
                : prng.sample(
                    existing.filter((p) => !overwrites.includes(p)),
                    prng.int(5, 10),
                  );
            const added = Array.from(
              { length: n === 0 ? 40 : prng.int(15, 30) },
              (_, i) => `data/r${n}/${i}.bin`,
            );
            const puts: SeedObject[] = [...overwrites, ...added].map((path) => ({
              path,
              content: body(b, path, n),
            }));
            const commit = await commitConcurrently(stack, repo, b, puts, deletes, `round ${n}`, 4);
            for (const p of deletes) have.delete(p);
            for (const p of added) have.add(p);
            heads.set(b, commit);
          }),
        );
        const answers = await Promise.all(
          branches.map((b) => postWebhook(urls[0]!, commitEvent(repo, b, heads.get(b)!), auth())),
        );
        assert.deepEqual(new Set(answers.map((r) => r.status)), new Set([202]));
      };

      // Rounds until daemon 2 or 3 is caught exporting while it holds partitions.
      let victim: { index: number; status: DaemonStatus; metrics: string } | undefined;
      let roundNo = 0;
      while (!victim) {
        if (roundNo >= 6) assert.fail("daemon 2 or 3 was never seen exporting");
        await round(roundNo++);
        if (roundNo < 2) continue;
        const deadline = Date.now() + 5_000;
        while (!victim && Date.now() < deadline) {
          const candidates = await Promise.all([1, 2].map((i) => daemonStatus(urls[i]!)));
          const found = candidates.findIndex(
            (s) =>
              (s.ownership.partitions?.length ?? 0) > 0 &&
              s.lanes.some((l) => l.state === "exporting"),
          );
          if (found >= 0) {
            const index = found + 1;
            victim = {
              index,
              status: candidates[found]!,
              metrics: await metricsText(urls[index]!),
            };
          } else await sleep(20);
        }
      }
      const killedAt = Date.now();
      const killed = first[victim.index]!;
      killed.child.kill("SIGKILL");
      await killed.exited;
      const victimName = names[victim.index]!;
      const survivor = victim.index === 1 ? 2 : 1;
      console.log(
        `kill -9 ${victimName} after ${roundNo} rounds, holding partitions [${victim.status.ownership.partitions?.join(",")}] and lanes ${victim.status.lanes
          .map((l) => `${l.branch}:${l.state}`)
          .join(" ")}`,
      );

      const fourth = spawn(false);
      // Commits keep coming while the group notices the kill and lets the fourth daemon in.
      await round(roundNo++);
      await round(roundNo++);
      const url4 = await daemonAddress(fourth, 60_000);
      const live = [urls[0]!, urls[survivor]!, url4];

      await waitFor(
        "every branch's destination to hold a SUCCESS status file for its HEAD",
        async () => {
          for (const b of branches) {
            const keys = statusKeys((await listKeys(stack, bucket, `${b}/`)).keys());
            const head = heads.get(b)!;
            if (!keys.some((k) => k.startsWith(`EXPORT_${head}_`) && k.endsWith("_SUCCESS")))
              return false;
          }
          return true;
        },
        120_000,
      );
      const convergedAt = Date.now();
      console.log(
        `converged ${((convergedAt - killedAt) / 1000).toFixed(1)} s after the kill, ${(
          (convergedAt - began) /
          1000
        ).toFixed(1)} s after the start`,
      );
      for (const b of branches) {
        const head = heads.get(b)!;
        assert.equal((await stack.lakefs.getBranch(repo, b)).commit_id, head);
        await assertMirrorEqual(stack, repo, head, bucket, `${b}/`);
        assert.deepEqual(
          await mirroredKeys(stack, bucket, `${b}/`),
          await commitPaths(stack, repo, head),
          `the keys under ${b}/`,
        );
      }

      const regrouped = await waitFor(
        "the two survivors and the fourth daemon to hold the 6 partitions between them",
        async () => {
          const statuses = await Promise.all(live.map(daemonStatus));
          return holdAllPartitions(statuses) ? statuses : undefined;
        },
        60_000,
      );
      console.log(
        `after the kill: ${regrouped
          .map(
            (s, i) => `${["d1", names[survivor], "d4"][i]} [${s.ownership.partitions?.join(",")}]`,
          )
          .join(" ")}`,
      );

      // Every commit event's offset committed: the group's position at each high watermark.
      const positions = await waitFor(
        "the group to commit every partition up to its high watermark",
        async () => {
          const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
          const ends = await admin.fetchTopicOffsets(topic);
          const rows = ends.map((e) => ({
            partition: e.partition,
            high: e.high,
            committed:
              committed?.partitions.find((p) => p.partition === e.partition)?.offset ?? "-1",
          }));
          const done = rows.every(
            (r) => r.committed === r.high || (r.high === "0" && r.committed === "-1"),
          );
          return done ? rows : undefined;
        },
        60_000,
      );
      assert.equal(positions.length, PARTITIONS);
      const events = positions.reduce((n, r) => n + Number(r.high), 0);
      assert.equal(events, roundNo * branches.length, "one Kafka message per webhook");
      console.log(
        `offsets committed: ${positions.map((r) => `p${r.partition}=${r.committed}/${r.high}`).join(" ")}`,
      );

      // No destination written by two daemons at once.
      const intervals: ExportInterval[] = daemons.flatMap((d, i) =>
        exportIntervals(names[i]!, d.output()),
      );
      const overlapping = concurrentWriters(intervals);
      console.log(
        `${intervals.length} export lines, ${overlapping.length} overlapping pairs of different daemons at one destination`,
      );
      assert.equal(
        overlapping.length,
        0,
        overlapping
          .map(([a, b]) => `${JSON.stringify(a)}\n  overlaps ${JSON.stringify(b)}`)
          .join("\n"),
      );

      // The killed daemon's lanes were taken over by the others.
      assert.ok(victim.status.lanes.length > 0, `${victimName} had no lanes`);
      const handOffs: number[] = [];
      for (const lane of victim.status.lanes) {
        const next = intervals
          .filter((x) => x.daemon !== victimName && x.branch === lane.branch && x.end > killedAt)
          .sort((a, b) => a.end - b.end)[0];
        assert.ok(next, `nobody exported ${lane.branch} after ${victimName} was killed`);
        const ms = next.end - killedAt;
        handOffs.push(ms);
        const lease = daemons
          .flatMap((d, i) => leasesTaken(names[i]!, d.output()))
          .filter((l) => l.branch === lane.branch && l.previousOwner === victim.status.owner)
          .sort((a, b) => a.at - b.at)[0];
        console.log(
          `hand-off ${lane.branch} (${lane.state} at the kill) -> ${next.daemon}: first export line ${ms} ms after the kill (its run began at +${next.start - killedAt} ms, lease epoch ${next.leaseEpoch}; lease taken from ${victimName} at +${lease ? lease.at - killedAt : "?"} ms)`,
        );
      }
      console.log(`hand-off times (ms): ${handOffs.join(", ")}; median ${median(handOffs)} ms`);

      // Lease events and exports per daemon ("extra lease requests per export").
      const liveByName = new Map([
        ["d1", urls[0]!],
        [names[survivor]!, urls[survivor]!],
        ["d4", url4],
      ]);
      for (const name of names) {
        const text =
          name === victimName ? victim.metrics : await metricsText(liveByName.get(name)!);
        const lease = [...metricSamples(text, "lakefs_mirror_lease_events_total")]
          .map(([labels, v]) => `${labels.replace(/^event="(.*)"$/, "$1")}=${v}`)
          .join(" ");
        const exported = [...metricSamples(text, "lakefs_mirror_exports_total").values()].reduce(
          (a, b) => a + b,
          0,
        );
        const lines = intervals.filter((x) => x.daemon === name).length;
        console.log(
          `${name}${name === victimName ? " (killed; metrics from just before the kill)" : ""}: ${lines} export lines, exports_total ${exported}, lease events ${lease || "none"}`,
        );
      }
      console.log(`whole test ${((Date.now() - began) / 1000).toFixed(1)} s; logs in ${logDir}`);
    } catch (err) {
      keepLogs();
      console.log(`daemon logs in ${logDir}`);
      for (const [i, d] of daemons.entries())
        console.log(`--- ${names[i]}\n${tail(d.output(), 30)}`);
      throw err;
    }
    keepLogs();
  });

  it("a lane's key maps to the partition the producer puts its events in", async () => {
    const topic = uniqueName("keys");
    await admin.createTopics({
      topics: [{ topic, numPartitions: PARTITIONS }],
      waitForLeaders: true,
    });
    producer = kafka.producer();
    await producer.connect();
    const keys = Array.from({ length: 60 }, (_, i) => laneKey(uniqueName("repo"), `branch-${i}`));
    const expected = new Map<number, number>();
    for (const key of keys) {
      const [meta] = await producer.send({ topic, messages: [{ key, value: "{}" }] });
      assert.ok(meta);
      assert.equal(meta.partition, partitionOf(key, PARTITIONS), key);
      expected.set(meta.partition, (expected.get(meta.partition) ?? 0) + 1);
    }
    assert.ok(expected.size >= 4, `60 keys landed in only ${expected.size} partitions`);
    // The broker's own count per partition agrees.
    const ends = await admin.fetchTopicOffsets(topic);
    assert.deepEqual(
      new Map(ends.filter((e) => e.high !== "0").map((e) => [e.partition, Number(e.high)])),
      expected,
    );
  });
});

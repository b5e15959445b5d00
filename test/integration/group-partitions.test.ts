import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Kafka, logLevel } from "kafkajs";
import type { Admin } from "kafkajs";
import { laneKey, partitionOf } from "../../src/kafka/client.ts";
import { sample, scrape, shortWindows, startObservedDaemon } from "../helpers/convergence.ts";
import type { ObservedDaemon } from "../helpers/convergence.ts";
import { commitEvent, waitFor } from "../helpers/daemon.ts";
import { branchesOverPartitions, daemonStatus } from "../helpers/group.ts";
import { commitObjects, listKeys, statusKeys } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo, uniqueName } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const BEFORE = 3;
const AFTER = 6;

describe("consumer group across a change of the topic's partitions", () => {
  let stack: Stack;
  let kafka: Kafka;
  let admin: Admin;
  const running = new Set<ObservedDaemon>();

  before(async () => {
    stack = await connectStack();
    kafka = new Kafka({ brokers: stack.env.KAFKA_BROKERS.split(","), logLevel: logLevel.NOTHING });
    admin = kafka.admin();
    await admin.connect();
  });
  after(async () => {
    await Promise.allSettled([...running].map((d) => d.daemon.close()));
    await admin.disconnect();
    await stack.close();
  });

  it("partitions added to the topic (createPartitions) leave no lane without an owner: every lane is exported after the change and after a daemon restarts", async (t) => {
    const repo = await createRepo(stack, "repartition");
    const bucket = await createBucket(stack, "repartition");
    // One lane in each partition of the grown topic; before the change they share 3.
    const branches = branchesOverPartitions(repo, AFTER, 1);
    for (const b of branches) await stack.lakefs.createBranch(repo, b, "main");
    const topic = uniqueName("repartition-events");
    const groupId = uniqueName("repartition");
    await admin.createTopics({ topics: [{ topic, numPartitions: BEFORE }], waitForLeaders: true });

    const checkpoints = new Map<string, string>();
    const start = async (name: string): Promise<ObservedDaemon> => {
      const d = await startObservedDaemon(stack, {
        mirrors: [{ repository: repo, branches: ["b-*"], destination: `s3://${bucket}/{branch}/` }],
        // No periodic pass: after start-up and each rebalance, only events move a lane.
        reconcileIntervalSeconds: 0,
        ...(checkpoints.has(name) ? { checkpointPath: checkpoints.get(name)! } : {}),
        extra: shortWindows({
          kafka: {
            brokers: stack.env.KAFKA_BROKERS.split(","),
            topic,
            groupId,
            partitions: BEFORE,
            sessionTimeoutMs: 6000,
            heartbeatIntervalMs: 1000,
            reconnectMaxSeconds: 2,
            // kafkajs rejoins the group once its metadata shows the new partitions.
            metadataMaxAgeMs: 2000,
          },
          lease: { enabled: true, ttlSeconds: 6, owner: name },
          shutdown: { graceSeconds: 2 },
        }),
      });
      checkpoints.set(name, d.checkpointPath);
      running.add(d);
      return d;
    };
    const stop = async (d: ObservedDaemon) => {
      await d.daemon.close();
      running.delete(d);
    };
    const group = [await start("d1"), await start("d2")];
    const evidence = async <T>(p: Promise<T>): Promise<T> => {
      try {
        return await p;
      } catch (err) {
        const statuses = await Promise.all(
          group.map(async (d) => JSON.stringify((await daemonStatus(d.url)).ownership)),
        );
        const logs = group.map((d) =>
          d
            .logText()
            .split("\n")
            .filter((l) => /"component":"kafka"|another daemon|lane moved/.test(l))
            .slice(-12)
            .join("\n"),
        );
        throw new Error(
          `${(err as Error).message}\nownership: ${statuses.join(" ")}\n${logs.map((l, i) => `--- d${i + 1}\n${l}`).join("\n")}`,
          { cause: err },
        );
      }
    };
    /** The two daemons hold the topic's `count` partitions between them, once each. */
    const shared = (count: number) =>
      evidence(
        waitFor(
          `two daemons holding ${count} partitions`,
          async () => {
            const statuses = await Promise.all(group.map((d) => daemonStatus(d.url)));
            const held = statuses.flatMap((s) => s.ownership.partitions ?? []);
            const ok =
              statuses.every((s) => s.kafka === "running") &&
              held.length === count &&
              new Set(held).size === count;
            return ok ? statuses : undefined;
          },
          60_000,
        ),
      );
    /** Every branch's destination has a SUCCESS status file for `heads`. */
    const exported = (heads: Map<string, string>, what: string) =>
      evidence(
        waitFor(
          `every lane exported ${what}`,
          async () => {
            for (const [b, head] of heads) {
              const keys = statusKeys((await listKeys(stack, bucket, `${b}/`)).keys());
              if (!keys.some((k) => k.startsWith(`EXPORT_${head}_`) && k.endsWith("_SUCCESS")))
                return false;
            }
            return true;
          },
          60_000,
        ),
      );
    const commitAll = async (round: string) => {
      const heads = new Map<string, string>();
      for (const b of branches)
        heads.set(b, await commitObjects(stack, repo, b, [{ path: `${round}.txt`, content: b }]));
      return heads;
    };
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    // Reads the topic's metadata before the change, and keeps it (kafkajs: for 5 minutes).
    const stale = kafka.producer({ allowAutoTopicCreation: false });
    await producer.connect();
    await stale.connect();
    try {
      /** One event per branch, from `via`, which counts `count` partitions. */
      const publish = async (heads: Map<string, string>, via = producer, count = AFTER) => {
        for (const [b, head] of heads) {
          const [meta] = await via.send({
            topic,
            acks: -1,
            messages: [
              { key: laneKey(repo, b), value: JSON.stringify(commitEvent(repo, b, head)) },
            ],
          });
          assert.equal(meta?.partition, partitionOf(laneKey(repo, b), count), b);
        }
      };

      await shared(BEFORE);
      const first = new Map<string, string>();
      for (const b of branches) first.set(b, (await stack.lakefs.getBranch(repo, b)).commit_id);
      await exported(first, "its first commit");
      await publish(first, stale, BEFORE);

      await admin.createPartitions({ topicPartitions: [{ topic, count: AFTER }] });
      const changedAt = Date.now();
      const formed = await shared(AFTER);
      t.diagnostic(
        `group shares ${AFTER} partitions ${Date.now() - changedAt} ms after createPartitions: ${formed
          .map((s) => `${s.owner} [${s.ownership.partitions?.join(",")}]`)
          .join(" ")}`,
      );
      const second = await commitAll("after-change");
      await publish(second);
      await exported(second, "after the partition change");

      // A restart: the group rebalances; each pass that follows covers its daemon's lanes.
      const third = await commitAll("before-restart");
      await stop(group[1]!);
      group[1] = await start("d2");
      await shared(AFTER);
      await exported(third, "after a restart, by the reconciler alone");

      const fourth = await commitAll("after-restart");
      await publish(fourth);
      await exported(fourth, "after a restart, by events");

      // Events keyed by the old count land where no key maps now: whoever holds them handles them.
      const fifth = await commitAll("stale-producer");
      await publish(fifth, stale, BEFORE);
      await exported(fifth, "by events from a producer that still counts 3 partitions");
      // Each event was handled where it arrived, and its offset committed.
      await evidence(
        waitFor(
          "the group to commit every partition up to its end",
          async () => {
            const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
            const ends = await admin.fetchTopicOffsets(topic);
            return ends.every(
              (e) =>
                e.high === "0" ||
                committed?.partitions.find((p) => p.partition === e.partition)?.offset === e.high,
            );
          },
          30_000,
        ),
      );
      let ignored = 0;
      for (const d of group)
        ignored += sample(await scrape(d.url), "lakefs_mirror_intake_events_total", {
          source: "kafka",
          result: "ignored",
        });
      assert.equal(ignored, 0, "no event was answered as another daemon's");
      const reads = group.flatMap((d) =>
        d
          .logs()
          .filter((l) => l.msg === "partitions assigned")
          .map((l) => `${String(l.partitionCount)} in ${String(l.countReadInMs)} ms`),
      );
      t.diagnostic(`partition counts read at each join: ${reads.join(", ")}`);
    } finally {
      await producer.disconnect();
      await stale.disconnect();
    }
  });
});

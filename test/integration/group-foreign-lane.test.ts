import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Kafka, logLevel } from "kafkajs";
import type { Admin } from "kafkajs";
import { laneKey, partitionOf } from "../../src/kafka/client.ts";
import { scrape, shortWindows, startObservedDaemon } from "../helpers/convergence.ts";
import type { ObservedDaemon } from "../helpers/convergence.ts";
import { commitEvent, waitFor } from "../helpers/daemon.ts";
import { daemonStatus } from "../helpers/group.ts";
import { commitObjects, listKeys, statusKeys } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo, uniqueName } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const PARTITIONS = 4;

/**
 * A message lands on a partition its key does not map to when its producer counts fewer
 * partitions than the topic has (it has not seen partitions added yet): the daemon holding that
 * partition exports the lane (README, "Scaling out"). The lane stays another daemon's, which
 * reconciles and reports it; found by the runtime fuzz (seed 20: a lane reported at a commit
 * long gone, by a daemon that never looked at it again).
 */
describe("a lane exported for a message on another daemon's partition", () => {
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

  it("leaves the /status and metrics of the daemon that exported it once its event is covered (regression: runtime fuzz seed 20)", async () => {
    const repo = await createRepo(stack, "foreign-lane");
    const bucket = await createBucket(stack, "foreign-lane");
    const topic = uniqueName("foreign-lane-events");
    const groupId = uniqueName("foreign-lane");
    await admin.createTopics({
      topics: [{ topic, numPartitions: PARTITIONS }],
      waitForLeaders: true,
    });
    const start = async (name: string) => {
      const d = await startObservedDaemon(stack, {
        mirrors: [{ repository: repo, branches: ["b-*"], destination: `s3://${bucket}/{branch}/` }],
        // Start-up and rebalance passes only: the message alone moves the lane.
        reconcileIntervalSeconds: 0,
        extra: shortWindows({
          kafka: {
            brokers: stack.env.KAFKA_BROKERS.split(","),
            topic,
            groupId,
            partitions: PARTITIONS,
            sessionTimeoutMs: 6000,
            heartbeatIntervalMs: 1000,
            reconnectMaxSeconds: 2,
          },
          lease: { enabled: true, ttlSeconds: 6, owner: name },
          shutdown: { graceSeconds: 2 },
        }),
      });
      running.add(d);
      return d;
    };
    const [d1, d2] = [await start("d1"), await start("d2")];
    const [s1, s2] = await waitFor(
      "two daemons sharing the partitions",
      async () => {
        const s = await Promise.all([daemonStatus(d1.url), daemonStatus(d2.url)]);
        const held = s.flatMap((x) => x.ownership.partitions ?? []);
        return s.every((x) => x.kafka === "running" && x.ownership.partitions?.length) &&
          new Set(held).size === PARTITIONS &&
          held.length === PARTITIONS
          ? s
          : undefined;
      },
      60_000,
    );
    // A branch d2 owns, and a partition d1 holds.
    const mine = new Set(s2.ownership.partitions);
    let branch = "";
    for (let n = 0; !branch; n++)
      if (mine.has(partitionOf(laneKey(repo, `b-${n}`), PARTITIONS))) branch = `b-${n}`;
    const elsewhere = s1.ownership.partitions![0]!;
    await stack.lakefs.createBranch(repo, branch, "main");
    const head = await commitObjects(stack, repo, branch, [{ path: "a.txt", content: "x" }]);

    const producer = kafka.producer({ allowAutoTopicCreation: false });
    await producer.connect();
    try {
      await producer.send({
        topic,
        acks: -1,
        messages: [
          {
            key: laneKey(repo, branch),
            value: JSON.stringify(commitEvent(repo, branch, head)),
            partition: elsewhere,
          },
        ],
      });
    } finally {
      await producer.disconnect();
    }
    await waitFor(
      `${branch} exported by d1`,
      async () =>
        statusKeys((await listKeys(stack, bucket, `${branch}/`)).keys()).some(
          (k) => k.startsWith(`EXPORT_${head}_`) && k.endsWith("_SUCCESS"),
        ),
      60_000,
    );
    const reported = async () => {
      const lanes = (await daemonStatus(d1.url)).lanes.filter((l) => l.branch === branch);
      const text = await scrape(d1.url);
      return { lanes, metric: text.includes(`branch="${branch}"`) };
    };
    const gone = await waitFor(
      `d1 no longer reporting ${branch}`,
      async () => {
        const r = await reported();
        return r.lanes.length === 0 && !r.metric ? r : undefined;
      },
      15_000,
    ).catch(async (err: unknown) => {
      const r = await reported();
      throw new Error(
        `${(err as Error).message}: d1 (holding [${s1.ownership.partitions?.join(",")}]) still ` +
          `reports ${JSON.stringify(r.lanes)}, metrics ${r.metric ? "listed" : "none"}; ` +
          `the lane maps to partition ${partitionOf(laneKey(repo, branch), PARTITIONS)} of d2`,
        { cause: err },
      );
    });
    assert.equal(gone.lanes.length, 0);
  });
});

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { Kafka, logLevel } from "kafkajs";
import type { Admin, Message } from "kafkajs";
import type { DaemonStatus } from "../../src/daemon/daemon.ts";
import { startObservedDaemon, sample, scrape, shortWindows } from "../helpers/convergence.ts";
import type { ObservedDaemon } from "../helpers/convergence.ts";
import {
  commitEvent,
  spawnDaemon,
  waitFor,
  waitForExported,
  writeDaemonConfig,
} from "../helpers/daemon.ts";
import type { DaemonSettings } from "../helpers/daemon.ts";
import { daemonStatus } from "../helpers/group.ts";
import { assertMirrorEqual, commitObjects } from "../helpers/mirror.ts";
import { startPrivateBroker } from "../helpers/private-broker.ts";
import { connectStack, createBucket, createRepo, uniqueName } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

/** Tests of the Kafka intake that leave the stack's shared broker running and unchanged. */
describe("Kafka intake", () => {
  let stack: Stack;
  const closers: (() => Promise<unknown>)[] = [];
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await Promise.allSettled(
      closers.map(async (c, i) => {
        const t0 = Date.now();
        await c();
        console.log(`closer ${i} ${Date.now() - t0} ms`);
      }),
    );
    await stack.close();
  });

  const client = (brokers: string) =>
    new Kafka({
      clientId: "kafka-intake-test",
      brokers: brokers.split(","),
      logLevel: logLevel.NOTHING,
      retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 2_000 },
    });

  async function withAdmin<T>(brokers: string, fn: (admin: Admin) => Promise<T>): Promise<T> {
    const admin = client(brokers).admin();
    await admin.connect();
    try {
      return await fn(admin);
    } finally {
      await admin.disconnect();
    }
  }

  async function produce(brokers: string, topic: string, messages: Message[]) {
    const producer = client(brokers).producer({ allowAutoTopicCreation: false });
    await producer.connect();
    try {
      const [meta] = await producer.send({ topic, acks: -1, messages });
      assert.ok(meta, "the broker acknowledged the messages");
      return { partition: meta.partition, offset: BigInt(meta.baseOffset ?? "0") };
    } finally {
      await producer.disconnect();
    }
  }

  function waitForCommitted(
    brokers: string,
    groupId: string,
    topic: string,
    partition: number,
    atLeast: bigint,
    timeoutMs = 30_000,
  ): Promise<bigint> {
    return waitFor(
      `group ${groupId} committing ${topic}/${partition} up to ${atLeast}`,
      () =>
        withAdmin(brokers, async (admin) => {
          const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
          const c = BigInt(t?.partitions.find((p) => p.partition === partition)?.offset ?? "-1");
          return c >= atLeast ? c : undefined;
        }),
      timeoutMs,
    );
  }

  /** The daemon in this process with its log kept and every window short (6 s sessions). */
  async function start(o: {
    brokers?: string;
    /** Where its close goes (the private broker's tests close theirs before the broker). */
    closeWith?: (() => Promise<unknown>)[];
    mirrors: DaemonSettings["mirrors"];
    topic: string;
    groupId: string;
    partitions: number;
    kafka?: Record<string, unknown>;
  }): Promise<ObservedDaemon> {
    const d = await startObservedDaemon(stack, {
      mirrors: o.mirrors,
      reconcileIntervalSeconds: 1,
      extra: shortWindows({
        kafka: {
          brokers: (o.brokers ?? stack.env.KAFKA_BROKERS).split(","),
          topic: o.topic,
          groupId: o.groupId,
          partitions: o.partitions,
          sessionTimeoutMs: 6000,
          heartbeatIntervalMs: 1000,
          reconnectMaxSeconds: 2,
          ...o.kafka,
        },
        lease: { enabled: true, ttlSeconds: 6 },
        shutdown: { graceSeconds: 5 },
      }),
    });
    (o.closeWith ?? closers).push(() => d.daemon.close());
    return d;
  }

  async function evidence<T>(d: ObservedDaemon, p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      const tail = d.logText().trimEnd().split("\n").slice(-40).join("\n");
      throw new Error(`${(err as Error).message}\n--- daemon log, last lines ---\n${tail}`, {
        cause: err,
      });
    }
  }

  const running = (d: ObservedDaemon) =>
    evidence(
      d,
      waitFor("/status kafka running", async () =>
        (await daemonStatus(d.url)).kafka === "running" ? true : undefined,
      ),
    );

  /** Two messages no daemon can record, then a good event for `commit`. */
  function badThenGood(repo: string, commit: string): Message[] {
    const key = `${repo}/main`;
    return [
      { key, value: "{not json" },
      { key, value: JSON.stringify({ ...commitEvent(repo, "main", commit), repository_id: 42 }) },
      { key, value: JSON.stringify(commitEvent(repo, "main", commit)) },
    ];
  }

  it("a dead-letter topic that cannot be created (its name collides with another topic's) leaves the messages whole in the log, counted, and the partition moves on without a rebalance", async (t) => {
    const repo = await createRepo(stack, "dead-refused");
    const bucket = await createBucket(stack);
    const topic = uniqueName("events");
    const base = uniqueName("dead");
    // Kafka refuses a topic whose name equals another's once "." and "_" are taken as one.
    const deadLetterTopic = `${base}.letters`;
    await withAdmin(stack.env.KAFKA_BROKERS, (admin) =>
      admin.createTopics({ topics: [{ topic: `${base}_letters`, numPartitions: 1 }] }),
    );
    const groupId = uniqueName("group");
    const d = await start({
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      topic,
      groupId,
      partitions: 1,
      kafka: { deadLetterTopic },
    });
    await running(d);

    const c1 = await commitObjects(stack, repo, "main", [{ path: "a.txt", content: "good" }]);
    const messages = badThenGood(repo, c1);
    const sent = Date.now();
    const { partition, offset } = await produce(stack.env.KAFKA_BROKERS, topic, messages);
    await evidence(d, waitForExported(d.url, repo, "main", c1, 30_000));
    await assertMirrorEqual(stack, repo, c1, bucket, "");
    await evidence(
      d,
      waitForCommitted(stack.env.KAFKA_BROKERS, groupId, topic, partition, offset + 3n),
    );
    t.diagnostic(`all three offsets committed ${Date.now() - sent} ms after they were produced`);
    assert.ok(
      d
        .logs()
        .some((l) => /dead-letter topic does not exist and cannot be created/.test(String(l.msg))),
      "a warning at start",
    );
    assert.equal(sample(await scrape(d.url), "lakefs_mirror_kafka_dead_letter_unavailable"), 1);

    const logged = d.logs().filter((l) => /logged here only/.test(String(l.msg)));
    assert.deepEqual(
      logged.map((l) => [l.source, l.value]),
      [
        [`${topic}/${partition}/${offset}`, "{not json"],
        [`${topic}/${partition}/${offset + 1n}`, messages[1]!.value],
      ],
    );
    const text = await scrape(d.url);
    assert.equal(sample(text, "lakefs_mirror_kafka_dead_letter_failures_total"), 2);
    assert.equal(
      sample(text, "lakefs_mirror_intake_events_total", { source: "kafka", result: "rejected" }),
      2,
    );
    // The consumer never crashed, so it never left the group nor got the messages again.
    assert.equal(d.logs().filter((l) => l.msg === "partitions assigned").length, 1, d.logText());
    assert.equal(d.logs().filter((l) => l.msg === "Kafka consumer crashed").length, 0);
    assert.equal((await daemonStatus(d.url)).kafka, "running");
  });

  it("on a broker with topic auto-creation off, the daemon creates its dead-letter topic as it does its topic, and dead-letters into it", async () => {
    // A broker of its own: the shared one creates topics on first use, and must keep doing so.
    const broker = await startPrivateBroker({ "auto.create.topics.enable": "false" });
    // Its clients leave while it still answers.
    const onBroker: (() => Promise<unknown>)[] = [];
    try {
      const repo = await createRepo(stack, "dead-created");
      const bucket = await createBucket(stack);
      const topic = uniqueName("events");
      const deadLetterTopic = uniqueName("dead");
      const groupId = uniqueName("group");
      const d = await start({
        brokers: broker.brokers,
        mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
        topic,
        groupId,
        partitions: 1,
        kafka: { deadLetterTopic },
        closeWith: onBroker,
      });
      await running(d);

      const c1 = await commitObjects(stack, repo, "main", [{ path: "a.txt", content: "good" }]);
      const messages = badThenGood(repo, c1);
      const { partition, offset } = await produce(broker.brokers, topic, messages);
      await evidence(d, waitForExported(d.url, repo, "main", c1, 30_000));
      await evidence(d, waitForCommitted(broker.brokers, groupId, topic, partition, offset + 3n));
      const topics = await withAdmin(broker.brokers, (admin) => admin.listTopics());
      assert.ok(topics.includes(deadLetterTopic), `${deadLetterTopic} in ${topics.join(", ")}`);

      const reader = client(broker.brokers).consumer({ groupId: uniqueName("dead-reader") });
      onBroker.unshift(() => reader.disconnect());
      await reader.connect();
      await reader.subscribe({ topic: deadLetterTopic, fromBeginning: true });
      const letters: { value: string; source: string }[] = [];
      await reader.run({
        eachMessage: ({ message }) => {
          letters.push({
            value: message.value?.toString() ?? "",
            source: message.headers?.["lakefs-mirror-source"]?.toString() ?? "",
          });
          return Promise.resolve();
        },
      });
      await waitFor("two dead letters", () => Promise.resolve(letters.length >= 2), 30_000);
      assert.deepEqual(letters, [
        { value: "{not json", source: `${topic}/${partition}/${offset}` },
        { value: String(messages[1]!.value), source: `${topic}/${partition}/${offset + 1n}` },
      ]);
      assert.equal(sample(await scrape(d.url), "lakefs_mirror_kafka_dead_letter_unavailable"), 0);
      assert.equal(d.logs().filter((l) => l.msg === "partitions assigned").length, 1);
    } finally {
      await Promise.allSettled(onBroker.map((c) => c()));
      await broker.stop();
    }
  });

  it("a paused partition and its uncommitted backlog show in /status and the metrics, while lakefs_mirror_kafka_up stays 1", async () => {
    const repo = await createRepo(stack, "kafka-backlog");
    // A destination bucket that does not exist yet: every export of the lane fails.
    const bucket = uniqueName("later");
    const topic = uniqueName("events");
    const groupId = uniqueName("group");
    const d = await start({
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      topic,
      groupId,
      partitions: 1,
      kafka: { maxUncommittedPerPartition: 3 },
    });
    await running(d);
    const commits: string[] = [];
    for (let i = 0; i < 6; i++)
      commits.push(
        await commitObjects(stack, repo, "main", [{ path: `${i}.txt`, content: `${i}` }]),
      );
    const { partition } = await produce(
      stack.env.KAFKA_BROKERS,
      topic,
      commits.map((c) => ({
        key: `${repo}/main`,
        value: JSON.stringify(commitEvent(repo, "main", c)),
      })),
    );
    const paused = await evidence(
      d,
      waitFor("the partition paused, in /status", async () => {
        const s: DaemonStatus = await daemonStatus(d.url);
        return s.kafkaPartitions.find((p) => p.partition === partition && p.paused) ? s : undefined;
      }),
    );
    assert.deepEqual(paused.kafkaPartitions, [
      { partition, uncommitted: 3, readOffset: "3", committedOffset: null, paused: true },
    ]);
    const text = await scrape(d.url);
    assert.equal(sample(text, "lakefs_mirror_kafka_paused_partitions"), 1);
    assert.equal(
      sample(text, "lakefs_mirror_kafka_uncommitted_messages", { partition: String(partition) }),
      3,
    );
    assert.equal(sample(text, "lakefs_mirror_kafka_up"), 1, "Kafka is up, the partition is not");

    await stack.s3.send(new CreateBucketCommand({ Bucket: bucket }));
    await evidence(d, waitForExported(d.url, repo, "main", commits.at(-1)!, 30_000));
    await evidence(d, waitForCommitted(stack.env.KAFKA_BROKERS, groupId, topic, partition, 6n));
    const drained = await evidence(
      d,
      waitFor("the backlog drained, in /status", async () => {
        const s = await daemonStatus(d.url);
        return s.kafkaPartitions[0]?.committedOffset === "6" ? s : undefined;
      }),
    );
    assert.deepEqual(drained.kafkaPartitions, [
      { partition, uncommitted: 0, readOffset: "6", committedOffset: "6", paused: false },
    ]);
    const after = await scrape(d.url);
    assert.equal(sample(after, "lakefs_mirror_kafka_paused_partitions"), 0);
    assert.equal(
      sample(after, "lakefs_mirror_kafka_uncommitted_messages", { partition: String(partition) }),
      0,
    );
  });

  it("a session timeout below the broker's group.min.session.timeout.ms stops `lakefs-mirror run` with an error naming kafka.sessionTimeoutMs, instead of retrying the join forever", async () => {
    const repo = await createRepo(stack, "kafka-session");
    const bucket = await createBucket(stack);
    const { file } = writeDaemonConfig(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      kafka: { topic: uniqueName("events"), groupId: uniqueName("group") },
      extra: {
        kafka: {
          brokers: stack.env.KAFKA_BROKERS.split(","),
          topic: uniqueName("events"),
          groupId: uniqueName("group"),
          sessionTimeoutMs: 3000,
          heartbeatIntervalMs: 1000,
        },
      },
    });
    const proc = spawnDaemon(stack, file);
    closers.push(() => {
      if (proc.child.exitCode === null) proc.child.kill("SIGKILL");
      return proc.exited;
    });
    const code = await Promise.race([
      proc.exited,
      new Promise<"running">((r) => setTimeout(() => r("running"), 60_000)),
    ]);
    assert.equal(code, 2, proc.output().slice(-3000));
    assert.match(
      proc.output(),
      /kafka\.sessionTimeoutMs 3000 is refused by the Kafka broker: it accepts 6000\.\.1800000 ms/,
    );
  });
});

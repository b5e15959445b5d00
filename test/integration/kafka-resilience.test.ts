import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { Kafka, logLevel } from "kafkajs";
import type { Admin, Message } from "kafkajs";
import { startObservedDaemon, sample, scrape, shortWindows } from "../helpers/convergence.ts";
import type { ObservedDaemon } from "../helpers/convergence.ts";
import {
  commitEvent,
  laneStatus,
  postWebhook,
  waitFor,
  waitForExported,
} from "../helpers/daemon.ts";
import type { DaemonSettings } from "../helpers/daemon.ts";
import { assertMirrorEqual, commitObjects } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo, uniqueName } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

/*
 * These tests stop and start the stack's one Kafka broker. On a shared machine run this file
 * only under `flock -x /tmp/kafka-outage.lock` (other Kafka tests hold it shared).
 */

const stackDir = fileURLToPath(new URL("../stack/", import.meta.url));

/** `test/stack/kafka start`: starts the broker unless it runs, and waits until it is ready. */
async function startBroker(): Promise<void> {
  await promisify(execFile)(join(stackDir, "kafka"), ["start"], { timeout: 120_000 });
}

/**
 * The stack's broker stopped until end(). test/stack/up, which test processes on this shared
 * machine call at start, finds a stack without its broker unhealthy and rebuilds all of it (new
 * ports, empty data); so the outage holds up's lock, and a concurrent up waits for the broker to
 * be back instead. The shell restarts the broker once its stdin closes, even if this process dies.
 */
class BrokerOutage {
  readonly #child: ChildProcess;
  readonly #exited: Promise<number | null>;
  #err = "";
  #ended: Promise<void> | undefined;

  private constructor(child: ChildProcess) {
    this.#child = child;
    this.#exited = new Promise((r) => child.on("exit", (code) => r(code)));
    child.stderr?.on("data", (d: Buffer) => (this.#err += d.toString()));
  }

  static async begin(): Promise<BrokerOutage> {
    const script = [
      'source "$1/lib.sh"',
      'exec 9>"$STACK_DIR/.lock"',
      "flock 9",
      '"$1/kafka" stop >&2 || exit 1',
      "echo stopped",
      "read -r _ || true",
      'exec "$1/kafka" start >&2',
    ].join("\n");
    const child = spawn("bash", ["-c", script, "outage", stackDir], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    const outage = new BrokerOutage(child);
    const stopped = await Promise.race([
      new Promise<boolean>((r) => child.stdout?.once("data", () => r(true))),
      outage.#exited.then(() => false),
    ]);
    if (!stopped) throw new Error(`could not stop the broker: ${outage.#err}`);
    return outage;
  }

  /** Starts the broker again and waits until it is ready; idempotent. */
  end(): Promise<void> {
    this.#ended ??= (async () => {
      this.#child.stdin?.end();
      const code = await this.#exited;
      if (code !== 0) throw new Error(`could not start the broker again: ${this.#err}`);
    })();
    return this.#ended;
  }
}

interface KafkaView {
  kafka: string;
  ownership: { mode: string; partitions: number[] | null; fallback: boolean };
}

async function daemonView(url: string): Promise<KafkaView> {
  const res = await fetch(`${url}/status`);
  return (await res.json()) as KafkaView;
}

describe("Kafka resilience", () => {
  let stack: Stack;
  let client: Kafka;
  const closers: (() => Promise<unknown>)[] = [];
  const outages: BrokerOutage[] = [];
  before(async () => {
    stack = await connectStack();
    client = new Kafka({
      clientId: "kafka-resilience-test",
      brokers: stack.env.KAFKA_BROKERS.split(","),
      logLevel: logLevel.NOTHING,
      retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 2_000 },
    });
  });
  after(async () => {
    // Whatever happened, the shared broker is up again before anything else is closed.
    const restarted = await Promise.allSettled(outages.map((o) => o.end()))
      .then(startBroker)
      .then(
        () => undefined,
        (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
      );
    // Each daemon's Kafka consumer takes seconds to leave its group: close them together.
    await Promise.allSettled(closers.map((c) => c()));
    await stack.close();
    if (restarted) throw restarted;
  });

  async function stopBroker(): Promise<BrokerOutage> {
    const o = await BrokerOutage.begin();
    outages.push(o);
    return o;
  }

  const auth = () => ({ authorization: `Bearer ${stack.env.LAKEFSACTION_MIRROR_TOKEN}` });

  /** A short-lived admin client: the broker may have restarted since the last call. */
  async function withAdmin<T>(fn: (admin: Admin) => Promise<T>): Promise<T> {
    const admin = client.admin();
    await admin.connect();
    try {
      return await fn(admin);
    } finally {
      await admin.disconnect();
    }
  }

  /** Produces `messages` with acks from the broker; returns the partition and first offset. */
  async function produce(
    topic: string,
    messages: Message[],
  ): Promise<{ partition: number; offset: bigint }> {
    const producer = client.producer({ allowAutoTopicCreation: false });
    await producer.connect();
    try {
      const [meta] = await producer.send({ topic, acks: -1, messages });
      assert.ok(meta, "the broker acknowledged the messages");
      return { partition: meta.partition, offset: BigInt(meta.baseOffset ?? "0") };
    } finally {
      await producer.disconnect();
    }
  }

  /** The group's committed offset of a partition (-1: none yet). */
  async function committed(groupId: string, topic: string, partition: number): Promise<bigint> {
    return withAdmin(async (admin) => {
      const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
      const p = t?.partitions.find((x) => x.partition === partition);
      return BigInt(p?.offset ?? "-1");
    });
  }

  /** The end (high watermark) of a partition. */
  async function endOffset(topic: string, partition: number): Promise<bigint> {
    return withAdmin(async (admin) => {
      const offsets = await admin.fetchTopicOffsets(topic);
      const p = offsets.find((x) => x.partition === partition);
      assert.ok(p, `partition ${partition} of ${topic} exists`);
      return BigInt(p.high);
    });
  }

  function waitForCommitted(
    groupId: string,
    topic: string,
    partition: number,
    atLeast: bigint,
    timeoutMs = 30_000,
  ): Promise<bigint> {
    return waitFor(
      `group ${groupId} committing ${topic}/${partition} up to ${atLeast}`,
      async () => {
        const c = await committed(groupId, topic, partition);
        return c >= atLeast ? c : undefined;
      },
      timeoutMs,
    );
  }

  async function metric(url: string, name: string, labels: Record<string, string> = {}) {
    return sample(await scrape(url), name, labels);
  }

  /**
   * The daemon in this process with its log kept, a Kafka intake on `topic` and every window
   * short: a 6 s session (the broker's minimum), reconnects at most 2 s apart, 1–2 s lane
   * back-offs, 6 s leases.
   */
  async function start(o: {
    mirrors: DaemonSettings["mirrors"];
    topic: string;
    groupId: string;
    partitions: number;
    reconcileIntervalSeconds: number;
    kafka?: Record<string, unknown>;
  }): Promise<ObservedDaemon> {
    const d = await startObservedDaemon(stack, {
      mirrors: o.mirrors,
      reconcileIntervalSeconds: o.reconcileIntervalSeconds,
      extra: shortWindows({
        kafka: {
          brokers: stack.env.KAFKA_BROKERS.split(","),
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
    closers.push(() => d.daemon.close());
    return d;
  }

  function waitForKafka(d: ObservedDaemon, state: string, timeoutMs = 60_000) {
    return waitFor(
      `/status kafka "${state}"`,
      async () => {
        const view = await daemonView(d.url);
        return view.kafka === state ? view : undefined;
      },
      timeoutMs,
    );
  }

  /** Rejects as `p` does, with the daemon's last log lines appended as evidence. */
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

  it("started before its topic exists, the daemon creates it and consumes", async () => {
    const repo = await createRepo(stack, "kafka-new-topic");
    const bucket = await createBucket(stack);
    const topic = uniqueName("events");
    const groupId = uniqueName("group");
    const existing = await withAdmin((admin) => admin.listTopics());
    assert.equal(existing.includes(topic), false);
    // No periodic reconcile: once the lane is idle, only the Kafka event can move it.
    const d = await start({
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      topic,
      groupId,
      partitions: 3,
      reconcileIntervalSeconds: 0,
    });
    const partitions = await waitFor("the topic to be created", () =>
      withAdmin(async (admin) => {
        const meta = await admin.fetchTopicMetadata({ topics: [topic] });
        return meta.topics.find((t) => t.name === topic)?.partitions.length;
      }),
    );
    assert.equal(partitions, 3);
    const view = await waitFor("all three partitions held", async () => {
      const v = await daemonView(d.url);
      return v.ownership.partitions?.length === 3 ? v : undefined;
    });
    assert.deepEqual(view.ownership.partitions, [0, 1, 2]);
    // The pass that follows the assignment exports the repository's first commit.
    const first = (await stack.lakefs.getBranch(repo, "main")).commit_id;
    await evidence(d, waitForExported(d.url, repo, "main", first));

    const c1 = await commitObjects(stack, repo, "main", [{ path: "a.txt", content: "from kafka" }]);
    const { partition, offset } = await produce(topic, [
      { key: `${repo}/main`, value: JSON.stringify(commitEvent(repo, "main", c1)) },
    ]);
    await evidence(d, waitForExported(d.url, repo, "main", c1, 30_000));
    await assertMirrorEqual(stack, repo, c1, bucket, "");
    await evidence(d, waitForCommitted(groupId, topic, partition, offset + 1n));
    assert.equal(
      await metric(d.url, "lakefs_mirror_intake_events_total", {
        source: "kafka",
        result: "accepted",
      }),
      1,
    );
  });

  it("with the broker unreachable at start, the daemon stays up, webhooks keep exporting, and Kafka events are consumed once the broker is back", async (t) => {
    const repo = await createRepo(stack, "kafka-away");
    const bucket = await createBucket(stack);
    const topic = uniqueName("events");
    const groupId = uniqueName("group");
    const outage = await stopBroker();
    try {
      const d = await start({
        mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
        topic,
        groupId,
        partitions: 1,
        reconcileIntervalSeconds: 1,
      });
      const started = Date.now();
      const ready = await fetch(`${d.url}/readyz`);
      assert.equal(ready.status, 200);
      assert.deepEqual(await ready.json(), { status: "ready", kafka: "connecting" });
      const health = await fetch(`${d.url}/healthz`);
      assert.equal(health.status, 200);
      await health.body?.cancel();
      assert.equal(await metric(d.url, "lakefs_mirror_kafka_up"), 0);

      // Until Kafka has been away for a session timeout the daemon does not know which lanes
      // are its own, so this webhook may be ignored; after that it works on every lane.
      const c1 = await commitObjects(stack, repo, "main", [{ path: "a.txt", content: "one" }]);
      const res = await postWebhook(d.url, commitEvent(repo, "main", c1), auth());
      assert.ok(res.status === 202 || res.status === 200, `webhook answered ${res.status}`);
      await res.body?.cancel();
      await evidence(d, waitForExported(d.url, repo, "main", c1, 30_000));
      t.diagnostic(`exported without Kafka ${Date.now() - started} ms after the daemon started`);
      await assertMirrorEqual(stack, repo, c1, bucket, "");
      const away = await daemonView(d.url);
      assert.equal(away.kafka, "connecting", "exported while Kafka was away");
      assert.equal(away.ownership.fallback, true);
      assert.equal(await metric(d.url, "lakefs_mirror_kafka_up"), 0);

      await outage.end();
      const back = Date.now();
      await evidence(d, waitForKafka(d, "running"));
      t.diagnostic(`Kafka "running" ${Date.now() - back} ms after the broker was ready`);
      assert.equal(await metric(d.url, "lakefs_mirror_kafka_up"), 1);
      const c2 = await commitObjects(stack, repo, "main", [{ path: "b.txt", content: "two" }]);
      const { partition } = await produce(topic, [
        { key: `${repo}/main`, value: JSON.stringify(commitEvent(repo, "main", c2)) },
      ]);
      await evidence(d, waitForExported(d.url, repo, "main", c2, 30_000));
      await assertMirrorEqual(stack, repo, c2, bucket, "");
      const end = await endOffset(topic, partition);
      assert.ok(end >= 1n);
      assert.equal(await evidence(d, waitForCommitted(groupId, topic, partition, end)), end);
      assert.equal((await fetch(`${d.url}/healthz`)).status, 200);
    } finally {
      await outage.end();
    }
  });

  it("the broker stopped and restarted mid-run: the daemon stays up and catches up", async (t) => {
    const repo = await createRepo(stack, "kafka-restart");
    const bucket = await createBucket(stack);
    const topic = uniqueName("events");
    const groupId = uniqueName("group");
    let outage: BrokerOutage | undefined;
    try {
      const d = await start({
        mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
        topic,
        groupId,
        partitions: 1,
        reconcileIntervalSeconds: 1,
      });
      await evidence(d, waitForKafka(d, "running"));
      const c1 = await commitObjects(stack, repo, "main", [{ path: "a.txt", content: "one" }]);
      const first = await produce(topic, [
        { key: `${repo}/main`, value: JSON.stringify(commitEvent(repo, "main", c1)) },
      ]);
      await evidence(d, waitForExported(d.url, repo, "main", c1, 30_000));
      await evidence(d, waitForCommitted(groupId, topic, first.partition, first.offset + 1n));

      outage = await stopBroker();
      const stopped = Date.now();
      await evidence(
        d,
        waitFor("the daemon to notice Kafka is away", async () =>
          (await metric(d.url, "lakefs_mirror_kafka_up")) === 0 ? true : undefined,
        ),
      );
      t.diagnostic(`kafka_up 0 ${Date.now() - stopped} ms after the broker stopped`);
      const c2 = await commitObjects(stack, repo, "main", [{ path: "b.txt", content: "two" }]);
      const res = await postWebhook(d.url, commitEvent(repo, "main", c2), auth());
      assert.ok(res.status === 202 || res.status === 200, `webhook answered ${res.status}`);
      await res.body?.cancel();
      await evidence(d, waitForExported(d.url, repo, "main", c2, 45_000));
      t.diagnostic(`exported without Kafka ${Date.now() - stopped} ms after the broker stopped`);
      await assertMirrorEqual(stack, repo, c2, bucket, "");
      assert.notEqual((await daemonView(d.url)).kafka, "running", "exported while Kafka was away");
      assert.equal((await fetch(`${d.url}/healthz`)).status, 200);

      await outage.end();
      const back = Date.now();
      await evidence(d, waitForKafka(d, "running"));
      t.diagnostic(`Kafka "running" ${Date.now() - back} ms after the broker was ready`);
      const c3 = await commitObjects(stack, repo, "main", [{ path: "c.txt", content: "three" }]);
      const third = await produce(topic, [
        { key: `${repo}/main`, value: JSON.stringify(commitEvent(repo, "main", c3)) },
      ]);
      await evidence(d, waitForExported(d.url, repo, "main", c3, 30_000));
      await assertMirrorEqual(stack, repo, c3, bucket, "");
      await evidence(d, waitForCommitted(groupId, topic, third.partition, third.offset + 1n));
      assert.equal(await metric(d.url, "lakefs_mirror_kafka_up"), 1);
    } finally {
      await outage?.end();
    }
  });

  it("a message that cannot be recorded goes to the dead-letter topic and the partition moves on", async () => {
    const repo = await createRepo(stack, "kafka-dead");
    const bucket = await createBucket(stack);
    const topic = uniqueName("events");
    const deadLetterTopic = uniqueName("dead");
    const groupId = uniqueName("group");
    const d = await start({
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      topic,
      groupId,
      partitions: 2,
      reconcileIntervalSeconds: 1,
      kafka: { deadLetterTopic },
    });
    await evidence(d, waitForKafka(d, "running"));
    const c1 = await commitObjects(stack, repo, "main", [{ path: "a.txt", content: "good" }]);
    const key = `${repo}/main`;
    const notJson = "{not json";
    // JSON, but not a lakeFS action event: repository_id must be a string.
    const notAnEvent = JSON.stringify({ ...commitEvent(repo, "main", c1), repository_id: 42 });
    const { partition, offset } = await produce(topic, [
      { key, value: notJson },
      { key, value: notAnEvent },
      { key, value: JSON.stringify(commitEvent(repo, "main", c1)) },
    ]);
    await evidence(d, waitForExported(d.url, repo, "main", c1, 30_000));
    await assertMirrorEqual(stack, repo, c1, bucket, "");
    await evidence(d, waitForCommitted(groupId, topic, partition, offset + 3n));

    const reader = client.consumer({ groupId: uniqueName("dead-reader") });
    closers.push(() => reader.disconnect());
    await reader.connect();
    await reader.subscribe({ topic: deadLetterTopic, fromBeginning: true });
    const letters: { value: string; error: string; source: string }[] = [];
    await reader.run({
      eachMessage: ({ message }) => {
        letters.push({
          value: message.value?.toString() ?? "",
          error: message.headers?.["lakefs-mirror-error"]?.toString() ?? "",
          source: message.headers?.["lakefs-mirror-source"]?.toString() ?? "",
        });
        return Promise.resolve();
      },
    });
    await waitFor("two dead letters", () => Promise.resolve(letters.length >= 2), 30_000);
    assert.equal(letters.length, 2, JSON.stringify(letters));
    assert.equal(letters[0]!.value, notJson);
    assert.match(letters[0]!.error, /JSON/);
    assert.equal(letters[0]!.source, `${topic}/${partition}/${offset}`);
    assert.equal(letters[1]!.value, notAnEvent);
    assert.match(letters[1]!.error, /repository_id/);
    assert.equal(letters[1]!.source, `${topic}/${partition}/${offset + 1n}`);
    assert.equal(
      await metric(d.url, "lakefs_mirror_intake_events_total", {
        source: "kafka",
        result: "rejected",
      }),
      2,
    );
  });

  it("a lane that keeps failing does not make memory grow: its partition is paused and resumes when the lane recovers", async () => {
    const repo = await createRepo(stack, "kafka-pause");
    // A destination bucket that does not exist yet: every export of the lane fails.
    const bucket = uniqueName("later");
    const topic = uniqueName("events");
    const groupId = uniqueName("group");
    const d = await start({
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      topic,
      groupId,
      partitions: 1,
      reconcileIntervalSeconds: 1,
      kafka: { maxUncommittedPerPartition: 3 },
    });
    await evidence(d, waitForKafka(d, "running"));
    const commits: string[] = [];
    for (let i = 0; i < 10; i++) {
      commits.push(
        await commitObjects(stack, repo, "main", [{ path: `p/${i}.txt`, content: `${i}` }]),
      );
    }
    const { partition, offset } = await produce(
      topic,
      commits.map((c) => ({
        key: `${repo}/main`,
        value: JSON.stringify(commitEvent(repo, "main", c)),
      })),
    );
    assert.equal(offset, 0n);
    const accepted = () =>
      metric(d.url, "lakefs_mirror_intake_events_total", { source: "kafka", result: "accepted" });
    const paused = await evidence(
      d,
      waitFor(
        '"partition paused" in the log',
        () => Promise.resolve(d.logs().find((l) => /^partition paused/.test(String(l.msg)))),
        30_000,
      ),
    );
    assert.equal(paused.partition, partition);
    assert.equal(paused.waiting, 3);
    const failing = await evidence(
      d,
      waitFor("the lane to fail and back off", async () =>
        (await laneStatus(d.url)).find((l) => l.state === "backoff" && l.lastError),
      ),
    );
    assert.match(failing.lastError ?? "", /bucket/i);
    // Several back-offs later the partition is still paused: no more events were read than
    // the limit, and nothing was committed.
    await new Promise((r) => setTimeout(r, 3_000));
    assert.equal(await accepted(), 3, d.logText());
    assert.equal(await committed(groupId, topic, partition), -1n);
    assert.doesNotMatch(d.logText(), /partition resumed/);

    // Regression: a rebalance while the partition is paused (kafkajs keeps it paused across a
    // rejoin). A second member whose client id sorts after the daemon's gets no partition.
    const observer = new Kafka({
      clientId: "zz-rebalance",
      brokers: stack.env.KAFKA_BROKERS.split(","),
      logLevel: logLevel.NOTHING,
    }).consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 1000 });
    let observerGot = 0;
    try {
      await observer.connect();
      await observer.subscribe({ topic, fromBeginning: true });
      await observer.run({
        eachMessage: () => {
          observerGot++;
          return Promise.resolve();
        },
      });
      await evidence(
        d,
        waitFor(
          "the daemon to join the group again",
          () =>
            Promise.resolve(
              d.logs().filter((l) => l.msg === "partitions assigned").length >= 2 || undefined,
            ),
          30_000,
        ),
      );

      await stack.s3.send(new CreateBucketCommand({ Bucket: bucket }));
      const head = commits.at(-1)!;
      await evidence(d, waitForExported(d.url, repo, "main", head, 30_000));
      await assertMirrorEqual(stack, repo, head, bucket, "");
      await evidence(d, waitForCommitted(groupId, topic, partition, 10n));
    } finally {
      await observer.disconnect();
    }
    assert.equal(observerGot, 0, "the daemon kept the partition through the rebalance");
    // Events not committed before the rebalance are delivered again: at least all ten.
    assert.ok((await accepted()) >= 10);
  });
});

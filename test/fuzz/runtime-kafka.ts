import { Kafka, logLevel } from "kafkajs";
import type { Admin, Consumer, Producer } from "kafkajs";
import { laneKey } from "../../src/kafka/client.ts";
import { startPrivateBroker } from "../helpers/private-broker.ts";
import type { PrivateBroker } from "../helpers/private-broker.ts";
import { uniqueName } from "../helpers/stack.ts";

/**
 * The runtime fuzz's Kafka: a private broker (the stack's shared one is never restarted), the
 * topic of lakeFS events, producers as lakeFS's pipeline would be (one that reads the topic's
 * metadata often, one that keeps what it read at first, as a long-lived producer does across a
 * partition change), and an observer in a group of its own that reads every message of the
 * topic, so that each committed offset can be set against the messages before it.
 */

/** One message of the topic, as the observer read it. */
export interface TopicMessage {
  partition: number;
  offset: bigint;
  key: string;
  /** The event's fields the checks need (undefined: not a JSON object). */
  event: { type: string; repo: string; branch: string; commit: string } | undefined;
}

export interface KafkaSideOptions {
  partitions: number;
}

export class KafkaSide {
  readonly topic = uniqueName("rfuzz-events");
  /** The group's work topic, which the daemons create like the dead-letter topic. */
  readonly workTopic = uniqueName("rfuzz-work");
  readonly groupId = uniqueName("rfuzz-group");
  readonly broker: PrivateBroker;
  readonly #kafka: Kafka;
  #admin: Admin | undefined;
  readonly #fresh: Producer;
  readonly #stale: Producer;
  #observer: Consumer | undefined;
  readonly #observerGroup = uniqueName("rfuzz-observer");
  /** Messages read by the observer, by partition, by offset. */
  readonly #seen = new Map<number, Map<bigint, TopicMessage>>();
  #partitions: number;
  #closed = false;
  readonly counts = { restarts: 0, hardRestarts: 0, partitionChanges: 0, observerRestarts: 0 };

  private constructor(broker: PrivateBroker, partitions: number) {
    this.broker = broker;
    this.#partitions = partitions;
    this.#kafka = new Kafka({
      clientId: "runtime-fuzz",
      brokers: [broker.brokers],
      logLevel: logLevel.NOTHING,
      retry: { initialRetryTime: 200, retries: 3, maxRetryTime: 2000 },
    });
    this.#fresh = this.#kafka.producer({ allowAutoTopicCreation: false, metadataMaxAge: 1000 });
    this.#stale = this.#kafka.producer({ allowAutoTopicCreation: false });
  }

  static async start(o: KafkaSideOptions): Promise<KafkaSide> {
    // Sessions as short as the daemons' (kafka.sessionTimeoutMs 6000 is Kafka's default minimum).
    const broker = await startPrivateBroker({ "auto.create.topics.enable": "false" });
    const side = new KafkaSide(broker, o.partitions);
    try {
      const admin = await side.admin();
      await admin.createTopics({
        topics: [{ topic: side.topic, numPartitions: o.partitions }],
        waitForLeaders: true,
      });
      await side.#fresh.connect();
      await side.#stale.connect();
      await side.#observe();
    } catch (err) {
      await side.close();
      throw err;
    }
    return side;
  }

  get brokers(): string {
    return this.broker.brokers;
  }

  get partitions(): number {
    return this.#partitions;
  }

  /**
   * The daemons' `kafka` section: short sessions and metadata ages, so that rebalances and new
   * partitions take seconds, and a dead-letter topic the daemons create (auto-creation is off);
   * with `work`, the work topic too.
   */
  daemonSettings(o: {
    partitions: number;
    sessionTimeoutMs: number;
    maxUncommitted: number;
    work: boolean;
  }): Record<string, unknown> {
    return {
      brokers: [this.brokers],
      topic: this.topic,
      workTopic: o.work ? this.workTopic : "",
      groupId: this.groupId,
      deadLetterTopic: `${this.topic}-dead`,
      partitions: o.partitions,
      sessionTimeoutMs: o.sessionTimeoutMs,
      heartbeatIntervalMs: Math.floor(o.sessionTimeoutMs / 6),
      metadataMaxAgeMs: 2000,
      reconnectMaxSeconds: 2,
      maxUncommittedPerPartition: o.maxUncommitted,
    };
  }

  /** An admin client; a new one after any error (a broker restart leaves the old one stale). */
  async admin(): Promise<Admin> {
    if (this.#admin) return this.#admin;
    const admin = this.#kafka.admin();
    await admin.connect();
    this.#admin = admin;
    return admin;
  }

  async #withAdmin<T>(fn: (a: Admin) => Promise<T>): Promise<T> {
    const admin = await this.admin();
    try {
      return await fn(admin);
    } catch (err) {
      if (this.#admin === admin) this.#admin = undefined;
      await admin.disconnect().catch(() => undefined);
      throw err;
    }
  }

  /**
   * Publishes an event as lakeFS's pipeline would (key `<repository>/<branch>`); the partition
   * and offset it got, or undefined when Kafka did not take it (a broker away).
   */
  async produce(
    event: Record<string, unknown>,
    stale: boolean,
  ): Promise<{ partition: number; offset: string } | undefined> {
    const key = laneKey(str(event.repository_id), str(event.branch_id));
    try {
      const [meta] = await (stale ? this.#stale : this.#fresh).send({
        topic: this.topic,
        acks: -1,
        timeout: 3000,
        messages: [{ key, value: JSON.stringify(event) }],
      });
      return meta ? { partition: meta.partition, offset: meta.baseOffset ?? "" } : undefined;
    } catch {
      return undefined;
    }
  }

  /** Adds `more` partitions to the topic (kafka-topics --alter --partitions). */
  async addPartitions(more: number): Promise<number> {
    const count = this.#partitions + more;
    await this.#withAdmin((a) =>
      a.createPartitions({ topicPartitions: [{ topic: this.topic, count }] }),
    );
    this.#partitions = count;
    this.counts.partitionChanges++;
    return count;
  }

  /** The broker process stops (kept data and ports); `hard`: killed, as a crashed broker. */
  async halt(hard: boolean): Promise<void> {
    await this.broker.halt({ hard });
    this.counts.restarts++;
    if (hard) this.counts.hardRestarts++;
  }

  async resume(): Promise<void> {
    await this.broker.resume();
  }

  /** The group's committed offset of each partition (none committed: absent). */
  async committed(): Promise<Map<number, bigint>> {
    const [t] = await this.#withAdmin((a) =>
      a.fetchOffsets({ groupId: this.groupId, topics: [this.topic] }),
    );
    const out = new Map<number, bigint>();
    for (const p of t?.partitions ?? [])
      if (Number(p.offset) >= 0) out.set(p.partition, BigInt(p.offset));
    return out;
  }

  /** Each partition's end (the offset the next message gets). */
  async ends(): Promise<Map<number, bigint>> {
    const offsets = await this.#withAdmin((a) => a.fetchTopicOffsets(this.topic));
    return new Map(offsets.map((o) => [o.partition, BigInt(o.high)]));
  }

  /** Messages of `partition` in [from, to), or undefined while the observer lacks some. */
  messages(partition: number, from: bigint, to: bigint): TopicMessage[] | undefined {
    const seen = this.#seen.get(partition);
    const out: TopicMessage[] = [];
    for (let o = from; o < to; o++) {
      const m = seen?.get(o);
      if (!m) return undefined;
      out.push(m);
    }
    return out;
  }

  /** Messages the observer has read, in all. */
  get observed(): number {
    let n = 0;
    for (const m of this.#seen.values()) n += m.size;
    return n;
  }

  async #observe(): Promise<void> {
    const consumer = this.#kafka.consumer({
      groupId: this.#observerGroup,
      metadataMaxAge: 1000,
      sessionTimeout: 10_000,
      heartbeatInterval: 1000,
      maxWaitTimeInMs: 500,
      // kafkajs restarts a consumer after a retriable crash on a timer of its own, which a
      // disconnect racing the crash does not always cancel: a consumer of a closed side must
      // never restart (it would retry a stopped broker forever and keep this process alive).
      retry: { retries: 5, restartOnFailure: () => Promise.resolve(!this.#closed) },
    });
    this.#observer = consumer;
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      // kafkajs restarts itself after retriable errors; anything else gets a new consumer.
      if (payload.restart || this.#closed) return;
      this.counts.observerRestarts++;
      void (async () => {
        await consumer.disconnect().catch(() => undefined);
        while (!this.#closed) {
          try {
            await this.#observe();
            return;
          } catch {
            await new Promise((r) => setTimeout(r, 1000));
          }
        }
      })();
    });
    await consumer.connect();
    await consumer.subscribe({ topic: this.topic, fromBeginning: true });
    await consumer.run({
      eachMessage: ({ partition, message }) => {
        let seen = this.#seen.get(partition);
        if (!seen) this.#seen.set(partition, (seen = new Map<bigint, TopicMessage>()));
        seen.set(BigInt(message.offset), {
          partition,
          offset: BigInt(message.offset),
          key: message.key?.toString() ?? "",
          event: parseEvent(message.value?.toString("utf8")),
        });
        return Promise.resolve();
      },
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#observer?.disconnect().catch(() => undefined);
    await this.#fresh.disconnect().catch(() => undefined);
    await this.#stale.disconnect().catch(() => undefined);
    await this.#admin?.disconnect().catch(() => undefined);
    await this.broker.stop();
  }
}

function parseEvent(text: string | undefined): TopicMessage["event"] {
  try {
    const v = JSON.parse(text ?? "") as Record<string, unknown>;
    return {
      type: str(v.event_type),
      repo: str(v.repository_id),
      branch: str(v.branch_id),
      commit: typeof v.commit_id === "string" ? v.commit_id : "",
    };
  } catch {
    return undefined;
  }
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

import { Kafka, logLevel } from "kafkajs";
import type { Consumer, KafkaMessage, Producer } from "kafkajs";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import type { HookEvent } from "../lakefs/types.ts";
import type { Intake } from "./intake.ts";
import { parseHookEvent } from "./intake.ts";
import type { Metrics } from "./metrics.ts";
import type { Scheduler } from "./scheduler.ts";

function kafkaClient(config: Config["kafka"], logger: Logger): Kafka {
  return new Kafka({
    clientId: config.clientId,
    brokers: [...config.brokers],
    logLevel: logLevel.WARN,
    logCreator: () => (entry) => {
      logger.warn({ kafka: entry.namespace, ...entry.log }, entry.log.message);
    },
  });
}

/** Publishes webhook events to the topic (key `<repository>/<branch>`) instead of exporting. */
export class KafkaForwarder {
  readonly #producer: Producer;
  readonly #topic: string;

  constructor(config: Config["kafka"], logger: Logger) {
    this.#producer = kafkaClient(config, logger).producer({ allowAutoTopicCreation: true });
    this.#topic = config.topic;
  }

  async start(): Promise<void> {
    await this.#producer.connect();
  }

  async publish(event: HookEvent): Promise<void> {
    await this.#producer.send({
      topic: this.#topic,
      acks: -1,
      messages: [
        { key: `${event.repository_id}/${event.branch_id ?? ""}`, value: JSON.stringify(event) },
      ],
    });
  }

  async close(): Promise<void> {
    await this.#producer.disconnect();
  }
}

interface Tracked {
  offset: bigint;
  done: boolean;
}

/**
 * Consumes commit events from a topic in a consumer group. A message's offset is committed
 * only after its lane has exported that commit or a later one: Kafka commits a position, so
 * per partition only the longest run of finished messages from the front is committed. The
 * handler returns as soon as the event is recorded, so heartbeats go on during long exports.
 */
export class KafkaIntake {
  readonly #consumer: Consumer;
  readonly #producer: Producer | undefined;
  readonly #config: Config["kafka"];
  readonly #intake: Intake;
  readonly #scheduler: Scheduler;
  readonly #metrics: Metrics;
  readonly #logger: Logger;
  readonly #partitions = new Map<number, Tracked[]>();
  #status: "idle" | "running" | "closed" = "idle";

  constructor(deps: {
    config: Config["kafka"];
    intake: Intake;
    scheduler: Scheduler;
    metrics: Metrics;
    logger: Logger;
  }) {
    this.#config = deps.config;
    this.#intake = deps.intake;
    this.#scheduler = deps.scheduler;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
    const kafka = kafkaClient(deps.config, deps.logger);
    this.#consumer = kafka.consumer({ groupId: deps.config.groupId, allowAutoTopicCreation: true });
    this.#producer = deps.config.deadLetterTopic
      ? kafka.producer({ allowAutoTopicCreation: true })
      : undefined;
  }

  get status(): string {
    return this.#status;
  }

  async start(): Promise<void> {
    await this.#producer?.connect();
    await this.#consumer.connect();
    // After a rebalance, uncommitted messages are delivered again: forget what was in flight.
    this.#consumer.on(this.#consumer.events.GROUP_JOIN, () => this.#partitions.clear());
    await this.#consumer.subscribe({ topic: this.#config.topic, fromBeginning: true });
    await this.#consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => this.#onMessage(partition, message),
    });
    this.#status = "running";
  }

  async close(): Promise<void> {
    if (this.#status === "closed") return;
    this.#status = "closed";
    await this.#consumer.disconnect();
    await this.#producer?.disconnect();
  }

  async #onMessage(partition: number, message: KafkaMessage): Promise<void> {
    const tracked: Tracked = { offset: BigInt(message.offset), done: false };
    const queue = this.#partitions.get(partition) ?? [];
    queue.push(tracked);
    this.#partitions.set(partition, queue);

    let event: HookEvent;
    try {
      event = parseHookEvent(JSON.parse(message.value?.toString("utf8") ?? ""));
    } catch (err) {
      // A malformed message must never block its partition: log it, dead-letter it, move on.
      this.#metrics.intake("kafka", "rejected");
      this.#logger.warn(
        {
          partition,
          offset: message.offset,
          key: message.key?.toString(),
          err: (err as Error).message,
        },
        "malformed Kafka message skipped",
      );
      if (this.#producer) {
        await this.#producer.send({
          topic: this.#config.deadLetterTopic,
          messages: [
            {
              key: message.key,
              value: message.value,
              headers: { "lakefs-mirror-error": (err as Error).message },
            },
          ],
        });
      }
      return this.#finish(partition, tracked);
    }
    const outcome = await this.#intake.handle(event, "kafka");
    if (outcome.lanes.length === 0) return this.#finish(partition, tracked);
    void Promise.all(outcome.lanes.map(({ lane, seq }) => this.#scheduler.covered(lane, seq))).then(
      () => this.#finish(partition, tracked),
    );
  }

  async #finish(partition: number, tracked: Tracked): Promise<void> {
    tracked.done = true;
    const queue = this.#partitions.get(partition);
    if (!queue) return;
    let last: Tracked | undefined;
    while (queue[0]?.done) last = queue.shift();
    if (!last || this.#status === "closed") return;
    try {
      await this.#consumer.commitOffsets([
        { topic: this.#config.topic, partition, offset: (last.offset + 1n).toString() },
      ]);
    } catch (err) {
      // A rebalance took the partition away; its new owner gets the messages again.
      this.#logger.warn({ partition, err: (err as Error).message }, "offset commit failed");
    }
  }
}

import { setTimeout as sleep } from "node:timers/promises";
import type { Consumer, KafkaMessage, Producer } from "kafkajs";
import type { Logger } from "pino";
import type { Intake } from "../daemon/intake.ts";
import { parseHookEvent } from "../daemon/intake.ts";
import type { Metrics } from "../daemon/metrics.ts";
import type { Scheduler } from "../daemon/scheduler.ts";
import { errorMessage } from "../errors.ts";
import { ensureTopic, kafkaClient } from "./client.ts";
import { OffsetTracker } from "./offsets.ts";
import type { Ticket } from "./offsets.ts";
import type { KafkaConfig } from "./client.ts";

export type KafkaState = "off" | "connecting" | "running" | "closed";

export interface KafkaIntakeDeps {
  config: KafkaConfig;
  intake: Intake;
  scheduler: Scheduler;
  metrics: Metrics;
  logger: Logger;
  /** Called with the partitions this daemon holds after every rebalance (empty: none). */
  onAssignment: (partitions: ReadonlySet<number>, partitionCount: number) => void;
  /** Called when the consumer stops holding partitions (Kafka away, crash, close). */
  onDetached: () => void;
}

/**
 * Consumes commit events from a topic in a consumer group. Never takes the daemon down: the
 * topic is created when missing, and an unreachable broker, a broker restart or a consumer crash
 * are retried with back-off while webhooks and the reconciler go on.
 *
 * A message's offset is committed only after its lane has exported that commit or a later one:
 * Kafka commits a position, so per partition only the longest run of finished messages from the
 * front is committed. A partition with too many messages waiting is paused until they drain, so
 * a lane that keeps failing does not make memory grow. A message that cannot be recorded (not a
 * lakeFS event, a destination that cannot be resolved, a store error) goes to the dead-letter
 * topic with the reason, and the partition moves on.
 */
export class KafkaIntake {
  readonly #d: KafkaIntakeDeps;
  readonly #consumer: Consumer;
  readonly #producer: Producer | undefined;
  readonly #offsets: OffsetTracker;
  readonly #abort = new AbortController();
  #state: KafkaState = "off";
  #partitionCount = 0;
  #crashed: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(deps: KafkaIntakeDeps) {
    this.#d = deps;
    this.#offsets = new OffsetTracker(deps.config.maxUncommittedPerPartition);
    const kafka = kafkaClient(deps.config, deps.logger);
    this.#consumer = kafka.consumer({
      groupId: deps.config.groupId,
      allowAutoTopicCreation: false,
      sessionTimeout: deps.config.sessionTimeoutMs,
      heartbeatInterval: deps.config.heartbeatIntervalMs,
      // kafkajs heartbeats between fetches: a fetch may not wait out the session.
      maxWaitTimeInMs: Math.min(5_000, Math.floor(deps.config.sessionTimeoutMs / 3)),
      rebalanceTimeout: Math.max(deps.config.sessionTimeoutMs, 10_000),
    });
    this.#producer = deps.config.deadLetterTopic
      ? kafka.producer({ allowAutoTopicCreation: true })
      : undefined;
    const { events } = this.#consumer;
    this.#consumer.on(events.GROUP_JOIN, ({ payload }) => {
      // After a rebalance, uncommitted messages are delivered again: forget what was in flight,
      // and resume what was paused (kafkajs keeps a partition paused across a rejoin).
      this.#offsets.reset();
      const stale = this.#consumer.paused();
      if (stale.length > 0) {
        this.#consumer.resume(stale);
        this.#d.logger.info({ paused: stale }, "paused partitions resumed after a rebalance");
      }
      const held = new Set(payload.memberAssignment[deps.config.topic] ?? []);
      this.#setState("running");
      this.#d.metrics.kafkaPartitions(held.size);
      this.#d.logger.info({ partitions: [...held].sort((a, b) => a - b) }, "partitions assigned");
      this.#d.onAssignment(held, this.#partitionCount);
    });
    this.#consumer.on(events.CRASH, ({ payload }) => {
      this.#d.logger.warn(
        { err: payload.error, restart: payload.restart },
        "Kafka consumer crashed",
      );
      // Until it joins again, this daemon holds no partitions.
      this.#setState("connecting");
      this.#d.onDetached();
      this.#d.metrics.kafkaPartitions(0);
      // kafkajs restarts the consumer itself after retriable errors; otherwise reconnect here.
      if (!payload.restart) this.#crashed?.();
    });
  }

  get state(): KafkaState {
    return this.#state;
  }

  /** Starts connecting in the background; returns at once. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Idempotent; concurrent callers wait for the same close. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#setState("closed");
      this.#abort.abort();
      this.#crashed?.();
      await this.#loop;
      await this.#consumer.disconnect().catch(() => undefined);
      await this.#producer?.disconnect().catch(() => undefined);
    })();
    return this.#closing;
  }

  async #run(): Promise<void> {
    let delay = 1;
    while (!this.#abort.signal.aborted) {
      this.#setState("connecting");
      try {
        await this.#connect();
        delay = 1;
        // Consuming until the consumer crashes for good or the intake closes.
        await new Promise<void>((resolve) => (this.#crashed = resolve));
      } catch (err) {
        if (this.#abort.signal.aborted) break;
        this.#d.logger.warn(
          { err, retryInSeconds: delay },
          "Kafka unavailable; retrying (webhooks and the reconciler go on)",
        );
      }
      this.#crashed = undefined;
      this.#d.onDetached();
      this.#d.metrics.kafkaPartitions(0);
      await this.#consumer.disconnect().catch(() => undefined);
      if (this.#abort.signal.aborted) break;
      await sleep(delay * 1000 * (0.5 + Math.random() / 2), undefined, {
        signal: this.#abort.signal,
      }).catch(() => undefined);
      delay = Math.min(delay * 2, this.#d.config.reconnectMaxSeconds);
    }
  }

  async #connect(): Promise<void> {
    const { config, logger } = this.#d;
    const admin = kafkaClient(config, logger).admin();
    await admin.connect();
    try {
      this.#partitionCount = await ensureTopic(admin, config.topic, config.partitions, logger);
    } finally {
      await admin.disconnect();
    }
    await this.#producer?.connect();
    await this.#consumer.connect();
    await this.#consumer.subscribe({ topic: config.topic, fromBeginning: true });
    await this.#consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => this.#onMessage(partition, message),
    });
  }

  #setState(state: KafkaState): void {
    if (this.#state === "closed") return;
    this.#state = state;
    this.#d.metrics.kafkaState(state);
  }

  async #onMessage(partition: number, message: KafkaMessage): Promise<void> {
    const tracked = this.#offsets.read(partition, message.offset);
    this.#throttle(partition);

    let outcome;
    try {
      const event = parseHookEvent(JSON.parse(message.value?.toString("utf8") ?? ""));
      outcome = await this.#d.intake.handle(event, "kafka");
    } catch (err) {
      await this.#deadLetter(partition, message, err);
      return this.#finish(tracked);
    }
    if (outcome.lanes.length === 0) return this.#finish(tracked);
    void Promise.all(
      outcome.lanes.map(({ lane, seq }) => this.#d.scheduler.covered(lane, seq)),
    ).then(() => this.#finish(tracked));
  }

  /** Never blocks its partition: logged, copied to the dead-letter topic when there is one. */
  async #deadLetter(partition: number, message: KafkaMessage, err: unknown): Promise<void> {
    this.#d.metrics.intake("kafka", "rejected");
    this.#d.logger.warn(
      { partition, offset: message.offset, key: message.key?.toString(), err },
      "Kafka message cannot be recorded; dead-lettered",
    );
    // A dead-letter topic that cannot be written throws: the message is delivered again.
    await this.#producer?.send({
      topic: this.#d.config.deadLetterTopic,
      messages: [
        {
          key: message.key,
          value: message.value,
          headers: {
            "lakefs-mirror-error": errorMessage(err),
            "lakefs-mirror-source": `${this.#d.config.topic}/${partition}/${message.offset}`,
          },
        },
      ],
    });
  }

  /** Pauses a partition with too many messages waiting for their export; resumes at half. */
  #throttle(partition: number): void {
    const topic = this.#d.config.topic;
    const waiting = this.#offsets.waiting(partition);
    switch (this.#offsets.pressure(partition)) {
      case "pause":
        this.#consumer.pause([{ topic, partitions: [partition] }]);
        this.#d.logger.warn(
          { partition, waiting },
          "partition paused: too many events wait for their export",
        );
        return;
      case "resume":
        this.#consumer.resume([{ topic, partitions: [partition] }]);
        this.#d.logger.info({ partition, waiting }, "partition resumed");
        return;
      case undefined:
        return;
    }
  }

  async #finish(tracked: Ticket): Promise<void> {
    const next = this.#offsets.finish(tracked);
    this.#throttle(tracked.partition);
    if (next === undefined || this.#state !== "running") return;
    try {
      await this.#consumer.commitOffsets([
        { topic: this.#d.config.topic, partition: tracked.partition, offset: next },
      ]);
    } catch (err) {
      // A rebalance took the partition away; its new owner gets the messages again.
      this.#d.logger.warn({ partition: tracked.partition, err }, "offset commit failed");
    }
  }
}

import { setTimeout as sleep } from "node:timers/promises";
import type { Admin, Consumer, KafkaMessage } from "kafkajs";
import type { Logger } from "pino";
import type { Intake } from "../daemon/intake.ts";
import { parseHookEvent } from "../daemon/intake.ts";
import type { Metrics } from "../daemon/metrics.ts";
import type { Scheduler } from "../daemon/scheduler.ts";
import { ConfigError } from "../errors.ts";
import {
  assignedPartitionCount,
  checkSessionTimeout,
  ensureTopic,
  kafkaClient,
  partitionOf,
  sessionTimeoutRefused,
  topicPartitionCount,
} from "./client.ts";
import type { KafkaConfig } from "./client.ts";
import { DeadLetters } from "./dead-letter.ts";
import { OffsetTracker } from "./offsets.ts";
import type { PartitionBacklog, Ticket } from "./offsets.ts";

export type KafkaState = "off" | "connecting" | "running" | "closed";

export interface KafkaIntakeDeps {
  config: KafkaConfig;
  intake: Intake;
  scheduler: Scheduler;
  metrics: Metrics;
  logger: Logger;
  /**
   * Called with the partitions this daemon holds after every rebalance (empty: none), and the
   * partition count that assignment was made for.
   */
  onAssignment: (partitions: ReadonlySet<number>, partitionCount: number) => void;
  /** Called when the consumer stops holding partitions (Kafka away, crash, close). */
  onDetached: () => void;
  /** Called once when the broker refuses the configuration: the intake has stopped. */
  onFatal?: (err: ConfigError) => void;
}

/**
 * Consumes commit events from a topic in a consumer group. Never takes the daemon down: the
 * topic is created when missing, and an unreachable broker, a broker restart or a consumer crash
 * are retried with back-off while webhooks and the reconciler go on. Only a configuration the
 * broker refuses (a session timeout outside its bounds) stops it, through `onFatal`.
 *
 * A message's offset is committed only after its lane has exported that commit or a later one:
 * Kafka commits a position, so per partition only the longest run of finished messages from the
 * front is committed. A partition with too many messages waiting is paused until they drain, so
 * a lane that keeps failing does not make memory grow. A message that cannot be recorded (not a
 * lakeFS event, a destination that cannot be resolved, a store error) goes to the dead-letter
 * topic with the reason (see DeadLetters), and the partition moves on.
 *
 * Every member of the group must map a lane's key to the same partition, so the partition
 * count used for ownership is the one the group's assignment was made for, read at every join:
 * kafkajs rejoins by itself when the topic gains partitions (within `metadataMaxAgeMs`).
 */
export class KafkaIntake {
  readonly #d: KafkaIntakeDeps;
  readonly #consumer: Consumer;
  readonly #deadLetters: DeadLetters;
  readonly #offsets: OffsetTracker;
  readonly #abort = new AbortController();
  #admin: Admin | undefined;
  #state: KafkaState = "off";
  #partitionCount = 0;
  #held: ReadonlySet<number> = new Set();
  /** Counts joins; lookups started for an earlier one are dropped. */
  #generation = 0;
  /** Resolves once the current join's assignment is announced. */
  #joined: Promise<void> = Promise.resolve();
  #recheckedIn = -1;
  #fatal: ConfigError | undefined;
  #crashed: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(deps: KafkaIntakeDeps) {
    this.#d = deps;
    const { config } = deps;
    this.#offsets = new OffsetTracker(config.maxUncommittedPerPartition);
    const kafka = kafkaClient(config, deps.logger);
    this.#consumer = kafka.consumer({
      groupId: config.groupId,
      allowAutoTopicCreation: false,
      sessionTimeout: config.sessionTimeoutMs,
      heartbeatInterval: config.heartbeatIntervalMs,
      metadataMaxAge: config.metadataMaxAgeMs,
      // kafkajs heartbeats between fetches: a fetch may not wait out the session.
      maxWaitTimeInMs: Math.min(5_000, Math.floor(config.sessionTimeoutMs / 3)),
      rebalanceTimeout: Math.max(config.sessionTimeoutMs, 10_000),
      // kafkajs's own default (5 retries), and no restart after a crash once the intake closes:
      // kafkajs schedules that restart on a timer a racing disconnect does not always cancel,
      // and a consumer restarting against a broker that is gone keeps the process alive.
      retry: { retries: 5, restartOnFailure: () => Promise.resolve(!this.#abort.signal.aborted) },
    });
    this.#deadLetters = new DeadLetters(kafka, config, deps.metrics, deps.logger);
    deps.metrics.kafkaBacklog(() => this.backlog());
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
      const held = new Set(payload.memberAssignment[config.topic] ?? []);
      const generation = ++this.#generation;
      this.#held = held;
      this.#setState("running");
      this.#d.metrics.kafkaPartitions(held.size);
      this.#joined = this.#announce(generation, held);
    });
    this.#consumer.on(events.CRASH, ({ payload }) => {
      this.#d.logger.warn(
        { err: payload.error, restart: payload.restart },
        "Kafka consumer crashed",
      );
      // Until it joins again, this daemon holds no partitions.
      this.#setState("connecting");
      this.#held = new Set();
      this.#d.onDetached();
      this.#d.metrics.kafkaPartitions(0);
      if (isSessionTimeoutRefusal(payload.error)) {
        this.#fatal = sessionTimeoutRefused(
          config.sessionTimeoutMs,
          "it refused the group join (INVALID_SESSION_TIMEOUT); set it within the broker's group.min.session.timeout.ms .. group.max.session.timeout.ms",
        );
      }
      // kafkajs restarts the consumer itself after retriable errors; otherwise reconnect here.
      if (!payload.restart || this.#fatal) this.#crashed?.();
    });
  }

  get state(): KafkaState {
    return this.#state;
  }

  /** Every partition held, and any other read since the last rebalance, by number. */
  backlog(): PartitionBacklog[] {
    const read = this.#offsets.backlog();
    const known = new Set(read.map((b) => b.partition));
    const idle = [...this.#held]
      .filter((p) => !known.has(p))
      .map((partition) => ({
        partition,
        uncommitted: 0,
        readOffset: null,
        committedOffset: null,
        paused: false,
      }));
    return [...read, ...idle].sort((a, b) => a.partition - b.partition);
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
      await this.#deadLetters.disconnect();
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
        if (err instanceof ConfigError) this.#fatal = err;
        else if (!this.#abort.signal.aborted) {
          this.#d.logger.warn(
            { err, retryInSeconds: delay },
            "Kafka unavailable; retrying (webhooks and the reconciler go on)",
          );
        }
      }
      this.#crashed = undefined;
      this.#held = new Set();
      this.#d.onDetached();
      this.#d.metrics.kafkaPartitions(0);
      await this.#consumer.disconnect().catch(() => undefined);
      await this.#admin?.disconnect().catch(() => undefined);
      this.#admin = undefined;
      if (this.#fatal) {
        this.#d.logger.error({ err: this.#fatal }, "the Kafka broker refuses the configuration");
        this.#setState("closed");
        this.#d.onFatal?.(this.#fatal);
        return;
      }
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
    this.#admin = admin;
    await admin.connect();
    this.#partitionCount = await ensureTopic(admin, config.topic, config.partitions, logger);
    await checkSessionTimeout(admin, config.sessionTimeoutMs);
    await this.#deadLetters.prepare(admin);
    await this.#consumer.connect();
    await this.#consumer.subscribe({ topic: config.topic, fromBeginning: true });
    await this.#consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => this.#onMessage(partition, message),
    });
  }

  /** Reads the count the join's assignment was made for, then tells the daemon. */
  async #announce(generation: number, held: ReadonlySet<number>): Promise<void> {
    const began = Date.now();
    const count = await this.#assignedCount(held);
    if (generation !== this.#generation) return;
    this.#partitionCount = count;
    this.#d.logger.info(
      {
        partitions: [...held].sort((a, b) => a - b),
        partitionCount: count,
        countReadInMs: Date.now() - began,
      },
      "partitions assigned",
    );
    this.#tell(held, count);
  }

  /** Tells the daemon; messages wait for this, so it must never reject. */
  #tell(held: ReadonlySet<number>, count: number): void {
    try {
      this.#d.onAssignment(held, count);
    } catch (err) {
      this.#d.logger.error({ err }, "handling the partition assignment failed");
    }
  }

  /**
   * The group's assignment (what its leader shared out), else the topic's metadata, within a
   * third of the session: messages wait for this, and kafkajs heartbeats only between them.
   */
  async #assignedCount(held: ReadonlySet<number>): Promise<number> {
    const { config, logger } = this.#d;
    const floor = Math.max(this.#partitionCount, ...[...held].map((p) => p + 1));
    const admin = this.#admin;
    if (!admin) return floor;
    let timer: NodeJS.Timeout | undefined;
    // Both at once: the second is the answer only while the group is not stable.
    const lookup = Promise.all([
      assignedPartitionCount(admin, config.groupId, config.topic).catch(() => undefined),
      topicPartitionCount(admin, config.topic),
    ]).then(([assigned, now]) => assigned ?? Math.max(now, ...[...held].map((p) => p + 1)));
    lookup.catch(() => undefined);
    try {
      return await Promise.race([
        lookup,
        new Promise<number>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error("no answer in time")),
            Math.floor(config.sessionTimeoutMs / 3),
          );
        }),
      ]);
    } catch (err) {
      logger.warn({ err, partitionCount: floor }, "cannot read the topic's partition count");
      return floor;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * A key the default partitioner sends elsewhere than where its message is: the producer
   * counts partitions differently (older metadata after partitions were added, or another
   * partitioner), or this daemon does. Reads the count again, once per join.
   */
  #checkKey(partition: number, message: KafkaMessage): void {
    const key = message.key?.toString();
    if (!key || this.#partitionCount === 0) return;
    const expected = partitionOf(key, this.#partitionCount);
    if (expected === partition || this.#recheckedIn === this.#generation) return;
    const generation = (this.#recheckedIn = this.#generation);
    this.#d.logger.warn(
      { key, partition, expected, partitionCount: this.#partitionCount },
      "a message arrived on another partition than its key maps to: handled here; reading the partition count again",
    );
    void (async () => {
      const held = this.#held;
      const count = await this.#assignedCount(held);
      if (generation !== this.#generation || count === this.#partitionCount) return;
      this.#partitionCount = count;
      this.#d.logger.info({ partitionCount: count }, "the topic's partition count changed");
      this.#tell(held, count);
    })();
  }

  #setState(state: KafkaState): void {
    if (this.#state === "closed") return;
    this.#state = state;
    this.#d.metrics.kafkaState(state);
  }

  async #onMessage(partition: number, message: KafkaMessage): Promise<void> {
    await this.#joined;
    const tracked = this.#offsets.read(partition, message.offset);
    this.#throttle(partition);
    this.#checkKey(partition, message);

    let outcome;
    try {
      const event = parseHookEvent(JSON.parse(message.value?.toString("utf8") ?? ""));
      // The partition a message arrived on is the truth for that message: this daemon holds
      // it, so this daemon handles it. Answering "another daemon works on it" would commit the
      // offset of an event nobody exported.
      outcome = await this.#d.intake.handle(event, "kafka", { owned: true });
    } catch (err) {
      await this.#deadLetters.send(partition, message, err);
      return this.#finish(tracked);
    }
    if (outcome.lanes.length === 0) return this.#finish(tracked);
    void Promise.all(
      outcome.lanes.map(({ lane, seq }) => this.#d.scheduler.covered(lane, seq)),
    ).then(() => this.#finish(tracked));
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

/** The group coordinator's refusal of the session timeout (Kafka error 26), however wrapped. */
function isSessionTimeoutRefusal(err: unknown): boolean {
  for (let e = err, depth = 0; e && typeof e === "object" && depth < 5; depth++) {
    if ((e as { type?: unknown }).type === "INVALID_SESSION_TIMEOUT") return true;
    e =
      (e as { originalError?: unknown; cause?: unknown }).originalError ??
      (e as { cause?: unknown }).cause;
  }
  return false;
}

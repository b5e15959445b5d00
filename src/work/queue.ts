import { setTimeout as sleep } from "node:timers/promises";
import type { Consumer, Producer } from "kafkajs";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import { ensureTopic, kafkaClient } from "../kafka/client.ts";
import { parseItem } from "./items.ts";
import type { WorkItem } from "./items.ts";

/** How long issuing items may wait for Kafka before the owner does them itself. */
export const ISSUE_TIMEOUT_MS = 5_000;

/**
 * The group's work topic: owners of split exports issue items to it, without a key, so that
 * the producer deals them out over the partitions in turn (an even share for every member, and
 * an item issued again usually lands on another partition than the delivery it replaces, which
 * may be stuck behind a hung item) and every daemon of the group consumes it, in a consumer
 * group of its own (`<kafka.groupId>.work`), `work.itemsInParallel` items at a time. An item's
 * offset is committed once its worker is done with it, so a worker killed mid-item leaves it to
 * another. Kafka away never stops the daemon: issuing fails fast (the owner does the items
 * itself) and the consumer reconnects with back-off.
 */
export class WorkQueue {
  readonly #config: Config;
  readonly #logger: Logger;
  readonly #producer: Producer;
  readonly #consumer: Consumer;
  readonly #abort = new AbortController();
  #connected: Promise<void> | undefined;
  #loop: Promise<void> | undefined;
  #members = 1;
  readonly #handle: (item: WorkItem, signal: AbortSignal) => Promise<void>;

  constructor(
    config: Config,
    logger: Logger,
    handle: (item: WorkItem, signal: AbortSignal) => Promise<void>,
  ) {
    this.#handle = handle;
    this.#config = config;
    this.#logger = logger;
    const kafka = kafkaClient(config.kafka, logger);
    this.#producer = kafka.producer({
      allowAutoTopicCreation: false,
      metadataMaxAge: config.kafka.metadataMaxAgeMs,
    });
    this.#producer.on(this.#producer.events.DISCONNECT, () => (this.#connected = undefined));
    this.#consumer = kafka.consumer({
      groupId: `${config.kafka.groupId}.work`,
      allowAutoTopicCreation: false,
      sessionTimeout: config.kafka.sessionTimeoutMs,
      heartbeatInterval: config.kafka.heartbeatIntervalMs,
      metadataMaxAge: config.kafka.metadataMaxAgeMs,
      maxWaitTimeInMs: Math.min(1_000, Math.floor(config.kafka.sessionTimeoutMs / 3)),
      // A member rejoins a rebalance once its item ends: a minute lets most items end first.
      rebalanceTimeout: Math.max(config.kafka.sessionTimeoutMs, 60_000),
      retry: { retries: 5, restartOnFailure: () => Promise.resolve(!this.#abort.signal.aborted) },
    });
  }

  get topic(): string {
    return this.#config.kafka.workTopic;
  }

  /** Daemons in the work group at its last join (1 before any): they share the write caps. */
  get members(): number {
    return this.#members;
  }

  /** Reads how many members the group has after a join; keeps the last count on failure. */
  async #countMembers(): Promise<void> {
    const admin = kafkaClient(this.#config.kafka, this.#logger).admin();
    try {
      await admin.connect();
      const groupId = `${this.#config.kafka.groupId}.work`;
      const { groups } = await admin.describeGroups([groupId]);
      const n = groups.find((g) => g.groupId === groupId)?.members.length ?? 0;
      if (n > 0 && n !== this.#members) {
        this.#members = n;
        this.#logger.info({ members: n }, "work group members: the write caps are shared by them");
      }
    } catch {
      // The last count stands.
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  /** Starts consuming in the background; returns at once. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Puts items on the topic; rejects when Kafka does not take them within ISSUE_TIMEOUT_MS. */
  async issue(items: readonly WorkItem[]): Promise<void> {
    if (items.length === 0) return;
    const send = (async () => {
      this.#connected ??= this.#producer.connect().catch((err: unknown) => {
        this.#connected = undefined;
        throw err;
      });
      await this.#connected;
      await this.#producer.send({
        topic: this.topic,
        messages: items.map((item) => ({ value: JSON.stringify(item) })),
      });
    })();
    send.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `Kafka did not take ${items.length} work items within ${ISSUE_TIMEOUT_MS} ms`,
            ),
          ),
        ISSUE_TIMEOUT_MS,
      );
    });
    try {
      await Promise.race([send, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.#abort.abort();
    await this.#loop;
    await this.#consumer.disconnect().catch(() => undefined);
    await this.#producer.disconnect().catch(() => undefined);
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    let delay = 1;
    while (!signal.aborted) {
      try {
        await this.#consume(signal);
        delay = 1;
      } catch (err) {
        if (signal.aborted) break;
        this.#logger.warn({ err, retryInSeconds: delay }, "work topic unavailable; retrying");
      }
      await this.#consumer.disconnect().catch(() => undefined);
      await sleep(delay * 1000, undefined, { signal }).catch(() => undefined);
      delay = Math.min(delay * 2, this.#config.kafka.reconnectMaxSeconds);
    }
  }

  /** Consumes until the consumer crashes for good or the queue closes. */
  async #consume(signal: AbortSignal): Promise<void> {
    const kafka = kafkaClient(this.#config.kafka, this.#logger);
    const admin = kafka.admin();
    try {
      await admin.connect();
      await ensureTopic(admin, this.topic, this.#config.kafka.partitions, this.#logger);
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
    const { CRASH, STOP, GROUP_JOIN } = this.#consumer.events;
    const removers: (() => void)[] = [];
    const stopped = new Promise<void>((resolve) => {
      removers.push(
        this.#consumer.on(CRASH, ({ payload }) => {
          if (!payload.restart) resolve();
        }),
        this.#consumer.on(STOP, () => resolve()),
        this.#consumer.on(GROUP_JOIN, () => void this.#countMembers()),
      );
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
    await this.#consumer.connect();
    // From the beginning for a new group: items issued before it joined are not lost (stale
    // ones cost one read of their lease each).
    await this.#consumer.subscribe({ topic: this.topic, fromBeginning: true });
    await this.#consumer.run({
      partitionsConsumedConcurrently: this.#config.work.itemsInParallel,
      eachMessage: async (payload) => {
        const { message } = payload;
        if (!message.value) return;
        let item: WorkItem;
        try {
          item = parseItem(message.value.toString("utf8"));
        } catch (err) {
          this.#logger.warn({ err, offset: message.offset }, "not a work item; skipped");
          return;
        }
        // kafkajs heartbeats only between messages: an item takes longer than a session, so
        // this one keeps the member in the group while it runs (else the group would drop it,
        // and hand the item to another worker, which would copy it again).
        const beating = setInterval(() => {
          payload.heartbeat().catch(() => undefined);
        }, this.#config.kafka.heartbeatIntervalMs);
        try {
          await this.#handle(item, signal);
        } finally {
          clearInterval(beating);
        }
      },
    });
    await stopped.finally(() => {
      for (const remove of removers) remove();
    });
  }
}

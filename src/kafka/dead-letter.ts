import type { Admin, Kafka, KafkaMessage, Producer } from "kafkajs";
import type { Logger } from "pino";
import type { Metrics } from "../daemon/metrics.ts";
import { errorMessage } from "../errors.ts";
import { ensureTopic } from "./client.ts";
import type { KafkaConfig } from "./client.ts";

/**
 * Where messages that cannot be recorded go: `kafka.deadLetterTopic` with the reason, else the
 * log. The topic is created at connect like the main topic, so a broker with topic
 * auto-creation off works. A topic that cannot be created or written never stops the intake:
 * a write gets a bounded time (well inside the session, since kafkajs heartbeats only between
 * messages), and when it fails the whole message goes to the log at error level instead,
 * counted, and its partition moves on. Blocking the partition would lose nothing more (the
 * message stays in the topic until its retention, and the log line names its place), but would
 * stop every lane of the partition, and a handler that throws makes kafkajs deliver the message
 * again and then restart the consumer: the partition would move from member to member.
 */
export class DeadLetters {
  readonly #config: KafkaConfig;
  readonly #metrics: Metrics;
  readonly #logger: Logger;
  readonly #producer: Producer | undefined;
  readonly #budgetMs: number;
  /** After a failed write, messages go to the log alone until then (ms since the epoch). */
  #skipUntil = 0;

  constructor(kafka: Kafka, config: KafkaConfig, metrics: Metrics, logger: Logger) {
    this.#config = config;
    this.#metrics = metrics;
    this.#logger = logger;
    this.#budgetMs = Math.max(500, Math.min(10_000, Math.floor(config.sessionTimeoutMs / 3)));
    this.#producer = config.deadLetterTopic
      ? kafka.producer({
          allowAutoTopicCreation: false,
          metadataMaxAge: config.metadataMaxAgeMs,
          retry: { retries: 2, initialRetryTime: 100, maxRetryTime: this.#budgetMs },
        })
      : undefined;
  }

  /** Creates the topic when it is missing; one that cannot be created leaves the log alone. */
  async prepare(admin: Admin): Promise<void> {
    const topic = this.#config.deadLetterTopic;
    if (!this.#producer) return;
    try {
      await ensureTopic(admin, topic, 1, this.#logger);
      this.#metrics.kafkaDeadLetterUnavailable(false);
    } catch (err) {
      this.#metrics.kafkaDeadLetterUnavailable(true);
      this.#logger.error(
        { err, deadLetterTopic: topic },
        "the dead-letter topic does not exist and cannot be created: messages that cannot be recorded are only logged until it can be written (create it, or set kafka.deadLetterTopic empty)",
      );
    }
    await this.#producer.connect();
  }

  async disconnect(): Promise<void> {
    await this.#producer?.disconnect().catch(() => undefined);
  }

  /** Never throws, and returns within the write budget. */
  async send(partition: number, message: KafkaMessage, reason: unknown): Promise<void> {
    const source = `${this.#config.topic}/${partition}/${message.offset}`;
    const where = { partition, offset: message.offset, key: message.key?.toString(), err: reason };
    this.#metrics.intake("kafka", "rejected");
    if (this.#producer && Date.now() >= this.#skipUntil) {
      try {
        await this.#write(message, reason, source);
        this.#metrics.kafkaDeadLetterUnavailable(false);
        this.#logger.warn(where, "Kafka message cannot be recorded; dead-lettered");
        return;
      } catch (err) {
        this.#skipUntil = Date.now() + this.#config.reconnectMaxSeconds * 1000;
        this.#metrics.kafkaDeadLetterUnavailable(true);
        this.#logger.error(
          { deadLetterTopic: this.#config.deadLetterTopic, err },
          "cannot write to the dead-letter topic",
        );
      }
    }
    if (this.#producer) this.#metrics.kafkaDeadLetterFailed();
    // The whole message, so that nothing is lost with the topic's retention.
    const value = message.value;
    const text = value?.toString("utf8");
    const line = {
      ...where,
      source,
      ...(value && Buffer.from(text ?? "", "utf8").equals(value)
        ? { value: text }
        : { valueBase64: value?.toString("base64") ?? null }),
    };
    if (this.#producer)
      this.#logger.error(
        line,
        "Kafka message cannot be recorded, nor written to the dead-letter topic: logged here only",
      );
    else
      this.#logger.warn(
        line,
        "Kafka message cannot be recorded; logged (no kafka.deadLetterTopic)",
      );
  }

  async #write(message: KafkaMessage, reason: unknown, source: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const sent = this.#producer!.send({
      topic: this.#config.deadLetterTopic,
      acks: -1,
      timeout: this.#budgetMs,
      messages: [
        {
          key: message.key,
          value: message.value,
          headers: {
            "lakefs-mirror-error": errorMessage(reason),
            "lakefs-mirror-source": source,
          },
        },
      ],
    });
    // Waited for no longer than the budget: a write still in flight may land later, harmlessly.
    sent.catch(() => undefined);
    try {
      await Promise.race([
        sent,
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${this.#budgetMs} ms`)),
            this.#budgetMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}

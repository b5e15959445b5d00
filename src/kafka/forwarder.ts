import type { Producer } from "kafkajs";
import type { Logger } from "pino";
import type { HookEvent } from "../lakefs/types.ts";
import { kafkaClient, laneKey } from "./client.ts";
import type { KafkaConfig } from "./client.ts";

/**
 * How long a webhook waits for Kafka to take its event before the daemon handles it itself.
 * lakeFS gives up on a hook after its timeout (10 s in deploy/lakefs-action.yaml); kafkajs, with
 * a broker away, retries its connection for longer than that.
 */
export const FORWARD_TIMEOUT_MS = 3_000;

/**
 * Publishes webhook events to the topic (key `<repository>/<branch>`), for the consumer group
 * to export. Connects on first use and again after a failure, so a broker that is away at
 * start-up never stops the daemon; a publish that fails throws, and the caller handles the
 * event itself.
 */
export class KafkaForwarder {
  readonly #producer: Producer;
  readonly #topic: string;
  #connected: Promise<void> | undefined;

  constructor(config: KafkaConfig, logger: Logger) {
    this.#producer = kafkaClient(config, logger).producer({
      allowAutoTopicCreation: false,
      metadataMaxAge: config.metadataMaxAgeMs,
    });
    this.#topic = config.topic;
    this.#producer.on(this.#producer.events.DISCONNECT, () => (this.#connected = undefined));
  }

  /**
   * Resolves once the topic has the event; rejects when Kafka cannot take it within
   * FORWARD_TIMEOUT_MS (a late publish may still land: the event is then exported twice, which
   * is harmless).
   */
  async publish(event: HookEvent): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`Kafka did not take the event within ${FORWARD_TIMEOUT_MS} ms`)),
        FORWARD_TIMEOUT_MS,
      );
    });
    const sending = this.#send(event);
    sending.catch(() => undefined);
    try {
      await Promise.race([sending, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #send(event: HookEvent): Promise<void> {
    this.#connected ??= this.#producer.connect().catch((err: unknown) => {
      this.#connected = undefined;
      throw err;
    });
    await this.#connected;
    await this.#producer.send({
      topic: this.#topic,
      acks: -1,
      messages: [
        { key: laneKey(event.repository_id, event.branch_id ?? ""), value: JSON.stringify(event) },
      ],
    });
  }

  async close(): Promise<void> {
    await this.#producer.disconnect();
  }
}

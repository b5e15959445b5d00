import type { Producer } from "kafkajs";
import type { Logger } from "pino";
import type { HookEvent } from "../lakefs/types.ts";
import { kafkaClient, laneKey } from "./client.ts";
import type { KafkaConfig } from "./client.ts";

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
    this.#producer = kafkaClient(config, logger).producer({ allowAutoTopicCreation: false });
    this.#topic = config.topic;
    this.#producer.on(this.#producer.events.DISCONNECT, () => (this.#connected = undefined));
  }

  async publish(event: HookEvent): Promise<void> {
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

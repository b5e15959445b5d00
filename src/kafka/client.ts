import { Kafka, Partitioners, logLevel } from "kafkajs";
import type { Admin } from "kafkajs";
import type { Logger } from "pino";
import type { Config } from "../config.ts";

export type KafkaConfig = Config["kafka"];

export function kafkaClient(config: KafkaConfig, logger: Logger): Kafka {
  return new Kafka({
    clientId: config.clientId,
    brokers: [...config.brokers],
    logLevel: logLevel.WARN,
    // kafkajs retries inside each call; the intake's own loop retries whole connections.
    retry: { initialRetryTime: 300, retries: 5, maxRetryTime: 5_000 },
    logCreator: () => (entry) => {
      logger.warn({ kafka: entry.namespace, ...entry.log }, entry.log.message);
    },
  });
}

/** The key of a lane's events: the topic's partitions are chosen by it. */
export function laneKey(repository: string, branch: string): string {
  return `${repository}/${branch}`;
}

const keyed = Partitioners.DefaultPartitioner();

/**
 * The partition the producer puts a key in: kafkajs's default partitioner (Java's murmur2 on
 * the key, modulo the number of partitions), so that ownership and routing agree.
 */
export function partitionOf(key: string, partitions: number): number {
  return keyed({
    topic: "",
    partitionMetadata: Array.from({ length: partitions }, (_, partitionId) => ({
      partitionId,
      leader: 0,
      replicas: [0],
      isr: [0],
      partitionErrorCode: 0,
    })),
    message: { key, value: null },
  });
}

/**
 * The topic's partition count, creating the topic first when it does not exist yet (with
 * `partitions` partitions and the broker's default replication). A broker that refuses to
 * create topics leaves it to the operator: the caller waits and asks again.
 */
export async function ensureTopic(
  admin: Admin,
  topic: string,
  partitions: number,
  logger: Logger,
): Promise<number> {
  const existing = await admin.listTopics();
  if (!existing.includes(topic)) {
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: partitions }],
      waitForLeaders: true,
    });
    if (created) logger.info({ topic, partitions }, "created the Kafka topic");
  }
  const meta = await admin.fetchTopicMetadata({ topics: [topic] });
  const count = meta.topics.find((t) => t.name === topic)?.partitions.length ?? 0;
  if (count === 0) throw new Error(`topic ${topic} has no partitions yet`);
  return count;
}

import { AssignerProtocol, Kafka, Partitioners, logLevel } from "kafkajs";
import type { Admin } from "kafkajs";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import { ConfigError } from "../errors.ts";

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
  const count = await topicPartitionCount(admin, topic);
  if (count === 0) throw new Error(`topic ${topic} has no partitions yet`);
  return count;
}

/** How many partitions the topic has now (0: none known). */
export async function topicPartitionCount(admin: Admin, topic: string): Promise<number> {
  const meta = await admin.fetchTopicMetadata({ topics: [topic] });
  return meta.topics.find((t) => t.name === topic)?.partitions.length ?? 0;
}

/**
 * How many of the topic's partitions the group's current assignment shares out, read from the
 * group's members (what the leader assigned, whatever each member's metadata says); undefined
 * while the group is not stable or its assignment does not cover partitions 0..n-1. kafkajs's
 * assigners give out every partition the leader knows, so this is the count the leader saw.
 */
export async function assignedPartitionCount(
  admin: Admin,
  groupId: string,
  topic: string,
): Promise<number | undefined> {
  const { groups } = await admin.describeGroups([groupId]);
  const group = groups.find((g) => g.groupId === groupId);
  if (group?.state !== "Stable") return undefined;
  const assigned = new Set<number>();
  for (const member of group.members) {
    if (member.memberAssignment.length === 0) continue;
    const decoded = AssignerProtocol.MemberAssignment.decode(member.memberAssignment);
    for (const p of decoded?.assignment[topic] ?? []) assigned.add(p);
  }
  if (assigned.size === 0 || Math.max(...assigned) !== assigned.size - 1) return undefined;
  return assigned.size;
}

/** The broker settings that bound a consumer's session timeout, and their Kafka defaults. */
const sessionBounds = [
  ["group.min.session.timeout.ms", 6_000],
  ["group.max.session.timeout.ms", 1_800_000],
] as const;

/**
 * Refuses a session timeout outside the broker's `group.min.session.timeout.ms` ..
 * `group.max.session.timeout.ms` (the broker would refuse every join with
 * INVALID_SESSION_TIMEOUT). A broker that does not let this client describe its configuration
 * is not checked here; the refused join says the same later.
 */
export async function checkSessionTimeout(admin: Admin, sessionTimeoutMs: number): Promise<void> {
  let entries;
  try {
    const { brokers } = await admin.describeCluster();
    const broker = brokers[0];
    if (!broker) return;
    const described = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [
        {
          // DescribeConfigs' resource type of a broker (kafkajs's enum is not an ES export).
          type: 4,
          name: String(broker.nodeId),
          configNames: sessionBounds.map(([name]) => name),
        },
      ],
    });
    entries = described.resources[0]?.configEntries ?? [];
  } catch {
    return;
  }
  const value = (name: string, fallback: number) => {
    const v = Number(entries.find((e) => e.configName === name)?.configValue);
    return Number.isFinite(v) && v > 0 ? v : fallback;
  };
  const [[minName, minDefault], [maxName, maxDefault]] = sessionBounds;
  const min = value(minName, minDefault);
  const max = value(maxName, maxDefault);
  if (sessionTimeoutMs < min || sessionTimeoutMs > max)
    throw sessionTimeoutRefused(
      sessionTimeoutMs,
      `it accepts ${min}..${max} ms (${minName} .. ${maxName})`,
    );
}

/** The error for a session timeout the group coordinator refuses; `why` says what it allows. */
export function sessionTimeoutRefused(sessionTimeoutMs: number, why: string): ConfigError {
  return new ConfigError(
    `kafka.sessionTimeoutMs ${sessionTimeoutMs} is refused by the Kafka broker: ${why}`,
  );
}

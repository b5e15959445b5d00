import type { Config } from "./config-schema.ts";
import { ConfigError } from "./errors.ts";

/**
 * Webhook tokens that the deploy files ship as placeholders: anyone who read the repository
 * knows them, so a daemon configured with one accepts anybody's events.
 */
export const placeholderTokens: readonly string[] = ["replace-with-a-long-random-token"];

/** Kafka's rule for topic names (org.apache.kafka.common.internals.Topic: legal chars, 249 max). */
const topicName = /^[a-zA-Z0-9._-]{1,249}$/;

/**
 * The checks of the configuration that only the daemon (`lakefs-mirror run`) needs, across
 * keys: each refusal names the keys (and their environment variables) to fix. Returns the
 * warnings for settings that work but are risky.
 */
export function checkDaemonConfig(config: Config): string[] {
  const { webhook, kafka } = config;
  const warnings: string[] = [];
  if (!webhook.token) {
    throw new ConfigError(
      'webhook.token must be set (LAKEFS_MIRROR_WEBHOOK_TOKEN), or "disabled" to accept unauthenticated webhooks',
    );
  }
  if (placeholderTokens.includes(webhook.token) || /^replace[-_ ]with\b/i.test(webhook.token)) {
    throw new ConfigError(
      "webhook.token (LAKEFS_MIRROR_WEBHOOK_TOKEN) is the placeholder from the deploy manifests: set a long random secret (for example `openssl rand -hex 32`) in the Secret",
    );
  }
  const brokers = kafka.brokers.length > 0;
  const topic = kafka.topic !== "";
  if (brokers !== topic) {
    // Half a Kafka configuration would run alone and work on every lane of the group.
    throw new ConfigError(
      brokers
        ? "kafka.brokers (KAFKA_BROKERS) is set but kafka.topic (LAKEFS_MIRROR_KAFKA_TOPIC) is empty: set the topic to join the consumer group, or unset the brokers to run alone"
        : "kafka.topic (LAKEFS_MIRROR_KAFKA_TOPIC) is set but kafka.brokers (KAFKA_BROKERS) is empty: set the brokers to join the consumer group, or unset the topic to run alone",
    );
  }
  if (webhook.forwardToKafka && !(brokers && topic)) {
    throw new ConfigError("webhook.forwardToKafka needs kafka.brokers and kafka.topic");
  }
  if (!brokers) return warnings;
  for (const [key, name] of [
    ["kafka.topic", kafka.topic],
    ["kafka.deadLetterTopic", kafka.deadLetterTopic],
    ["kafka.workTopic", kafka.workTopic],
  ] as const) {
    if (name !== "" && (!topicName.test(name) || name === "." || name === "..")) {
      throw new ConfigError(
        `${key} "${name}" is not a Kafka topic name: letters, digits, ".", "_" and "-", at most 249`,
      );
    }
  }
  if (kafka.deadLetterTopic === kafka.topic) {
    throw new ConfigError(
      "kafka.deadLetterTopic must differ from kafka.topic: dead letters would be read again as events and dead-lettered again",
    );
  }
  if (kafka.workTopic !== "" && [kafka.topic, kafka.deadLetterTopic].includes(kafka.workTopic)) {
    throw new ConfigError(
      "kafka.workTopic must differ from kafka.topic and kafka.deadLetterTopic: work items and events are different messages",
    );
  }
  // Kafka's consumer rule: heartbeats must come more often than the session times out, and
  // typically no less often than a third of it, so one lost heartbeat does not end the session.
  if (kafka.heartbeatIntervalMs >= kafka.sessionTimeoutMs) {
    throw new ConfigError(
      `kafka.heartbeatIntervalMs (${kafka.heartbeatIntervalMs}) must be below kafka.sessionTimeoutMs (${kafka.sessionTimeoutMs}), at most a third of it`,
    );
  }
  if (kafka.heartbeatIntervalMs * 3 > kafka.sessionTimeoutMs) {
    warnings.push(
      `kafka.heartbeatIntervalMs (${kafka.heartbeatIntervalMs}) is more than a third of kafka.sessionTimeoutMs (${kafka.sessionTimeoutMs}): one late heartbeat can cost the daemon its partitions`,
    );
  }
  return warnings;
}

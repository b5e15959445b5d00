import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { ExportResult } from "../export/exporter.ts";
import type { Lane } from "./scheduler.ts";

const laneLabels = ["repository", "branch", "destination"] as const;

/** The daemon's Prometheus metrics, on a registry of its own (no global state). */
export class Metrics {
  readonly registry = new Registry();
  readonly #lag = new Gauge({
    name: "lakefs_mirror_lane_lag_seconds",
    help: "Seconds since the oldest commit not yet exported was created (0 when caught up)",
    labelNames: laneLabels,
    registers: [this.registry],
  });
  readonly #behind = new Gauge({
    name: "lakefs_mirror_lane_commits_behind",
    help: "Commits between the last exported commit and the branch HEAD",
    labelNames: laneLabels,
    registers: [this.registry],
  });
  readonly #failing = new Gauge({
    name: "lakefs_mirror_lane_failing_paths",
    help: "Paths the lane's last export left failed, retried with back-off (0 when none)",
    labelNames: laneLabels,
    registers: [this.registry],
  });
  readonly #errors = new Gauge({
    name: "lakefs_mirror_lane_errors",
    help: "Runs in a row that could not complete an export (lakeFS or S3 away, lease lost); 0 after one that did",
    labelNames: laneLabels,
    registers: [this.registry],
  });
  readonly #lastExport = new Gauge({
    name: "lakefs_mirror_lane_last_export_timestamp_seconds",
    help: "When the lane's last export ended with a status file (SUCCESS or FAILURE), Unix seconds",
    labelNames: laneLabels,
    registers: [this.registry],
  });
  readonly #ready = new Gauge({
    name: "lakefs_mirror_ready",
    help: "1 while the daemon runs and takes webhooks, 0 while it starts or stops",
    registers: [this.registry],
  });
  readonly #exports = new Counter({
    name: "lakefs_mirror_exports_total",
    help: "Exports run, by result (success, failure, error)",
    labelNames: ["result"],
    registers: [this.registry],
  });
  readonly #objects = new Counter({
    name: "lakefs_mirror_objects_total",
    help: "Objects written or deleted at destinations, by operation (copied, deleted, failed)",
    labelNames: ["op"],
    registers: [this.registry],
  });
  readonly #bytes = new Counter({
    name: "lakefs_mirror_bytes_total",
    help: "Bytes of objects copied, by method (server-side, stream)",
    labelNames: ["method"],
    registers: [this.registry],
  });
  readonly #duration = new Histogram({
    name: "lakefs_mirror_export_duration_seconds",
    help: "Wall time of one export",
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800],
    registers: [this.registry],
  });
  readonly #intake = new Counter({
    name: "lakefs_mirror_intake_events_total",
    help: "Events received, by source (webhook, kafka, reconciler) and result (accepted, ignored, rejected, failed)",
    labelNames: ["source", "result"],
    registers: [this.registry],
  });

  readonly #kafkaUp = new Gauge({
    name: "lakefs_mirror_kafka_up",
    help: "1 while the Kafka intake consumes with partitions assigned, else 0 (connecting, off)",
    registers: [this.registry],
  });
  readonly #kafkaState = new Gauge({
    name: "lakefs_mirror_kafka_state",
    help: "1 for the Kafka intake's current state (off, connecting, running, closed)",
    labelNames: ["state"],
    registers: [this.registry],
  });
  readonly #kafkaPartitions = new Gauge({
    name: "lakefs_mirror_kafka_partitions",
    help: "Partitions of the topic this daemon holds in its consumer group",
    registers: [this.registry],
  });
  readonly #leases = new Counter({
    name: "lakefs_mirror_lease_events_total",
    help: "Lease requests and outcomes, by event (taken, renewed, held_elsewhere, lost, released)",
    labelNames: ["event"],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "lakefs_mirror_" });
  }

  lane(lane: Lane): void {
    const labels = {
      repository: lane.repository,
      branch: lane.branch,
      destination: lane.destination,
    };
    this.#lag.set(labels, lane.lagSeconds);
    this.#behind.set(labels, lane.commitsBehind);
    this.#failing.set(labels, lane.failingPaths);
    this.#errors.set(labels, lane.failures);
    if (lane.lastExportAt) this.#lastExport.set(labels, lane.lastExportAt.getTime() / 1000);
  }

  ready(ready: boolean): void {
    this.#ready.set(ready ? 1 : 0);
  }

  removeLane(lane: Lane): void {
    const labels = {
      repository: lane.repository,
      branch: lane.branch,
      destination: lane.destination,
    };
    this.#lag.remove(labels);
    this.#behind.remove(labels);
    this.#failing.remove(labels);
    this.#errors.remove(labels);
    this.#lastExport.remove(labels);
  }

  export(_lane: Lane, result: ExportResult): void {
    this.#exports.inc({ result: result.status === "SUCCESS" ? "success" : "failure" });
    this.#objects.inc({ op: "copied" }, result.copied);
    this.#objects.inc({ op: "deleted" }, result.deleted);
    this.#objects.inc({ op: "failed" }, result.failed);
    this.#bytes.inc({ method: "server-side" }, result.bytes - result.bytesStreamed);
    this.#bytes.inc({ method: "stream" }, result.bytesStreamed);
    this.#duration.observe(result.durationMs / 1000);
  }

  kafkaState(state: "off" | "connecting" | "running" | "closed"): void {
    for (const s of ["off", "connecting", "running", "closed"])
      this.#kafkaState.set({ state: s }, 0);
    this.#kafkaState.set({ state }, 1);
    this.#kafkaUp.set(state === "running" ? 1 : 0);
  }

  kafkaPartitions(count: number): void {
    this.#kafkaPartitions.set(count);
  }

  lease(event: "taken" | "renewed" | "held_elsewhere" | "lost" | "released"): void {
    this.#leases.inc({ event });
  }

  exportError(): void {
    this.#exports.inc({ result: "error" });
  }

  intake(
    source: "webhook" | "kafka" | "reconciler",
    result: "accepted" | "ignored" | "rejected" | "failed",
  ): void {
    this.#intake.inc({ source, result });
  }
}

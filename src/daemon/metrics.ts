import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { ExportResult } from "../export/exporter.ts";
import type { PartitionBacklog } from "../kafka/offsets.ts";
import type { Lane } from "./lane.ts";
import type { LaneProgress } from "./scheduler.ts";

const laneLabels = ["repository", "branch", "destination"] as const;
type LaneGauge = Gauge<(typeof laneLabels)[number]>;

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
  /** Where the progress gauges read the lanes from when scraped. */
  #progress: (() => Iterable<LaneProgress>) | undefined;
  // Set when scraped, not when a run ends: an export that stalls never ends to report it.
  readonly #stalled: LaneGauge = new Gauge({
    name: "lakefs_mirror_lane_stalled",
    help: "1 while the lane's export has made no progress (started, or ended a task) for scheduler.stallSeconds, else 0",
    labelNames: laneLabels,
    registers: [this.registry],
    collect: () => this.#fill(this.#stalled, (p) => (p.stalled ? 1 : 0)),
  });
  readonly #sinceProgress: LaneGauge = new Gauge({
    name: "lakefs_mirror_lane_no_progress_seconds",
    help: "Seconds since the lane's running export last made progress; 0 while it is not exporting",
    labelNames: laneLabels,
    registers: [this.registry],
    collect: () => this.#fill(this.#sinceProgress, (p) => p.secondsWithoutProgress),
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
  readonly #repositoryUp = new Gauge({
    name: "lakefs_mirror_repository_up",
    help: "1 when the reconciler's last pass could list the repository's branches, 0 when lakeFS refused or failed",
    labelNames: ["repository"],
    registers: [this.registry],
  });
  // Kafka backlog and dead letters: what the consumer holds back, read at each scrape.
  #backlog: () => readonly PartitionBacklog[] = () => [];
  readonly #kafkaPaused = new Gauge({
    name: "lakefs_mirror_kafka_paused_partitions",
    help: "Partitions this daemon holds that are paused: too many of their events wait for exports",
    registers: [this.registry],
    collect: () => {
      this.#kafkaPaused.set(this.#backlog().filter((b) => b.paused).length);
    },
  });
  readonly #kafkaUncommitted = new Gauge({
    name: "lakefs_mirror_kafka_uncommitted_messages",
    help: "Messages read from a partition and not committed yet (waiting for their lane's export, or behind one that waits)",
    labelNames: ["partition"],
    registers: [this.registry],
    collect: () => {
      this.#kafkaUncommitted.reset();
      for (const b of this.#backlog())
        this.#kafkaUncommitted.set({ partition: String(b.partition) }, b.uncommitted);
    },
  });
  readonly #deadLetterUnavailable = new Gauge({
    name: "lakefs_mirror_kafka_dead_letter_unavailable",
    help: "1 while kafka.deadLetterTopic cannot be written (it could not be created, or its last write failed), else 0",
    registers: [this.registry],
  });
  readonly #deadLetterFailures = new Counter({
    name: "lakefs_mirror_kafka_dead_letter_failures_total",
    help: "Messages that could not be recorded nor written to the dead-letter topic: logged only",
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

  /** The lanes whose progress the stall gauges show, read at every scrape. */
  watchProgress(source: () => Iterable<LaneProgress>): void {
    this.#progress = source;
  }

  #fill(gauge: LaneGauge, value: (p: LaneProgress) => number): void {
    // Lanes gone since the last scrape (ended, moved to another daemon) leave the gauge.
    gauge.reset();
    for (const p of this.#progress?.() ?? []) {
      const { repository, branch, destination } = p.lane;
      gauge.set({ repository, branch, destination }, value(p));
    }
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

  /** Where the Kafka intake's per-partition backlog is read from at each scrape. */
  kafkaBacklog(source: () => readonly PartitionBacklog[]): void {
    this.#backlog = source;
  }

  kafkaDeadLetterUnavailable(unavailable: boolean): void {
    this.#deadLetterUnavailable.set(unavailable ? 1 : 0);
  }

  kafkaDeadLetterFailed(): void {
    this.#deadLetterFailures.inc();
  }

  lease(event: "taken" | "renewed" | "held_elsewhere" | "lost" | "released"): void {
    this.#leases.inc({ event });
  }

  repositoryUp(repository: string, up: boolean): void {
    this.#repositoryUp.set({ repository }, up ? 1 : 0);
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

import { hostname } from "node:os";
import type { Logger } from "pino";
import { createClients } from "../clients.ts";
import type { Clients } from "../clients.ts";
import type { Config } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { KafkaIntake } from "../kafka/consumer.ts";
import type { KafkaState } from "../kafka/consumer.ts";
import { KafkaForwarder } from "../kafka/forwarder.ts";
import { LedgerStore } from "../ledger/ledger-store.ts";
import { parseS3Uri } from "../s3/uri.ts";
import { CheckpointStore } from "./checkpoint.ts";
import { HttpServer } from "./http-server.ts";
import { Intake, MirrorRouter } from "./intake.ts";
import { LaneSync } from "./lane-sync.ts";
import { Metrics } from "./metrics.ts";
import { Ownership } from "./ownership.ts";
import type { OwnershipView } from "./ownership.ts";
import { Reconciler } from "./reconciler.ts";
import { Scheduler, parseLaneId } from "./scheduler.ts";

export interface LaneStatus {
  repository: string;
  branch: string;
  destination: string;
  /** The commit the destination holds (but for `failingPaths`). */
  lastExportedCommit: string | null;
  /** The newest commit a SUCCESS status file was written for. */
  lastSuccessCommit: string | null;
  headCommit: string | null;
  commitsBehind: number;
  lagSeconds: number;
  state: string;
  lastError: string | null;
  failingPaths: number;
}

/** The parts the daemon is built from that a caller may supply instead. */
export interface DaemonParts {
  clients: Clients;
  checkpoint: CheckpointStore;
  metrics: Metrics;
}

export interface DaemonStatus {
  /** This daemon's name in destination leases. */
  owner: string;
  kafka: KafkaState;
  ownership: OwnershipView;
  lanes: LaneStatus[];
}

/**
 * The composition root of `lakefs-mirror run`: builds every component from the configuration,
 * starts them in order, and closes them in reverse (intake first, the store last).
 */
export class Daemon {
  readonly config: Config;
  /** This daemon's name in leases: `lease.owner`, else the host and its checkpoint store's identity. */
  owner = "";
  readonly metrics: Metrics;
  readonly checkpoint: CheckpointStore;
  readonly scheduler: Scheduler;
  readonly http: HttpServer;
  readonly reconciler: Reconciler;
  readonly #clients: Clients;
  readonly #logger: Logger;
  readonly #intake: Intake;
  readonly #router: MirrorRouter;
  readonly #ownership: Ownership;
  readonly #lanes: LaneSync;
  readonly #kafka: KafkaIntake | undefined;
  readonly #forwarder: KafkaForwarder | undefined;
  #state: "new" | "starting" | "running" | "closing" | "closed" = "new";
  #closing: Promise<void> | undefined;

  /**
   * Builds every part from the configuration; `parts` replaces any of them (a test's clients
   * pointed at a proxy, a shared metrics registry, a store elsewhere).
   */
  constructor(config: Config, logger: Logger, parts: Partial<DaemonParts> = {}) {
    if (!config.webhook.token) {
      throw new ConfigError(
        'webhook.token must be set (LAKEFS_MIRROR_WEBHOOK_TOKEN), or "disabled" to accept unauthenticated webhooks',
      );
    }
    const kafkaOn = config.kafka.brokers.length > 0 && config.kafka.topic !== "";
    if (config.webhook.forwardToKafka && !kafkaOn) {
      throw new ConfigError("webhook.forwardToKafka needs kafka.brokers and kafka.topic");
    }
    this.config = config;
    this.#logger = logger;
    this.#clients = parts.clients ?? createClients(config, logger);
    this.checkpoint = parts.checkpoint ?? new CheckpointStore(config.checkpoint.path);
    this.metrics = parts.metrics ?? new Metrics();
    // In a consumer group, a daemon whose Kafka has been away for a session timeout works on
    // every lane again (the leases keep one writer per destination).
    this.#ownership = new Ownership(kafkaOn ? "group" : "all", config.kafka.sessionTimeoutMs);
    const owns = (repository: string, branch: string) => this.#ownership.owns(repository, branch);
    const router = new MirrorRouter(config.mirrors, logger.child({ component: "router" }));
    this.#router = router;
    const destinations = new Map<string, ReturnType<Clients["destination"]>>();
    this.#lanes = new LaneSync({
      lakefs: this.#clients.lakefs,
      destination: (uri) => {
        let d = destinations.get(uri);
        if (!d) destinations.set(uri, (d = this.#clients.destination(parseS3Uri(uri))));
        return d;
      },
      checkpoint: this.checkpoint,
      ledgers: new LedgerStore({
        checkpoint: this.checkpoint,
        lakefs: this.#clients.lakefs,
        logger: logger.child({ component: "ledger" }),
        retry: config.retry,
      }),
      metrics: this.metrics,
      config,
      logger: logger.child({ component: "lane" }),
      owner: () => this.owner,
    });
    this.scheduler = new Scheduler({
      ...config.scheduler,
      logger: logger.child({ component: "scheduler" }),
      run: this.#lanes.run,
      onRun: (lane) => {
        if (lane.state !== "ended") this.metrics.lane(lane);
      },
    });
    const kafkaLogger = logger.child({ component: "kafka" });
    if (kafkaOn && config.webhook.forwardToKafka)
      this.#forwarder = new KafkaForwarder(config.kafka, kafkaLogger);
    this.#intake = new Intake({
      router,
      scheduler: this.scheduler,
      checkpoint: this.checkpoint,
      metrics: this.metrics,
      logger: logger.child({ component: "intake" }),
      owns,
      ...(this.#forwarder ? { forwarder: this.#forwarder } : {}),
    });
    if (kafkaOn) {
      this.#kafka = new KafkaIntake({
        config: config.kafka,
        intake: this.#intake,
        scheduler: this.scheduler,
        metrics: this.metrics,
        logger: kafkaLogger,
        onAssignment: (held, count) => this.#assigned(held, count),
        onDetached: () => this.#ownership.detach(),
      });
    }
    this.metrics.kafkaState(kafkaOn ? "connecting" : "off");
    this.http = new HttpServer({
      ...config.server,
      token: config.webhook.token === "disabled" ? undefined : config.webhook.token,
      metrics: this.metrics,
      logger: logger.child({ component: "http" }),
      onEvent: (event) => this.#intake.webhook(event),
      status: () => this.status(),
      ready: () => this.#state === "running",
      parts: () => ({ kafka: this.#kafka?.state ?? "off" }),
    });
    this.reconciler = new Reconciler({
      lakefs: this.#clients.lakefs,
      router,
      scheduler: this.scheduler,
      metrics: this.metrics,
      logger: logger.child({ component: "reconciler" }),
      intervalSeconds: config.reconcile.intervalSeconds,
      owns,
    });
  }

  async start(): Promise<void> {
    this.#state = "starting";
    await this.checkpoint.open();
    // A restart on the same store carries on with its leases instead of waiting them out.
    this.owner = this.config.lease.owner || `${hostname()}-${await this.checkpoint.identity()}`;
    // Events acknowledged before a stop or crash come first.
    for (const [id, pending] of await this.checkpoint.allPending()) {
      const { repository = "", branch = "", destination = "" } = parseLaneId(id) ?? {};
      const key = this.#router.match(repository, branch).find((k) => k.destination === destination);
      if (!key) {
        this.#logger.warn(
          { repository, branch, destination, commit: pending.commitId },
          "a pending event's mirror is no longer configured; dropping it",
        );
        await this.checkpoint.forget(id);
        continue;
      }
      this.#logger.info(
        { repository, branch, commit: pending.commitId },
        "resuming a pending event",
      );
      this.scheduler.notify(this.scheduler.lane(key));
    }
    await this.http.start();
    // Kafka connects in the background: a broker that is away never holds the daemon back.
    this.#kafka?.start();
    this.reconciler.start();
    this.#state = "running";
    this.metrics.ready(true);
    this.#logger.info(
      {
        address: this.http.address,
        mirrors: this.config.mirrors.length,
        kafka: this.#kafka ? this.config.kafka.topic : null,
        owner: this.owner,
      },
      "lakefs-mirror daemon started",
    );
  }

  /**
   * Intake stops first; running exports get the grace period (drain), then are aborted; the
   * store closes last. Idempotent; concurrent callers wait for the same close.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#state = "closing";
    this.metrics.ready(false);
    this.http.stopIntake();
    const steps: [string, () => Promise<void>][] = [
      ["kafka", async () => this.#kafka?.close()],
      ["forwarder", async () => this.#forwarder?.close()],
      ["reconciler", () => this.reconciler.close()],
      ["scheduler", () => this.scheduler.close(this.config.shutdown.graceSeconds * 1000)],
      // Another daemon may take the lanes over at once instead of waiting for the leases.
      ["leases", () => this.#lanes.releaseAll()],
      ["http", () => this.http.close()],
      ["checkpoint", () => this.checkpoint.close()],
      ["clients", () => this.#clients.close()],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (err) {
        this.#logger.warn({ component: name, err }, "error while closing");
      }
    }
    this.#state = "closed";
    this.#logger.info("lakefs-mirror daemon stopped");
  }

  status(): DaemonStatus {
    return {
      owner: this.owner,
      kafka: this.#kafka?.state ?? "off",
      ownership: this.#ownership.view(),
      lanes: [...this.scheduler.lanes.values()].map((l) => ({
        repository: l.repository,
        branch: l.branch,
        destination: l.destination,
        lastExportedCommit: l.lastExportedCommit ?? null,
        lastSuccessCommit: l.lastSuccessCommit ?? null,
        headCommit: l.headCommit ?? null,
        commitsBehind: l.commitsBehind,
        lagSeconds: Math.round(l.lagSeconds * 1000) / 1000,
        state: l.state,
        lastError: l.lastError ?? null,
        failingPaths: l.failingPaths,
      })),
    };
  }

  /** A rebalance: lanes this daemon no longer owns stop before their status file. */
  #assigned(held: ReadonlySet<number>, partitionCount: number): void {
    this.#ownership.assign(held, partitionCount);
    for (const lane of [...this.scheduler.lanes.values()]) {
      if (this.#ownership.owns(lane.repository, lane.branch)) continue;
      this.#logger.info(
        { repository: lane.repository, branch: lane.branch },
        "lane moved to another daemon of the group",
      );
      this.metrics.removeLane(lane);
      void this.scheduler
        .disown(lane.id, new Error("the lane moved to another daemon of the group"))
        .then(() => this.#lanes.release(lane.id));
    }
    this.reconciler.trigger();
  }
}

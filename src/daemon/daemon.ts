import type { Logger } from "pino";
import { createClients } from "../cli/context.ts";
import type { Clients } from "../cli/context.ts";
import type { Config } from "../config.ts";
import { ConfigError, errorMessage } from "../errors.ts";
import { LedgerStore } from "../ledger/ledger-store.ts";
import { parseS3Uri } from "../s3/uri.ts";
import { CheckpointStore } from "./checkpoint.ts";
import { HttpServer } from "./http-server.ts";
import { Intake, MirrorRouter } from "./intake.ts";
import { KafkaForwarder, KafkaIntake } from "./kafka-intake.ts";
import { createLaneRunner } from "./lane-sync.ts";
import { Metrics } from "./metrics.ts";
import { Reconciler } from "./reconciler.ts";
import { Scheduler } from "./scheduler.ts";

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

/**
 * The composition root of `lakefs-mirror run`: builds every component from the configuration,
 * starts them in order, and closes them in reverse (intake first, the store last).
 */
export class Daemon {
  readonly config: Config;
  readonly metrics = new Metrics();
  readonly checkpoint: CheckpointStore;
  readonly scheduler: Scheduler;
  readonly http: HttpServer;
  readonly reconciler: Reconciler;
  readonly #clients: Clients;
  readonly #logger: Logger;
  readonly #intake: Intake;
  readonly #router: MirrorRouter;
  readonly #kafka: KafkaIntake | undefined;
  readonly #forwarder: KafkaForwarder | undefined;
  #state: "new" | "starting" | "running" | "closing" | "closed" = "new";

  constructor(config: Config, logger: Logger) {
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
    this.#clients = createClients(config, logger);
    this.checkpoint = new CheckpointStore(config.checkpoint.path);
    const router = new MirrorRouter(config.mirrors, logger.child({ component: "router" }));
    this.#router = router;
    const destinations = new Map<string, ReturnType<Clients["destination"]>>();
    this.scheduler = new Scheduler({
      ...config.scheduler,
      logger: logger.child({ component: "scheduler" }),
      run: createLaneRunner({
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
      }),
    });
    this.#intake = new Intake({
      router,
      scheduler: this.scheduler,
      checkpoint: this.checkpoint,
      metrics: this.metrics,
      logger: logger.child({ component: "intake" }),
    });
    if (config.webhook.forwardToKafka)
      this.#forwarder = new KafkaForwarder(config.kafka, logger.child({ component: "kafka" }));
    else if (kafkaOn) {
      this.#kafka = new KafkaIntake({
        config: config.kafka,
        intake: this.#intake,
        scheduler: this.scheduler,
        metrics: this.metrics,
        logger: logger.child({ component: "kafka" }),
      });
    }
    this.http = new HttpServer({
      ...config.server,
      token: config.webhook.token === "disabled" ? undefined : config.webhook.token,
      metrics: this.metrics,
      logger: logger.child({ component: "http" }),
      onEvent: async (event) => {
        if (this.#forwarder) {
          await this.#forwarder.publish(event);
          this.metrics.intake("webhook", "accepted");
          return { result: "accepted", reason: "forwarded to Kafka", lanes: 0 };
        }
        const outcome = await this.#intake.handle(event, "webhook");
        return {
          result: outcome.result,
          ...(outcome.reason ? { reason: outcome.reason } : {}),
          lanes: outcome.lanes.length,
        };
      },
      status: () => ({ lanes: this.status() }),
      ready: () => this.#state === "running",
    });
    this.reconciler = new Reconciler({
      lakefs: this.#clients.lakefs,
      router,
      scheduler: this.scheduler,
      metrics: this.metrics,
      logger: logger.child({ component: "reconciler" }),
      intervalSeconds: config.reconcile.intervalSeconds,
    });
  }

  async start(): Promise<void> {
    this.#state = "starting";
    await this.checkpoint.open();
    // Events acknowledged before a stop or crash come first.
    for (const [id, pending] of await this.checkpoint.allPending()) {
      const [repository = "", branch = "", destination] = JSON.parse(id) as string[];
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
    await this.#forwarder?.start();
    await this.#kafka?.start();
    this.reconciler.start();
    this.#state = "running";
    this.#logger.info(
      {
        address: this.http.address,
        mirrors: this.config.mirrors.length,
        kafka: this.#kafka ? this.config.kafka.topic : null,
      },
      "lakefs-mirror daemon started",
    );
  }

  /** Intake stops first; running exports get the grace period; the store closes last. */
  async close(): Promise<void> {
    if (this.#state === "closing" || this.#state === "closed") return;
    this.#state = "closing";
    this.http.stopIntake();
    const steps: [string, () => Promise<void>][] = [
      ["kafka", async () => this.#kafka?.close()],
      ["forwarder", async () => this.#forwarder?.close()],
      ["reconciler", () => this.reconciler.close()],
      ["scheduler", () => this.scheduler.close(this.config.shutdown.graceSeconds * 1000)],
      ["http", () => this.http.close()],
      ["checkpoint", () => this.checkpoint.close()],
      ["clients", () => this.#clients.close()],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (err) {
        this.#logger.warn({ component: name, err: errorMessage(err) }, "error while closing");
      }
    }
    this.#state = "closed";
    this.#logger.info("lakefs-mirror daemon stopped");
  }

  status(): LaneStatus[] {
    return [...this.scheduler.lanes.values()].map((l) => ({
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
    }));
  }
}

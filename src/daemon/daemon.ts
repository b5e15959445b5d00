import { hostname } from "node:os";
import type { Logger } from "pino";
import { createClients } from "../clients.ts";
import type { Clients } from "../clients.ts";
import type { Config } from "../config.ts";
import { checkDaemonConfig } from "../config-daemon.ts";
import { KafkaIntake } from "../kafka/consumer.ts";
import type { KafkaState } from "../kafka/consumer.ts";
import { KafkaForwarder } from "../kafka/forwarder.ts";
import { Coordinator } from "../work/coordinator.ts";
import { WorkQueue } from "../work/queue.ts";
import { WorkWorker } from "../work/worker.ts";
import type { PartitionBacklog } from "../kafka/offsets.ts";
import { LedgerStore } from "../ledger/ledger-store.ts";
import { CheckpointStore } from "./checkpoint.ts";
import { HttpServer } from "./http-server.ts";
import { Intake, MirrorRouter } from "./intake.ts";
import { LaneSync } from "./lane-sync.ts";
import { Metrics } from "./metrics.ts";
import { Ownership } from "./ownership.ts";
import type { OwnershipView } from "./ownership.ts";
import { Reconciler } from "./reconciler.ts";
import { parseLaneId } from "./lane.ts";
import type { Lane } from "./lane.ts";
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
  /** When the lane's current or last export last made progress (started, or ended a task). */
  lastProgressAt: string | null;
  /** Exporting, with no progress for `scheduler.stallSeconds`. */
  stalled: boolean;
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
  /** Repositories whose branches the reconciler's last pass could not list, with why. */
  failingRepositories: Record<string, string>;
  lanes: LaneStatus[];
  /** Each Kafka partition this daemon holds (or read since the last rebalance). */
  kafkaPartitions: PartitionBacklog[];
}

/** The most a shutdown waits, after the grace, for lease hand-overs and connections to close. */
const RELEASE_MS = 5_000;

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
  #workQueue: WorkQueue | undefined;
  #state: "new" | "starting" | "running" | "closing" | "closed" = "new";
  #closing: Promise<void> | undefined;
  #fail: (err: Error) => void = () => undefined;
  /**
   * Resolves with the error when the daemon cannot go on as configured (a Kafka broker that
   * refuses its settings): the caller stops it and exits as for bad configuration.
   */
  readonly failed = new Promise<Error>((resolve) => (this.#fail = resolve));

  /**
   * Builds every part from the configuration; `parts` replaces any of them (a test's clients
   * pointed at a proxy, a shared metrics registry, a store elsewhere).
   */
  constructor(config: Config, logger: Logger, parts: Partial<DaemonParts> = {}) {
    for (const warning of checkDaemonConfig(config)) logger.warn(warning);
    const kafkaOn = config.kafka.brokers.length > 0;
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
    const work =
      kafkaOn && config.kafka.workTopic !== "" && config.lease.enabled
        ? this.#work(config, logger)
        : undefined;
    this.#lanes = new LaneSync({
      work: work?.coordinator,
      lakefs: this.#clients.lakefs,
      // Each lane keeps its own while it lives (LaneSync's context), and drops it when it ends.
      destination: (uri) => this.#clients.destination(uri),
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
      progressed: (lane) => this.scheduler.progressed(lane),
    });
    this.scheduler = new Scheduler({
      ...config.scheduler,
      logger: logger.child({ component: "scheduler" }),
      run: this.#lanes.run,
      onRun: (lane) => {
        if (lane.state !== "ended" && !this.#handOver(lane)) this.metrics.lane(lane);
      },
      onEnded: (lane) => router.release(lane.destination, `${lane.repository}/${lane.branch}`),
    });
    this.metrics.watchProgress(() => this.scheduler.progress());
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
        onFatal: (err) => this.#fail(err),
      });
    }
    this.metrics.kafkaState(kafkaOn ? "connecting" : "off");
    this.http = new HttpServer({
      ...config.server,
      token: config.webhook.token === "disabled" ? undefined : config.webhook.token,
      statusToken: config.server.statusToken || undefined,
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
      observe: (lane, head, signal) => this.#lanes.observe(lane, head, signal),
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
    this.#workQueue?.start();
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
    const graceMs = this.config.shutdown.graceSeconds * 1000;
    const deadline = Date.now() + graceMs;
    const step = async (name: string, work: () => Promise<unknown>, boundMs?: number) => {
      let timer: NodeJS.Timeout | undefined;
      const bound =
        boundMs === undefined
          ? undefined
          : new Promise<"late">((r) => (timer = setTimeout(() => r("late"), boundMs)));
      try {
        const outcome = await Promise.race([work(), ...(bound ? [bound] : [])]);
        if (outcome === "late")
          this.#logger.warn({ component: name }, "closing took too long; going on without it");
      } catch (err) {
        this.#logger.warn({ component: name, err }, "error while closing");
      } finally {
        clearTimeout(timer);
      }
    };
    const left = () => Math.max(0, deadline - Date.now());
    // The grace counts from the signal, and no export starts after it: the scheduler closes
    // first, while the intakes stop beside it. A Kafka client still connecting cannot be
    // interrupted, so it gets what is left of the grace and no more.
    let drained = false;
    const draining = step(
      "scheduler",
      () => this.scheduler.close(graceMs).then(() => (drained = true)),
      graceMs + RELEASE_MS,
    );
    await Promise.all([
      step("kafka", async () => this.#kafka?.close(), left()),
      step("work topic", async () => this.#workQueue?.close(), left()),
      step("forwarder", async () => this.#forwarder?.close(), left()),
      step("reconciler", () => this.reconciler.close(), left()),
    ]);
    await draining;
    // Another daemon may take the lanes over at once instead of waiting for the leases; a
    // store that does not answer gets a few seconds, then the leases expire on their own. An
    // export that has not settled even after its abort may still write: its lease is kept to
    // expire, never handed over early.
    if (drained) await step("leases", () => this.#lanes.releaseAll(), RELEASE_MS);
    await step("http", () => this.http.close(), RELEASE_MS);
    await step("checkpoint", () => this.checkpoint.close());
    await step("clients", () => this.#clients.close(), RELEASE_MS);
    this.#state = "closed";
    this.#logger.info("lakefs-mirror daemon stopped");
  }

  status(): DaemonStatus {
    const now = Date.now();
    return {
      owner: this.owner,
      kafka: this.#kafka?.state ?? "off",
      ownership: this.#ownership.view(),
      failingRepositories: Object.fromEntries(this.reconciler.failing),
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
        lastProgressAt: l.lastProgressAt?.toISOString() ?? null,
        stalled: this.scheduler.progressOf(l, now).stalled,
      })),
      kafkaPartitions: this.#kafka?.backlog() ?? [],
    };
  }

  /**
   * A lane run only because a message for it came on a partition this daemon holds, while its
   * key maps to another daemon's (the producer counted fewer partitions): once its events are
   * covered, it is the owner's to reconcile and report, so it leaves /status and the metrics
   * here, and its lease is handed over at once. Returns whether it was.
   */
  #handOver(lane: Lane): boolean {
    if (lane.state !== "idle" || lane.covered < lane.requested) return false;
    if (!this.#ownership.ownedElsewhere(lane.repository, lane.branch)) return false;
    this.metrics.removeLane(lane);
    void this.scheduler
      .disown(lane.id, new Error("the lane is another daemon's of the group"))
      .then(() => this.#lanes.release(lane.id));
    return true;
  }

  /** A rebalance: lanes this daemon no longer owns stop before their status file. */
  /** The group's work topic: this daemon works items of anyone's split exports, and splits its own. */
  #work(config: Config, logger: Logger): { coordinator: Coordinator } {
    const log = logger.child({ component: "work" });
    const worker = new WorkWorker({
      lakefs: this.#clients.lakefs,
      destination: (uri) => this.#clients.destination(uri),
      config,
      logger: log,
      name: () => this.owner,
    });
    const queue = new WorkQueue(config, log, async (item, signal) => {
      try {
        await worker.run(item, (child) => queue.issue([child]), signal);
      } catch (err) {
        // A worker that cannot even read the lease leaves the item to be issued again.
        if (!signal.aborted) log.warn({ err, item: item.id }, "work item not done");
      }
    });
    this.#workQueue = queue;
    // The group's write caps are shared by the daemons of the work group.
    this.#clients.shareCapsWith?.(() => queue.members);
    const coordinator = new Coordinator({
      lakefs: this.#clients.lakefs,
      config,
      logger: log,
      queue,
      worker,
      owner: () => this.owner,
    });
    return { coordinator };
  }

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

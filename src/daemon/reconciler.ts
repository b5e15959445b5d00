import type { Logger } from "pino";
import { LakefsNotFoundError, MirrorError, errorMessage } from "../errors.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import type { MirrorRouter } from "./intake.ts";
import type { Metrics } from "./metrics.ts";
import type { Lane } from "./lane.ts";
import { caughtUp, sawHead } from "./lag.ts";
import type { Scheduler } from "./scheduler.ts";

/**
 * Events are hints: lakeFS's post-* hooks are fire-and-forget and a hard reset fires none. So
 * at start-up and on an interval, every mirrored branch's HEAD (and every branch newly matching
 * a glob) is compared with its lane's checkpoint, and lanes that are behind are scheduled.
 */
export interface ReconcilerDeps {
  lakefs: LakefsClient;
  router: MirrorRouter;
  scheduler: Scheduler;
  metrics: Metrics;
  logger: Logger;
  intervalSeconds: number;
  /** Whether this daemon works on the lanes of (repository, branch) (see Ownership). */
  owns: (repository: string, branch: string) => boolean;
  /**
   * Brings a lane's lag up to date against the HEAD just listed: a lane waiting for a slot, or
   * in a long export, shows how far behind it is now, not when it last ran.
   */
  observe?: (lane: Lane, head: string, signal: AbortSignal) => Promise<void>;
}

export class Reconciler {
  readonly #deps: ReconcilerDeps;
  readonly #failing = new Map<string, string>();
  /** Aborted by close(): a pass in flight stops at its next request instead of finishing. */
  readonly #abort = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #closed = false;

  constructor(deps: ReconcilerDeps) {
    this.#deps = deps;
  }

  start(): void {
    this.#tick();
  }

  /** A pass now (when this daemon was given lanes), unless one is running. */
  trigger(): void {
    if (this.#closed || this.#running) return;
    clearTimeout(this.#timer);
    this.#tick();
  }

  #tick(): void {
    if (this.#closed) return;
    this.#running = this.reconcile()
      .then(() => undefined)
      .catch((err: unknown) => this.#deps.logger.warn({ err }, "reconcile pass failed"))
      .finally(() => {
        this.#running = undefined;
        if (!this.#closed && this.#deps.intervalSeconds > 0) {
          this.#timer = setTimeout(() => this.#tick(), this.#deps.intervalSeconds * 1000);
          this.#timer.unref();
        }
      });
  }

  /** Repositories whose branches the last pass could not list, with why. */
  get failing(): ReadonlyMap<string, string> {
    return this.#failing;
  }

  /**
   * One pass; resolves when every lane that is behind has been scheduled. Each repository is
   * asked on its own: one that lakeFS refuses (credentials that lost access to it, say) or
   * cannot answer for is reported and skipped, and every other repository is still caught up.
   */
  async reconcile(): Promise<number> {
    const { router, scheduler } = this.#deps;
    let scheduled = 0;
    /** Every branch lakeFS listed, owned or not: a lane whose branch is not here is gone. */
    const listed = new Set<string>();
    /** Repositories whose listing completed: only their lanes can be found gone. */
    const answered = new Set<string>();
    for (const repository of router.repositories()) {
      if (this.#abort.signal.aborted) return scheduled;
      try {
        scheduled += await this.#repository(repository, listed);
        answered.add(repository);
        this.#up(repository, undefined);
      } catch (err) {
        if (this.#abort.signal.aborted) return scheduled;
        if (err instanceof LakefsNotFoundError) {
          answered.add(repository);
          this.#up(repository, undefined);
          this.#deps.logger.warn({ repository }, "configured repository does not exist in lakeFS");
          continue;
        }
        // A programmer's mistake is not lakeFS's answer: it ends the pass as before.
        if (!(err instanceof MirrorError)) throw err;
        this.#up(repository, errorMessage(err));
        this.#deps.logger.warn(
          { repository, err },
          "cannot list the repository's branches; its lanes wait, the others go on",
        );
      }
    }
    // Lanes whose branch is gone: one more run ends them.
    for (const lane of scheduler.lanes.values()) {
      if (!answered.has(lane.repository)) continue;
      const gone = !listed.has(JSON.stringify([lane.repository, lane.branch]));
      if (gone && lane.state === "idle" && this.#deps.owns(lane.repository, lane.branch)) {
        scheduler.notify(lane);
        scheduled++;
      }
    }
    return scheduled;
  }

  async #repository(repository: string, listed: Set<string>): Promise<number> {
    const { lakefs, router, scheduler, metrics } = this.#deps;
    let scheduled = 0;
    for await (const page of lakefs.listBranches(repository, this.#abort.signal)) {
      for (const ref of page) {
        listed.add(JSON.stringify([repository, ref.id]));
        if (!this.#deps.owns(repository, ref.id)) continue;
        for (const key of router.match(repository, ref.id)) {
          const lane = scheduler.lane(key);
          sawHead(lane, ref.commit_id);
          // A lane not run yet in this process has no state loaded: running it loads it.
          // Failing paths wait for their own back-off timer, not for this poll.
          const behind =
            lane.lastExportedCommit !== ref.commit_id ||
            (lane.failingPaths === 0 && lane.lastSuccessCommit !== ref.commit_id);
          if (behind) {
            // A busy lane coalesces this into one more run after the current export.
            scheduler.notify(lane);
            metrics.intake("reconciler", "accepted");
            scheduled++;
            await this.#deps
              .observe?.(lane, ref.commit_id, this.#abort.signal)
              .catch((err: unknown) =>
                this.#deps.logger.debug({ err, repository, branch: ref.id }, "lag not measured"),
              );
          } else if (lane.failingPaths === 0) {
            caughtUp(lane, ref.commit_id);
            metrics.lane(lane);
          }
        }
      }
    }
    return scheduled;
  }

  #up(repository: string, error: string | undefined): void {
    if (error === undefined) this.#failing.delete(repository);
    else this.#failing.set(repository, error);
    this.#deps.metrics.repositoryUp(repository, error === undefined);
  }

  /** Idempotent: stops the timer and a pass that is running, and waits for it to settle. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#abort.abort(new Error("shutdown"));
    await this.#running;
  }
}

import type { Logger } from "pino";
import { LakefsNotFoundError } from "../errors.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import type { MirrorRouter } from "./intake.ts";
import type { Metrics } from "./metrics.ts";
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
}

export class Reconciler {
  readonly #deps: ReconcilerDeps;
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

  /** One pass; resolves when every lane that is behind has been scheduled. */
  async reconcile(): Promise<number> {
    const { lakefs, router, scheduler, metrics } = this.#deps;
    let scheduled = 0;
    /** Every branch lakeFS listed, owned or not: a lane whose branch is not here is gone. */
    const listed = new Set<string>();
    for (const repository of router.repositories()) {
      try {
        for await (const page of lakefs.listBranches(repository)) {
          for (const ref of page) {
            listed.add(JSON.stringify([repository, ref.id]));
            if (!this.#deps.owns(repository, ref.id)) continue;
            for (const key of router.match(repository, ref.id)) {
              const lane = scheduler.lane(key);
              lane.headCommit = ref.commit_id;
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
              } else if (lane.failingPaths === 0) {
                lane.commitsBehind = 0;
                lane.lagSeconds = 0;
                metrics.lane(lane);
              }
            }
          }
        }
      } catch (err) {
        if (!(err instanceof LakefsNotFoundError)) throw err;
        this.#deps.logger.warn({ repository }, "configured repository does not exist in lakeFS");
      }
    }
    // Lanes whose branch is gone: one more run ends them.
    for (const lane of scheduler.lanes.values()) {
      const gone = !listed.has(JSON.stringify([lane.repository, lane.branch]));
      if (gone && lane.state === "idle" && this.#deps.owns(lane.repository, lane.branch)) {
        scheduler.notify(lane);
        scheduled++;
      }
    }
    return scheduled;
  }

  /** Idempotent: stops the timer and waits for a pass that is running. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#running;
  }
}

import type { Logger } from "pino";
import { EventInvalidError } from "../errors.ts";
import type { MirrorSpec } from "../config.ts";
import type { HookEvent } from "../lakefs/types.ts";
import type { CheckpointStore } from "./checkpoint.ts";
import { resolveDestination } from "./lane-sync.ts";
import type { Metrics } from "./metrics.ts";
import type { Lane } from "./lane.ts";
import type { Scheduler } from "./scheduler.ts";

/** Events that move a branch HEAD, create a branch, or end one. */
export const handledEvents = [
  "post-commit",
  "post-merge",
  "post-revert",
  "post-cherry-pick",
  "post-create-branch",
  "post-delete-branch",
] as const;

/** Checks a lakeFS action payload (pkg/actions/event.go's EventInfo) and returns it typed. */
export function parseHookEvent(value: unknown): HookEvent {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new EventInvalidError("body must be a JSON object (a lakeFS action event)");
  }
  const v = value as Record<string, unknown>;
  const str = (k: string, required: boolean) => {
    const x = v[k];
    if (x === undefined && !required) return;
    if (typeof x !== "string" || (required && x === "")) {
      throw new EventInvalidError(`field "${k}" must be ${required ? "a non-empty" : "a"} string`);
    }
  };
  str("event_type", true);
  str("repository_id", true);
  for (const k of [
    "event_time",
    "action_name",
    "hook_id",
    "branch_id",
    "source_ref",
    "commit_id",
    "tag_id",
  ])
    str(k, false);
  if (
    v.commit_metadata !== undefined &&
    (typeof v.commit_metadata !== "object" || v.commit_metadata === null)
  ) {
    throw new EventInvalidError('field "commit_metadata" must be an object');
  }
  return v as unknown as HookEvent;
}

function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replaceAll("*", ".*")
    .replaceAll("?", ".");
  return new RegExp(`^${body}$`);
}

export interface LaneTarget {
  repository: string;
  branch: string;
  destination: string;
  /** The mirror says its destination holds nothing else (see MirrorSpec.dedicated). */
  dedicated: boolean;
}

/**
 * Which configured mirrors a (repository, branch) falls under. A destination belongs to the
 * first lane that resolves to it: another lane resolving to the same place, or to a prefix
 * inside or around it, is refused (logged once), since two lanes there would overwrite and, by
 * listing, delete each other's keys.
 */
export class MirrorRouter {
  readonly #mirrors: { spec: MirrorSpec; patterns: RegExp[] }[];
  readonly #claims = new Map<string, string>();
  readonly #refused = new Set<string>();
  readonly #logger: Logger | undefined;

  constructor(mirrors: readonly MirrorSpec[], logger?: Logger) {
    this.#mirrors = mirrors.map((spec) => ({ spec, patterns: spec.branches.map(globToRegExp) }));
    this.#logger = logger;
  }

  repositories(): string[] {
    return [...new Set(this.#mirrors.map((m) => m.spec.repository))];
  }

  match(repository: string, branch: string): LaneTarget[] {
    const out: LaneTarget[] = [];
    for (const m of this.#mirrors) {
      if (m.spec.repository !== repository || !m.patterns.some((p) => p.test(branch))) continue;
      const destination = resolveDestination(m.spec.destination, repository, branch);
      if (this.#claim(destination, `${repository}/${branch}`))
        out.push({ repository, branch, destination, dedicated: m.spec.dedicated ?? false });
    }
    return out;
  }

  /** A lane's destination is free again (its branch is gone). */
  release(destination: string, owner: string): void {
    if (this.#claims.get(destination) === owner) this.#claims.delete(destination);
    for (const key of this.#refused) if (key.startsWith(`${owner} `)) this.#refused.delete(key);
  }

  #claim(destination: string, owner: string): boolean {
    const held = this.#claims.get(destination);
    if (held !== undefined) return held === owner;
    for (const [other, by] of this.#claims) {
      if (destination.startsWith(other) || other.startsWith(destination)) {
        const key = `${owner} ${destination}`;
        if (!this.#refused.has(key)) {
          this.#refused.add(key);
          this.#logger?.error(
            { lane: owner, destination, conflictsWith: by, theirDestination: other },
            "refusing a lane whose destination overlaps another lane's",
          );
        }
        return false;
      }
    }
    this.#claims.set(destination, owner);
    return true;
  }
}

/** Unconfigured branches whose events were logged as ignored, remembered to log them once. */
const IGNORED_REMEMBERED = 10_000;

export interface IntakeDeps {
  /** Publishes webhook events to the group's topic instead of handling them here. */
  forwarder?: { publish(event: HookEvent): Promise<void> };
  /** Whether this daemon works on the lanes of (repository, branch) (see Ownership). */
  owns: (repository: string, branch: string) => boolean;
  router: MirrorRouter;
  scheduler: Scheduler;
  checkpoint: CheckpointStore;
  metrics: Metrics;
  logger: Logger;
}

export interface IntakeOutcome {
  result: "accepted" | "ignored";
  reason?: string;
  lanes: { lane: Lane; seq: number }[];
}

/**
 * Turns an event into lane work: records it durably as pending, then wakes the lane. The
 * caller acknowledges the event (202, Kafka offset) only after this resolves.
 */
export class Intake {
  readonly #ignoredOnce = new Set<string>();
  readonly deps: IntakeDeps;

  constructor(deps: IntakeDeps) {
    this.deps = deps;
  }

  /**
   * A lakeFS action's webhook: published to the group's topic when forwarding is on (the lane's
   * owner exports it), handled here when it is off or Kafka cannot take the event.
   */
  async webhook(
    event: HookEvent,
  ): Promise<{ result: "accepted" | "ignored"; reason?: string; lanes: number }> {
    const { forwarder, metrics, logger } = this.deps;
    if (forwarder) {
      try {
        await forwarder.publish(event);
        metrics.intake("webhook", "accepted");
        return { result: "accepted", reason: "forwarded to Kafka", lanes: 0 };
      } catch (err) {
        // Kafka cannot take it, so nobody else will see it: this daemon handles it, whichever
        // daemon of the group owns the lane (the destination's lease keeps one writer).
        logger.warn({ err }, "cannot forward to Kafka; handling here");
        const outcome = await this.handle(event, "webhook", { owned: true });
        return {
          result: outcome.result,
          ...(outcome.reason ? { reason: outcome.reason } : {}),
          lanes: outcome.lanes.length,
        };
      }
    }
    const outcome = await this.handle(event, "webhook");
    return {
      result: outcome.result,
      ...(outcome.reason ? { reason: outcome.reason } : {}),
      lanes: outcome.lanes.length,
    };
  }

  /**
   * Records an event (webhook or Kafka) as pending for each lane it concerns, and wakes them.
   * `owned`: the caller knows the event is this daemon's to handle, whatever the ownership of
   * its lanes says: a Kafka message read from a partition it holds, or a webhook Kafka could not
   * take (nobody else will see it; the destination's lease keeps one writer).
   */
  async handle(
    event: HookEvent,
    source: "webhook" | "kafka",
    { owned: ownedHere = false }: { owned?: boolean } = {},
  ): Promise<IntakeOutcome> {
    const { router, scheduler, checkpoint, metrics, logger } = this.deps;
    if (!(handledEvents as readonly string[]).includes(event.event_type)) {
      metrics.intake(source, "ignored");
      return {
        result: "ignored",
        reason: `event type ${event.event_type} does not move a branch`,
        lanes: [],
      };
    }
    if (!event.branch_id) {
      metrics.intake(source, "ignored");
      return { result: "ignored", reason: "event names no branch", lanes: [] };
    }
    const keys = router.match(event.repository_id, event.branch_id);
    if (keys.length === 0) {
      const k = `${event.repository_id}/${event.branch_id}`;
      if (!this.#ignoredOnce.has(k)) {
        // Said once per branch, within bounds: a stream of short-lived branches must not grow
        // memory. Past the bound, branches are said again.
        if (this.#ignoredOnce.size >= IGNORED_REMEMBERED) this.#ignoredOnce.clear();
        this.#ignoredOnce.add(k);
        logger.info(
          { repository: event.repository_id, branch: event.branch_id },
          "events for this branch are ignored: no mirror is configured for it",
        );
      }
      metrics.intake(source, "ignored");
      return { result: "ignored", reason: `no mirror configured for ${k}`, lanes: [] };
    }
    const owned = ownedHere ? keys : keys.filter((k) => this.deps.owns(k.repository, k.branch));
    if (owned.length === 0) {
      metrics.intake(source, "ignored");
      return {
        result: "ignored",
        reason: `another daemon of the group works on ${event.repository_id}/${event.branch_id}`,
        lanes: [],
      };
    }
    const lanes: IntakeOutcome["lanes"] = [];
    for (const key of owned) {
      const lane = scheduler.lane(key);
      await checkpoint.recordPending(lane.id, {
        commitId: event.commit_id ?? "",
        eventType: event.event_type,
        source,
        receivedAt: new Date().toISOString(),
      });
      lanes.push({ lane, seq: scheduler.notify(lane) });
    }
    metrics.intake(source, "accepted");
    return { result: "accepted", lanes };
  }
}

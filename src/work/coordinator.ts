import { createHash, randomBytes, randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import type { Destination } from "../destination/destination.ts";
import { errorMessage } from "../errors.ts";
import type { Exporter, ExportResult } from "../export/exporter.ts";
import type { PartsDone } from "../export/export-run.ts";
import { flatten } from "../export/order.ts";
import { addProgress, noProgress } from "../export/task.ts";
import type { ExportTask } from "../export/task.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import type { Lease } from "../lease/lease.ts";
import type { LaneName } from "../ledger/lane-records.ts";
import { MAX_FAILED } from "../ledger/ledger.ts";
import type { FailedPath, Ledger, Plan } from "../ledger/ledger.ts";
import { parseRecord, readRecords, recordPath } from "./items.ts";
import type { ItemRecord, WorkItem } from "./items.ts";
import { rangeTasks, reconciliation } from "./item-tasks.ts";
import { WHOLE, describeRange, inRange, itemId } from "./ranges.ts";
import type { KeyRange } from "./ranges.ts";
import type { WorkQueue } from "./queue.ts";
import { initialRanges } from "./split.ts";
import type { WorkWorker } from "./worker.ts";

export interface CoordinatorDeps {
  lakefs: LakefsClient;
  config: Config;
  logger: Logger;
  queue: WorkQueue;
  worker: WorkWorker;
  owner: () => string;
}

/** A lane's export to be split, as the owner decided before recording the attempt. */
export interface Split {
  run: string;
  key: string;
  kind: WorkItem["kind"];
  from: string[];
  retry: FailedPath[];
  head: string;
  /** Whether this run was begun before (by this owner or an earlier one) and is resumed. */
  resumed: boolean;
}

export interface SplitLane {
  lane: LaneName;
  dest: Destination;
  exporter: Exporter;
  lease: Lease;
  /** The run moved: an item of it was recorded (the lane's stall watch counts it as progress). */
  progressed?: (() => void) | undefined;
}

interface Pending {
  item: WorkItem;
  issuedAt: number;
  /** Issues so far (Kafka deliveries the owner asked for). */
  issues: number;
  local: boolean;
}

/**
 * The owner's side of a split export. Decides whether a lane's export is big enough to share
 * (a first export of a prefix that was empty, or a diff, with more than `work.splitAbove`
 * entries, found by reading that many and no more), cuts it into key ranges (see
 * initialRanges), names the run in its lease and issues the ranges as work items to the group.
 * Every worker, this daemon included, does round 0 of an item and records it beside the ledger.
 * The owner reads those records, issues again what is late or failed, does itself what failed
 * `work.maxItemAttempts` times (or everything, when Kafka does not take the items), then takes
 * the run out of its lease, waits out the workers' view of it, and runs what the items left (later
 * rounds, deletes) and the status file, which counts every item.
 */
export class Coordinator {
  readonly #d: CoordinatorDeps;

  constructor(deps: CoordinatorDeps) {
    this.#d = deps;
  }

  /** The split of this export, or undefined to run it in one process as usual. */
  async prepare(
    at: SplitLane,
    ledger: Ledger,
    plan: Exclude<Plan, { kind: "current" | "wait" }>,
    head: string,
    signal: AbortSignal,
  ): Promise<Split | undefined> {
    if (!at.exporter.splittable) return undefined;
    try {
      return await this.#prepare(at, ledger, plan, head, signal);
    } catch (err) {
      // A commit to diff from that lakeFS no longer has, say: the export in one process
      // finds it again and knows what to do.
      if (signal.aborted) throw err;
      this.#d.logger.warn(
        { repository: at.lane.repository, branch: at.lane.branch, err: errorMessage(err) },
        "could not size the export; not splitting it",
      );
      return undefined;
    }
  }

  async #prepare(
    at: SplitLane,
    ledger: Ledger,
    plan: Exclude<Plan, { kind: "current" | "wait" }>,
    head: string,
    signal: AbortSignal,
  ): Promise<Split | undefined> {
    const { splitAbove } = this.#d.config.work;
    const { lakefs } = this.#d;
    const repo = at.lane.repository;
    let kind: Split["kind"];
    let from: string[] = [];
    let retry: FailedPath[] = [];
    if (plan.kind === "reconcile") {
      // Only where every key under the prefix is the lane's own: no guard to count first,
      // no foreign keys to tell apart.
      if (ledger.prefix !== "empty") return undefined;
      kind = "reconcile";
      if (!(await more(flatten(lakefs.listObjects(repo, head, "", signal)), splitAbove)))
        return undefined;
    } else {
      // Paths still backing off stay failed only through the run's carry: not split then.
      if (plan.carry.length > 0) return undefined;
      kind = "cover";
      from = [...new Set(plan.from)].filter((c) => c !== head);
      retry = plan.retry;
      let seen = 0;
      for (const f of from) {
        const left = splitAbove - seen;
        const n = await count(flatten(lakefs.diff(repo, f, head, signal)), left + 1);
        seen += n;
        if (seen > splitAbove) break;
      }
      if (seen <= splitAbove) return undefined;
    }
    const key = createHash("sha256")
      // The rounds rule is in it: a new owner configured otherwise lists the leftovers by
      // its own rule, which must be the one the run's workers left them by.
      .update(
        JSON.stringify({
          kind,
          from,
          retry: retry.map((r) => r.path),
          rounds: this.#d.config.export.rounds,
          deletesLast: this.#d.config.export.deletesLast,
        }),
      )
      .digest("hex")
      .slice(0, 16);
    const resumed = ledger.work?.commit === head && ledger.work.key === key;
    const run = resumed
      ? ledger.work!.run
      : `${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
    return { run, key, kind, from, retry, head, resumed };
  }

  /**
   * Runs a split export. `recorded` is the lane's attempt record (with the split in it): no
   * item is issued before it is saved.
   */
  async run(
    split: Split,
    at: SplitLane,
    recorded: () => Promise<void>,
    signal: AbortSignal,
  ): Promise<ExportResult> {
    const { config, lakefs } = this.#d;
    const log = this.#d.logger.child({
      repository: at.lane.repository,
      branch: at.lane.branch,
      run: split.run,
    });
    const src = { lakefs, repository: at.lane.repository, dest: at.dest };
    if (split.kind === "reconcile")
      await reconciliation(src, split.head, WHOLE, at.lane, signal).checkBelow();
    await recorded();
    try {
      // Inside: a failed write of the run into the lease still takes it out below.
      await at.lease.openRun(split.run, signal);
      return await this.#runOpen(split, at, src, log, signal);
    } catch (err) {
      // A shutdown leaves the run named, so that the lease expires rather than being handed over
      // while workers may write. Any other end closes it: its items must not outlive it.
      if (!signal.aborted) {
        await at.lease.closeRun(split.run, workersStopMs(config), signal).catch(() => undefined);
        await sleep(workersStopMs(config));
      }
      throw err;
    }
  }

  async #runOpen(
    split: Split,
    at: SplitLane,
    src: Parameters<typeof rangeTasks>[0],
    log: Logger,
    signal: AbortSignal,
  ): Promise<ExportResult> {
    const { config, lakefs } = this.#d;
    const epoch = at.lease.epoch!;
    const started = Date.now();
    const roots = await initialRanges(
      (prefix) => lakefs.listLevel(at.lane.repository, split.head, prefix, "/", 1000, signal),
      config.work.initialItems,
    );
    const issuer = randomUUID();
    const r = config.export.rounds;
    const rounds = typeof r === "string" ? r : [...r];
    const item = (range: KeyRange): WorkItem => ({
      format: 1,
      run: split.run,
      id: itemId(split.run, range),
      range,
      attempt: 0,
      epoch,
      owner: this.#d.owner(),
      issuer,
      repository: at.lane.repository,
      branch: at.lane.branch,
      destination: at.dest.uri,
      commit: split.head,
      kind: split.kind,
      from: split.from,
      retry: split.retry.filter((r) => inRange(range, r.path)),
      itemObjects: config.work.itemObjects,
      viewMs: config.work.leaseViewMs,
      rounds,
      deletesLast: config.export.deletesLast,
    });
    const done = new Map<string, ItemRecord>();
    const pending = new Map<string, Pending>();
    const failed = new Map<string, string>();
    const local: WorkItem[] = [];
    let kafkaAway = false;
    const issue = async (items: WorkItem[]) => {
      for (const i of items) {
        const p = pending.get(i.id);
        pending.set(i.id, {
          item: i,
          issuedAt: Date.now(),
          issues: (p?.issues ?? 0) + 1,
          local: false,
        });
      }
      if (kafkaAway) return toLocal(items);
      try {
        await this.#d.queue.issue(items);
      } catch (err) {
        kafkaAway = true;
        log.warn(
          { err: errorMessage(err) },
          "Kafka does not take work items; the owner does them itself",
        );
        toLocal(items);
      }
    };
    const localTries = new Map<string, number>();
    const toLocal = (items: WorkItem[]) => {
      for (const i of items) {
        const p = pending.get(i.id);
        if (p && !p.local) {
          p.local = true;
          // A new attempt: error records of earlier ones say nothing of this one.
          p.item = { ...p.item, attempt: p.item.attempt + 1 };
          local.push(p.item);
        }
      }
    };
    // Resuming: what earlier owners' workers finished stays done (same commit, same cover).
    if (split.resumed)
      this.#absorb(
        await readRecords(at.dest, split.run, done, signal),
        done,
        pending,
        () => undefined,
      );
    const roots0 = roots.map(item).filter((i) => !done.has(i.id));
    await issue([...roots0, ...this.#orphans(done, pending, item)]);
    log.info(
      { items: roots.length, resumedDone: done.size, epoch, kafkaAway },
      "split export: work items issued",
    );
    // Items this owner does itself, one at a time (each runs its own copies in parallel). It
    // stops with the run: an error below ends it before the error goes on.
    const stopLocal = new AbortController();
    const localSignal = AbortSignal.any([signal, stopLocal.signal]);
    const localLoop = (async () => {
      const signal = localSignal;
      while (!signal.aborted && (pending.size > 0 || local.length > 0)) {
        const next = local.shift();
        if (!next) {
          await sleep(Math.min(config.work.pollMs, 200), undefined, { signal }).catch(
            () => undefined,
          );
          continue;
        }
        if (done.has(next.id)) continue;
        const tries = (localTries.get(next.id) ?? 0) + 1;
        localTries.set(next.id, tries);
        try {
          // Its hand-ons come back here: Kafka may be the reason it runs here.
          const outcome = await this.#d.worker.run(
            next,
            (child) => {
              // Done already (handed on by an earlier attempt): nothing to wait for.
              if (done.has(child.id)) return Promise.resolve();
              pending.set(child.id, { item: child, issuedAt: Date.now(), issues: 1, local: true });
              local.push(child);
              return Promise.resolve();
            },
            signal,
          );
          // Taken here, not left to the poll: the poll counts only error records of the
          // item's latest attempt, and an earlier attempt's worker may have written over this
          // one's record. No record (this process's view of its own lease lapsed, or the
          // record could not be written), or an error one: tried again, then a failure,
          // never waited for in vain.
          const text =
            outcome === "stale"
              ? undefined
              : await at.dest.getText(recordPath(next.run, next.id), signal);
          const record = text === undefined ? undefined : parseRecord(text, next.id);
          if (record && record.error === null) {
            if (!done.has(next.id)) this.#absorb([record], done, pending, () => undefined);
            at.progressed?.();
          } else if (tries < config.work.maxItemAttempts) local.push(next);
          else
            failed.set(
              next.id,
              record?.error ?? `no record after ${tries} tries here (${outcome})`,
            );
        } catch (err) {
          if (signal.aborted) break;
          failed.set(next.id, errorMessage(err));
        }
      }
    })();
    localLoop.catch(() => undefined);
    const timeoutMs = config.work.itemTimeoutSeconds * 1000;
    // When a record of this run last came in, and the records seen so far: while the group
    // records items, an item waiting in a Kafka backlog behind them is not issued again.
    let heardAt = Date.now();
    const heard = new Set<string>();
    try {
      while (pending.size > 0) {
        await sleep(config.work.pollMs, undefined, { signal });
        const records = await readRecords(at.dest, split.run, done, signal);
        for (const r of records) {
          const seen = JSON.stringify([r.id, r.issuer, r.attempt, r.worker, r.finishedAt]);
          if (!heard.has(seen)) {
            heard.add(seen);
            heardAt = Date.now();
            at.progressed?.();
          }
        }
        const again: WorkItem[] = [];
        this.#absorb(records, done, pending, (p, record) => {
          // A failed record of the item's latest issue: issue it again, or do it here.
          if (
            record.epoch !== epoch ||
            record.issuer !== issuer ||
            record.attempt !== p.item.attempt
          )
            return;
          // The owner's own items: the local loop reads each try's record and decides.
          if (p.local) return;
          if (p.issues >= config.work.maxItemAttempts) toLocal([p.item]);
          else again.push({ ...p.item, attempt: p.item.attempt + 1 });
        });
        for (const o of this.#orphans(done, pending, item)) again.push(o);
        for (const id of done.keys()) pending.delete(id);
        for (const [id, p] of pending) {
          if (failed.has(id)) {
            // Done here and failed here too: its range goes into the FAILURE file.
            pending.delete(id);
            done.set(id, failedRecord(p.item, failed.get(id)!, this.#d.owner()));
            continue;
          }
          // Issued again only once the whole run has been quiet for the timeout: a worker that
          // died leaves its items to the group (Kafka hands them on); this is for the rest.
          const waited = Date.now() - Math.max(p.issuedAt, heardAt);
          if (p.local || waited < timeoutMs || again.some((a) => a.id === id)) continue;
          if (p.issues >= config.work.maxItemAttempts) toLocal([p.item]);
          else again.push({ ...p.item, attempt: p.item.attempt + 1 });
        }
        if (again.length > 0) {
          log.info({ items: again.length }, "work items issued again");
          await issue(again);
        }
      }
      await localLoop;
    } catch (err) {
      stopLocal.abort();
      await localLoop.catch(() => undefined);
      throw err;
    }
    const roundZeroMs = Date.now() - started;
    // No worker writes for the run once this has passed: later rounds may go.
    await at.lease.closeRun(split.run, workersStopMs(config), signal);
    await sleep(workersStopMs(config), undefined, { signal });
    const records = [...done.values()];
    const workers = new Set(records.map((r) => r.worker));
    const prior = summed(records);
    const result = await at.exporter.finishParts(
      split.head,
      split.from,
      this.#leftovers(records, split, src, at.exporter, signal),
      prior,
      signal,
    );
    log.info(
      { items: records.length, workers: [...workers], roundZeroMs, status: result.status },
      "split export finished",
    );
    return result;
  }

  /** Takes new records in: done ones (with their hand-ons) leave `pending`; failed ones go to `failedOne`. */
  #absorb(
    records: ItemRecord[],
    done: Map<string, ItemRecord>,
    pending: Map<string, Pending>,
    failedOne: (p: Pending, record: ItemRecord) => void,
  ): void {
    for (const r of records) {
      if (r.error !== null) {
        const p = pending.get(r.id);
        if (p) failedOne(p, r);
        continue;
      }
      done.set(r.id, r);
      pending.delete(r.id);
    }
  }

  /** Hand-ons named by done records that are neither done nor known: issued by the owner. */
  #orphans(
    done: ReadonlyMap<string, ItemRecord>,
    pending: Map<string, Pending>,
    item: (range: KeyRange) => WorkItem,
  ): WorkItem[] {
    const found: WorkItem[] = [];
    for (const r of done.values()) {
      for (const range of r.children) {
        const child = item(range);
        if (done.has(child.id) || pending.has(child.id)) continue;
        if (!r.handedOn) found.push(child);
        // Handed on by its worker: that was its first issue.
        else pending.set(child.id, { item: child, issuedAt: Date.now(), issues: 1, local: false });
      }
    }
    return found;
  }

  /** What the items left to the owner: from their records, or listed again where they overflowed. */
  async *#leftovers(
    records: ItemRecord[],
    split: Split,
    src: Parameters<typeof rangeTasks>[0],
    exporter: Exporter,
    signal: AbortSignal,
  ): AsyncGenerator<ExportTask> {
    const deferDeletes = split.kind === "reconcile";
    for (const r of records) {
      if (r.deferred) {
        yield* r.deferred;
        continue;
      }
      const item = { ...split, commit: split.head, repository: src.repository, branch: "" };
      for await (const t of rangeTasks(src, item, r.range, signal))
        if (exporter.defers(t, deferDeletes)) yield t;
    }
  }
}

/** The record of an item nobody could do: its whole range is a failure. */
function failedRecord(item: WorkItem, reason: string, owner: string): ItemRecord {
  return {
    format: 1,
    run: item.run,
    id: item.id,
    range: item.range,
    children: [],
    epoch: item.epoch,
    issuer: item.issuer,
    worker: owner,
    attempt: item.attempt,
    progress: { ...noProgress(), failed: 1 },
    failures: [`work item ${describeRange(item.range)}: ${reason}`],
    undone: null,
    deferred: [],
    error: null,
    handedOn: true,
    finishedAt: new Date().toISOString(),
  };
}

/** What every item did, summed (see ExportRun's `prior`). */
export function summed(records: readonly ItemRecord[]): PartsDone {
  const progress = noProgress();
  const failures: string[] = [];
  let undone: FailedPath[] | undefined = [];
  for (const r of records) {
    addProgress(progress, r.progress);
    failures.push(...r.failures);
    if (r.undone === null || !undone || undone.length + r.undone.length > MAX_FAILED)
      undone = undefined;
    else undone.push(...r.undone);
  }
  return { progress, failures, undone };
}

/** Whether a stream holds more than `n` items (reads at most n + 1). */
async function more(items: AsyncIterable<unknown>, n: number): Promise<boolean> {
  return (await count(items, n + 1)) > n;
}

/** How many items a stream holds, counting to `limit` at most. */
async function count(items: AsyncIterable<unknown>, limit: number): Promise<number> {
  let n = 0;
  for await (const _ of items) if (++n >= limit) break;
  return n;
}

/**
 * How long after closeRun no worker's write for the run can still land: a worker trusts one
 * reading of the lease for at most work.leaseViewMs, and a request it sent just before that
 * gets the margin the lease gives its own holder's requests (a third of its TTL) to be done
 * with at the store, as a server-side copy may be after the client has hung up.
 */
export function workersStopMs(config: Config): number {
  return config.work.leaseViewMs + (config.lease.ttlSeconds * 1000) / 3;
}

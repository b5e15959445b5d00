import type { Logger } from "pino";
import { exporterSettings } from "../clients.ts";
import type { Config } from "../config.ts";
import type { Destination } from "../destination/destination.ts";
import { LeaseLostError, errorMessage } from "../errors.ts";
import { Exporter } from "../export/exporter.ts";
import { noProgress } from "../export/task.ts";
import type { ExportTask } from "../export/task.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import { withRetry } from "../retry.ts";
import { DEFERRED_IN_RECORD, parseRecord, recordPath } from "./items.ts";
import type { ItemRecord, WorkItem } from "./items.ts";
import { itemBoundary, rangeTasks } from "./item-tasks.ts";
import { LeaseView } from "./lease-view.ts";
import { itemId, splitAt } from "./ranges.ts";
import type { KeyRange } from "./ranges.ts";

export interface WorkerDeps {
  lakefs: LakefsClient;
  destination: (uri: string) => Destination;
  config: Config;
  logger: Logger;
  /** This daemon's name, in the records it writes. */
  name: () => string;
}

/** What became of an item a worker was given. */
export type ItemOutcome =
  /** Done (or could not be done: the record says why). */
  | "recorded"
  /** Done before (a record without error is there): nothing written. */
  | "skipped"
  /** Its run is over or its epoch gone: nothing written, nothing to do. */
  | "stale";

/**
 * Does work items: one key range of a lane's split export each, with the lane's copier, rounds
 * rule and fence, as the lane's owner would. Writes only while the owner's lease names the
 * item's epoch and run (see LeaseView), and ends each item with a record beside the lane's
 * ledger that tells the owner what it did and what it left (later rounds, deletes).
 *
 * An item whose range holds more than about `itemObjects` entries is cut at the entry after
 * that many: the worker does the first part and hands the rest on at once as a new item, so a
 * big range is listed by one worker after another while copies run on all of them.
 */
export class WorkWorker {
  readonly #d: WorkerDeps;

  constructor(deps: WorkerDeps) {
    this.#d = deps;
  }

  async run(
    item: WorkItem,
    handOn: (child: WorkItem) => Promise<void>,
    signal: AbortSignal,
  ): Promise<ItemOutcome> {
    const log = this.#d.logger.child({
      repository: item.repository,
      branch: item.branch,
      run: item.run,
      item: item.id,
    });
    const dest = this.#d.destination(item.destination);
    const view = new LeaseView({ dest, epoch: item.epoch, run: item.run, viewMs: item.viewMs });
    if (!(await view.refresh(signal))) {
      log.debug({ why: view.stale }, "work item stale; dropped");
      return "stale";
    }
    const path = recordPath(item.run, item.id);
    const before = await dest.getText(path, signal);
    if (before !== undefined && parseRecord(before, dest.describe(path)).error === null)
      return "skipped";
    view.keep(signal);
    log.info({ range: item.range, attempt: item.attempt }, "work item started");
    const src = { lakefs: this.#d.lakefs, repository: item.repository, dest };
    // The copies run only while the view holds: a lapse aborts what is in flight.
    const writing = AbortSignal.any([signal, view.signal]);
    let own: KeyRange = item.range;
    const children: KeyRange[] = [];
    let handedOn = true;
    try {
      const at = await itemBoundary(src, item, signal);
      if (at !== undefined) {
        const [mine, rest] = splitAt(item.range, at);
        own = mine;
        children.push(rest);
        const child: WorkItem = { ...item, range: rest, id: itemId(item.run, rest), attempt: 0 };
        // Handed on before this part is copied: the next worker lists while this one copies.
        // Lost on the way, the owner issues it when it reads this record.
        await handOn(child).catch((err: unknown) => {
          handedOn = false;
          log.warn({ err }, "could not hand the rest of a work item on; its owner will");
        });
      }
      let deferred: ExportTask[] | null = [];
      // The owner's rounds and deletes-last, not this daemon's: they decide what round 0 is.
      const { deletesLast: _own, ...settings } = exporterSettings(this.#d.config);
      const exporter = new Exporter({
        lakefs: this.#d.lakefs,
        repository: item.repository,
        destination: dest,
        logger: log,
        ...settings,
        rounds: item.rounds,
        ...(item.deletesLast !== null ? { deletesLast: item.deletesLast } : {}),
        fence: view.assertCurrent,
      });
      const deferDeletes = item.kind === "reconcile";
      const done = await exporter.runPart(
        item.commit,
        rangeTasks(src, item, own, writing),
        {
          deferDeletes,
          defer: (task) => {
            if (deferred && deferred.length < DEFERRED_IN_RECORD) deferred.push(task);
            else deferred = null;
          },
        },
        writing,
      );
      await this.#record(
        dest,
        view,
        {
          ...this.#base(item, own, children, handedOn),
          progress: done.progress,
          failures: done.failures,
          undone: done.undone ?? null,
          deferred,
          error: null,
        },
        signal,
      );
      return "recorded";
    } catch (err) {
      if (signal.aborted) throw err;
      if (err instanceof LeaseLostError || view.stale || view.signal.aborted) {
        log.info({ why: errorMessage(err) }, "work item stopped: its run or epoch is over");
        return "stale";
      }
      log.warn({ err }, "work item failed");
      await this.#record(
        dest,
        view,
        {
          ...this.#base(item, own, children, handedOn),
          progress: noProgress(),
          failures: [],
          undone: null,
          deferred: null,
          error: errorMessage(err),
        },
        signal,
      ).catch((e: unknown) => log.warn({ err: e }, "could not record a failed work item"));
      return "recorded";
    } finally {
      view.close();
    }
  }

  #base(item: WorkItem, own: KeyRange, children: KeyRange[], handedOn: boolean) {
    return {
      format: 1 as const,
      run: item.run,
      id: item.id,
      range: own,
      children,
      handedOn,
      epoch: item.epoch,
      issuer: item.issuer,
      worker: this.#d.name(),
      attempt: item.attempt,
      finishedAt: new Date().toISOString(),
    };
  }

  async #record(dest: Destination, view: LeaseView, record: ItemRecord, signal: AbortSignal) {
    await withRetry(
      () => {
        view.assertCurrent();
        return dest.putText(recordPath(record.run, record.id), JSON.stringify(record), signal);
      },
      {
        operation: "write a work record",
        signal,
        logger: this.#d.logger,
        policy: this.#d.config.retry,
      },
    );
  }
}

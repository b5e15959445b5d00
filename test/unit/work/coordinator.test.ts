import assert from "node:assert/strict";
import { it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import pino from "pino";
import { loadConfig } from "../../../src/config.ts";
import type { Config } from "../../../src/config.ts";
import type { Destination } from "../../../src/destination/destination.ts";
import type { Exporter, ExportResult } from "../../../src/export/exporter.ts";
import type { PartsDone } from "../../../src/export/export-run.ts";
import { noProgress } from "../../../src/export/task.ts";
import type { LakefsClient } from "../../../src/lakefs/client.ts";
import type { Lease } from "../../../src/lease/lease.ts";
import { Coordinator } from "../../../src/work/coordinator.ts";
import type { Split } from "../../../src/work/coordinator.ts";
import { recordPath } from "../../../src/work/items.ts";
import { WHOLE, itemId } from "../../../src/work/ranges.ts";
import type { ItemRecord, WorkItem } from "../../../src/work/items.ts";
import type { WorkQueue } from "../../../src/work/queue.ts";
import type { WorkWorker } from "../../../src/work/worker.ts";

/** The run's records, as a store would keep them: text by path, listed in key order. */
class RecordStore {
  readonly texts = new Map<string, string>();
  describe(path = ""): string {
    return `mem://records/${path}`;
  }
  getText(path: string): Promise<string | undefined> {
    return Promise.resolve(this.texts.get(path));
  }
  putText(path: string, text: string): Promise<void> {
    this.texts.set(path, text);
    return Promise.resolve();
  }
  deleteBatch(paths: string[]): Promise<string[]> {
    for (const p of paths) this.texts.delete(p);
    return Promise.resolve([]);
  }
  async *list(prefix: string): AsyncGenerator<{ path: string }[]> {
    await Promise.resolve();
    yield [...this.texts.keys()]
      .filter((k) => k.startsWith(prefix))
      .sort()
      .map((path) => ({ path }));
  }
}

const record = (item: WorkItem, error: string | null): ItemRecord => ({
  format: 1,
  run: item.run,
  id: item.id,
  range: item.range,
  children: [],
  handedOn: true,
  epoch: item.epoch,
  issuer: item.issuer,
  worker: "a worker",
  attempt: item.attempt,
  progress: noProgress(),
  failures: [],
  undone: [],
  deferred: [],
  error,
  finishedAt: new Date().toISOString(),
});

/** Windows of milliseconds: polls every 20 ms, the lease's view lapses in 5. */
function fastConfig(work: Partial<Config["work"]>): Config {
  const base = loadConfig({ env: {}, file: undefined });
  return {
    ...base,
    work: { ...base.work, pollMs: 20, leaseViewMs: 5, ...work },
    lease: { ...base.lease, ttlSeconds: 0.03 },
  };
}

/**
 * A coordinator of one split run, with the queue and the owner's own worker given; resolves with
 * how the run ended within 5 s. The commit holds `objects` at its top level (none: one item, the
 * whole key space).
 */
async function runOne(opts: {
  config: Config;
  store: RecordStore;
  queue: Pick<WorkQueue, "issue">;
  worker: Pick<WorkWorker, "run">;
  resumed: boolean;
  objects?: string[];
  progressed?: () => void;
}): Promise<{ outcome: "ended" | "still polling"; finished: boolean; prior?: PartsDone }> {
  let finished = false;
  let prior: PartsDone | undefined;
  const exporter = {
    finishParts: (_head: string, _from: string[], _left: unknown, done: PartsDone) => {
      finished = true;
      prior = done;
      return Promise.resolve({ status: "FAILURE" } as ExportResult);
    },
  };
  const lease = {
    epoch: 3,
    openRun: () => Promise.resolve(),
    closeRun: () => Promise.resolve(),
  };
  const results = (opts.objects ?? []).map((path) => ({ path, path_type: "object" }));
  const lakefs = { listLevel: () => Promise.resolve({ results, hasMore: false }) };
  const coordinator = new Coordinator({
    lakefs: lakefs as unknown as LakefsClient,
    config: opts.config,
    logger: pino({ level: "silent" }),
    queue: opts.queue as WorkQueue,
    worker: opts.worker as WorkWorker,
    owner: () => "the owner",
  });
  const split: Split = {
    run: "r1",
    key: "k",
    kind: "cover",
    from: ["c0"],
    retry: [],
    head: "c1",
    resumed: opts.resumed,
  };
  const ended = coordinator.run(
    split,
    {
      lane: { repository: "repo", branch: "main" },
      dest: opts.store as unknown as Destination,
      exporter: exporter as unknown as Exporter,
      lease: lease as unknown as Lease,
      progressed: opts.progressed,
    },
    () => Promise.resolve(),
    AbortSignal.timeout(10_000),
  );
  const outcome = await Promise.race([
    ended.then(() => "ended" as const),
    sleep(5_000, "still polling" as const),
  ]);
  return { outcome, finished, ...(prior ? { prior } : {}) };
}

it("regression: the owner's own item whose done record an earlier attempt's error record overwrote ends the run (the lane hung)", async () => {
  // One issue, then the owner does the item itself.
  const config = fastConfig({ itemTimeoutSeconds: 0.05, maxItemAttempts: 1 });
  const store = new RecordStore();
  const issued: WorkItem[] = [];
  // Injected fault: Kafka takes the items and never delivers them (a slow or stuck group).
  const queueThatNeverDelivers = {
    issue: (items: readonly WorkItem[]) => {
      issued.push(...items);
      return Promise.resolve();
    },
  };
  // The owner's local run writes a done record; the worker of the first issue (attempt 0),
  // slow, then fails and writes its error record over it.
  const worker = {
    run: async (item: WorkItem) => {
      const path = recordPath(item.run, item.id);
      await store.putText(path, JSON.stringify(record(item, null)));
      const first = issued.find((i) => i.id === item.id)!;
      await store.putText(path, JSON.stringify(record(first, "lakeFS answered 503 after retries")));
      return "recorded" as const;
    },
  };
  const { outcome, finished } = await runOne({
    config,
    store,
    queue: queueThatNeverDelivers,
    worker,
    resumed: false,
  });
  assert.equal(outcome, "ended");
  assert.ok(finished, "later rounds and the status file were reached");
  assert.equal(issued.length, 1, "issued once, then done by the owner");
});

it("an error record of an earlier issuing of the run, same epoch and attempt, is not taken for this issuing's failure", async () => {
  // The owner restarted under the same name and resumed its run: its epoch is unchanged, and
  // the store still holds the error record a worker wrote for attempt 0 of the first issuing.
  const config = fastConfig({ itemTimeoutSeconds: 30, maxItemAttempts: 3 });
  const store = new RecordStore();
  const id = itemId("r1", WHOLE);
  const earlier = {
    run: "r1",
    id,
    range: WHOLE,
    attempt: 0,
    epoch: 3,
    issuer: "the first issuing",
  } as WorkItem;
  await store.putText(recordPath("r1", id), JSON.stringify(record(earlier, "cut body")));
  const issued: WorkItem[] = [];
  // A worker of the group: takes each item and records it done 300 ms later.
  const queue = {
    issue: (items: readonly WorkItem[]) => {
      issued.push(...items);
      for (const item of items)
        setTimeout(() => {
          void store.putText(recordPath(item.run, item.id), JSON.stringify(record(item, null)));
        }, 300);
      return Promise.resolve();
    },
  };
  let ranHere = 0;
  const worker = {
    run: () => {
      ranHere++;
      return Promise.resolve("recorded" as const);
    },
  };
  const { outcome, finished } = await runOne({ config, store, queue, worker, resumed: true });
  assert.equal(outcome, "ended");
  assert.ok(finished);
  assert.deepEqual(
    issued.map((i) => [i.id, i.attempt]),
    [[id, 0]],
    "issued once: the old error record did not make it issue attempt 1",
  );
  assert.notEqual(issued[0]!.issuer, "the first issuing");
  assert.equal(ranHere, 0, "nor did the owner take the item over");
});

it("an item queued behind others is not issued again while the group records items; one lost is, once the run is quiet", async () => {
  // Three items, one worker of the group that takes them one after another, 150 ms each: the
  // last is recorded 450 ms after it was issued, past the 200 ms item timeout.
  const config = fastConfig({ itemTimeoutSeconds: 0.2, maxItemAttempts: 3, initialItems: 3 });
  const store = new RecordStore();
  const issued: WorkItem[] = [];
  let backlog = Promise.resolve();
  // Injected fault: the first delivery of the item starting at "c" is lost (its worker died
  // and nothing redelivered it).
  let lost = 0;
  const queue = {
    issue: (items: readonly WorkItem[]) => {
      issued.push(...items);
      for (const item of items) {
        if (item.range.from === "c" && item.attempt === 0) {
          lost++;
          continue;
        }
        backlog = backlog.then(async () => {
          await sleep(150);
          await store.putText(recordPath(item.run, item.id), JSON.stringify(record(item, null)));
        });
      }
      return Promise.resolve();
    },
  };
  const worker = { run: () => Promise.resolve("recorded" as const) };
  let moved = 0;
  const { outcome, finished } = await runOne({
    config,
    store,
    queue,
    worker,
    resumed: false,
    objects: ["a", "b", "c"],
    progressed: () => moved++,
  });
  assert.equal(outcome, "ended");
  assert.ok(finished);
  assert.equal(lost, 1);
  assert.deepEqual(
    issued.map((i) => [i.range.from, i.attempt]),
    [
      ["", 0],
      ["b", 0],
      ["c", 0],
      ["c", 1],
    ],
    "only the lost item was issued again",
  );
  assert.equal(moved, 3, "each record the owner read was progress of the lane");
});

it("regression: the owner's own item that fails once is tried again, not failed by the poll on its first error record", async () => {
  // One issue that Kafka never delivers, then the owner does the item itself, twice at most.
  const config = fastConfig({ itemTimeoutSeconds: 0.05, maxItemAttempts: 2 });
  const store = new RecordStore();
  const queueThatNeverDelivers = { issue: () => Promise.resolve() };
  let runs = 0;
  const worker = {
    run: async (item: WorkItem) => {
      const path = recordPath(item.run, item.id);
      if (++runs === 1) {
        // Injected fault: the first try fails (lakeFS refused, say) and records so.
        await store.putText(path, JSON.stringify(record(item, "lakeFS answered 503 (injected)")));
      } else {
        // The second try takes a few polls, then succeeds.
        await sleep(150);
        await store.putText(path, JSON.stringify(record(item, null)));
      }
      return "recorded" as const;
    },
  };
  const { outcome, prior } = await runOne({
    config,
    store,
    queue: queueThatNeverDelivers,
    worker,
    resumed: false,
  });
  assert.equal(outcome, "ended");
  assert.equal(runs, 2);
  assert.deepEqual(prior?.failures, [], "the item's range is not in the FAILURE file");
});

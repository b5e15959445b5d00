import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pino from "pino";
import { loadConfig } from "../../../src/config.ts";
import type { Config } from "../../../src/config.ts";
import type { CheckpointStore } from "../../../src/daemon/checkpoint.ts";
import { newLane } from "../../../src/daemon/lane.ts";
import { LaneSync } from "../../../src/daemon/lane-sync.ts";
import type { Metrics } from "../../../src/daemon/metrics.ts";
import type { DeleteRefusal, Destination } from "../../../src/destination/destination.ts";
import { LEDGER_PATH } from "../../../src/export/reserved.ts";
import type { LakefsClient } from "../../../src/lakefs/client.ts";
import { LedgerStore } from "../../../src/ledger/ledger-store.ts";
import type { Ledger } from "../../../src/ledger/ledger.ts";

/**
 * The records of a split run that its owner gave up (killed mid-run; the next export to a newer
 * HEAD does not resume it) are removed by the lane's next export to complete, whatever happened
 * in between. The store is kept in memory: these are the lane's own decisions, not the store's.
 */

/** Text objects with versions, as the ledger and the lease use a store. */
class TextStore {
  readonly texts = new Map<string, { text: string; version: number }>();
  /** Injected fault: the store refuses to delete these. */
  readonly undeletable = new Set<string>();
  #version = 0;
  readonly uri = "mem://bucket/lane/";
  readonly prefix = "";
  readonly capabilities = {
    maxDeleteBatch: 1000,
    serverSideCopyFrom: [] as string[],
    metadata: { names: "http-token", lowerCased: false },
  };
  describe(path = ""): string {
    return `${this.uri}${path}`;
  }
  at(): this {
    return this;
  }
  key(path: string): string {
    return path;
  }
  getText(path: string): Promise<string | undefined> {
    return Promise.resolve(this.texts.get(path)?.text);
  }
  getVersioned(path: string): Promise<{ text: string; version: string } | undefined> {
    const e = this.texts.get(path);
    return Promise.resolve(e ? { text: e.text, version: String(e.version) } : undefined);
  }
  putText(path: string, text: string): Promise<void> {
    this.texts.set(path, { text, version: ++this.#version });
    return Promise.resolve();
  }
  putConditional(
    path: string,
    text: string,
    c: { ifVersion?: string; ifAbsent?: boolean },
  ): Promise<string | undefined> {
    const e = this.texts.get(path);
    if (c.ifAbsent ? e !== undefined : String(e?.version) !== c.ifVersion)
      return Promise.resolve(undefined);
    this.texts.set(path, { text, version: ++this.#version });
    return Promise.resolve(String(this.#version));
  }
  deleteBatch(paths: string[]): Promise<DeleteRefusal[]> {
    const refused: DeleteRefusal[] = [];
    for (const p of paths) {
      if (this.undeletable.has(p)) refused.push({ path: p, error: "AccessDenied (injected)" });
      else this.texts.delete(p);
    }
    return Promise.resolve(refused);
  }
  async *list(prefix = "") {
    await Promise.resolve();
    const keys = [...this.texts.keys()].filter((k) => k.startsWith(prefix)).sort();
    if (keys.length > 0)
      yield keys.map((path) => ({
        path,
        size: this.texts.get(path)!.text.length,
        lastModified: new Date(),
      }));
  }
  ledger(): Ledger {
    return JSON.parse(this.texts.get(LEDGER_PATH)!.text) as Ledger;
  }
  records(): string[] {
    return [...this.texts.keys()].filter((k) => k.startsWith("_lakefs_mirror/work/"));
  }
}

const RECORD = "_lakefs_mirror/work/r1/item-a.json";

/**
 * A lane whose ledger says a split run r1 to c1 was left unfinished, with one record of it, and
 * whose lease (naming r1) has expired; the branch is at c2 (`branch.head`), with nothing to copy.
 */
async function givenUpRun() {
  const store = new TextStore();
  const now = Date.now();
  await store.putText(
    LEDGER_PATH,
    JSON.stringify({
      format: 1,
      repository: "repo",
      branch: "main",
      base: "c0",
      attempts: ["c1"],
      failed: [],
      retry: null,
      lastSuccess: "c0",
      prefix: "owned",
      rebuilt: null,
      epoch: 1,
      work: { run: "r1", commit: "c1", key: "k" },
      seq: 5,
      updatedAt: new Date(now).toISOString(),
    }),
  );
  await store.putText(RECORD, "{}");
  await store.putText(
    "_lakefs_mirror/lease.json",
    JSON.stringify({
      format: 1,
      owner: "the killed owner",
      epoch: 1,
      token: "t",
      repository: "repo",
      branch: "main",
      expiresAt: new Date(now - 60_000).toISOString(),
      renewedAt: new Date(now - 120_000).toISOString(),
      runs: ["r1"],
    }),
  );
  const faults = { diff: false };
  const branch = { head: "c2" };
  const lakefs = {
    getBranch: () => Promise.resolve({ commit_id: branch.head }),
    getRepository: () => Promise.resolve({ storage_namespace: "local://ns" }),
    getCommit: (_r: string, id: string) =>
      Promise.resolve({
        id,
        parents: [],
        creation_date: 1,
        message: "",
        metadata: {},
        meta_range_id: "",
      }),
    diff: async function* () {
      await Promise.resolve();
      // Injected fault: lakeFS refuses the diff (the run is recorded, then fails).
      if (faults.diff) throw new Error("lakeFS answered 503 (injected)");
      yield* [];
    },
    listObjectsAfter: () => Promise.resolve({ results: [], hasMore: false }),
    logCommits: async function* () {
      await Promise.resolve();
      yield [{ id: branch.head, parents: ["c1"], creation_date: Date.now() / 1000 }];
    },
  };
  const base = loadConfig({ env: {}, file: undefined });
  const config: Config = { ...base, retry: { ...base.retry, retries: 0 } };
  const kept = new Map<string, string>();
  const checkpoint = {
    ledger: (id: string) => Promise.resolve(kept.get(id)),
    putLedger: (id: string, text: string) => {
      kept.set(id, text);
      return Promise.resolve();
    },
    legacyLastExported: () => Promise.resolve(undefined),
    forget: () => Promise.resolve(),
  } as unknown as CheckpointStore;
  const logger = pino({ level: "silent" });
  // No work topic: the export to c2 runs whole in this daemon.
  const sync = new LaneSync({
    lakefs: lakefs as unknown as LakefsClient,
    destination: () => store as unknown as Destination,
    checkpoint,
    ledgers: new LedgerStore({
      checkpoint,
      lakefs: lakefs as unknown as LakefsClient,
      logger,
      retry: config.retry,
    }),
    metrics: new Proxy({}, { get: () => () => undefined }) as Metrics,
    config,
    logger,
    owner: () => "the new owner",
    progressed: () => undefined,
  });
  const lane = newLane({ repository: "repo", branch: "main", destination: store.uri });
  const run = () => sync.run(lane, AbortSignal.timeout(10_000));
  const success = () =>
    [...store.texts.keys()].some(
      (k) => k.startsWith(`EXPORT_${branch.head}_`) && k.endsWith("_SUCCESS"),
    );
  return { store, faults, branch, run, success };
}

describe("records of a given-up split run", () => {
  it("are removed by the export that gives the run up", async () => {
    const { store, branch, run, success } = await givenUpRun();
    assert.equal(await run(), "done");
    assert.ok(success());
    assert.deepEqual(store.records(), []);
    assert.equal(store.ledger().workRecords, true, "asks once more: a late record may land");
    // The next commit's export looks again, finds none, and the ledger stops asking.
    branch.head = "c3";
    assert.equal(await run(), "done");
    assert.ok(success());
    assert.equal(store.ledger().workRecords, false);
  });

  it("regression: are removed even when the export that gave the run up failed (they stayed for good)", async () => {
    const { store, faults, run, success } = await givenUpRun();
    faults.diff = true;
    await assert.rejects(run(), /injected/);
    assert.equal(store.ledger().work, null, "the failed attempt forgot the run");
    assert.deepEqual(store.records(), [RECORD], "nothing removed before an export completes");
    faults.diff = false;
    assert.equal(await run(), "done");
    assert.ok(success());
    assert.deepEqual(store.records(), []);
  });

  it("that the store refuses to delete keep the ledger asking, and the export still succeeds", async () => {
    const { store, branch, run, success } = await givenUpRun();
    store.undeletable.add(RECORD);
    assert.equal(await run(), "done");
    assert.ok(success());
    assert.deepEqual(store.records(), [RECORD]);
    assert.equal(store.ledger().workRecords, true);
    store.undeletable.clear();
    branch.head = "c3";
    assert.equal(await run(), "done");
    assert.deepEqual(store.records(), []);
  });

  it("that the store refuses to delete do not hold back the others behind them", async () => {
    const { store, branch, run } = await givenUpRun();
    store.capabilities.maxDeleteBatch = 2;
    // A whole batch of refused records sorts first; the one behind them can go.
    const held = ["_lakefs_mirror/work/r0/a.json", "_lakefs_mirror/work/r0/b.json"];
    for (const p of held) {
      await store.putText(p, "{}");
      store.undeletable.add(p);
    }
    assert.equal(await run(), "done");
    assert.deepEqual(store.records(), held);
    store.undeletable.clear();
    branch.head = "c3";
    assert.equal(await run(), "done");
    assert.deepEqual(store.records(), []);
  });
});

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../../src/config.ts";
import { S3Destination } from "../../src/s3/destination.ts";
import { Lease } from "../../src/lease/lease.ts";
import { parseRecord, recordPath } from "../../src/work/items.ts";
import type { WorkItem } from "../../src/work/items.ts";
import { itemId } from "../../src/work/ranges.ts";
import { WorkWorker } from "../../src/work/worker.ts";
import { daemonAddress, sleep, tail } from "../helpers/crash.ts";
import {
  daemonEnv,
  spawnDaemon,
  waitFor,
  waitForExported,
  writeDaemonConfig,
} from "../helpers/daemon.ts";
import type { DaemonProcess } from "../helpers/daemon.ts";
import { daemonStatus } from "../helpers/group.ts";
import { startScriptedProxy } from "../helpers/scripted-proxy.ts";
import {
  assertMirrorEqual,
  gatewayPut,
  listKeys,
  readKey,
  silentLogger,
  statusKeys,
} from "../helpers/mirror.ts";
import type { SeedObject } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo, uniqueName } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

/** Objects as a Spark job leaves them: partitions with non-padded numbers, markers, metadata. */
function tableObjects(count: number, salt: string): SeedObject[] {
  const out: SeedObject[] = [];
  for (let i = 0; i < count; i++) {
    out.push({
      path: `tables/t${i % 5}/part=${i % 7}/f-${i}.csv`,
      content: `${salt},${i}\n`,
      contentType: "text/csv",
      ...(i % 3 === 0 ? { metadata: { writer: `spark ${i % 4}`, "row-count": String(i) } } : {}),
    });
  }
  for (let t = 0; t < 5; t++) out.push({ path: `tables/t${t}/_SUCCESS`, content: "" });
  out.push({ path: "README é.txt", content: salt });
  return out;
}

/** Uploads through the lakeFS S3 gateway, many at once, and commits. */
async function commitMany(stack: Stack, repo: string, branch: string, objects: SeedObject[]) {
  for (let i = 0; i < objects.length; i += 32)
    await Promise.all(objects.slice(i, i + 32).map((o) => gatewayPut(stack, repo, branch, o)));
  return (await stack.lakefs.commit(repo, branch, { message: `${objects.length} objects` })).id;
}

/**
 * Waits until the daemons hold every partition of the commit topic between them, then a few
 * seconds more for their work group (which /status does not show) to settle.
 */
async function inGroup(urls: string[]) {
  await waitFor(
    "the daemons in the group",
    async () => {
      const s = await Promise.all(urls.map(daemonStatus));
      return (
        s.every((x) => x.kafka === "running") &&
        s.reduce((n, x) => n + x.kafkaPartitions.length, 0) === 4
      );
    },
    60_000,
  );
  await sleep(4_000);
}

/** The "split export finished" lines of a daemon's log. */
function splitLines(output: string): { workers: string[]; items: number; status: string }[] {
  return output
    .split("\n")
    .filter((l) => l.includes('"split export finished"'))
    .map((l) => JSON.parse(l) as { workers: string[]; items: number; status: string });
}

describe("one lane's big export shared by the consumer group (work items)", () => {
  let stack: Stack;
  const daemons: DaemonProcess[] = [];

  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    for (const d of daemons) if (d.child.exitCode === null) d.child.kill("SIGKILL");
    await Promise.race([Promise.all(daemons.map((d) => d.exited)), sleep(10_000)]);
    await stack.close();
  });

  function start(
    repo: string,
    bucket: string,
    topics: { topic: string; group: string; work: string },
    brokers?: string,
    env: Record<string, string> = {},
  ) {
    const { file } = writeDaemonConfig(stack, {
      mirrors: [{ repository: repo, branches: ["*"], destination: `s3://${bucket}/{branch}/` }],
      reconcileIntervalSeconds: 1,
      extra: {
        kafka: {
          brokers: (brokers ?? stack.env.KAFKA_BROKERS).split(","),
          topic: topics.topic,
          groupId: topics.group,
          workTopic: topics.work,
          sessionTimeoutMs: 6_000,
          heartbeatIntervalMs: 1_000,
          partitions: 4,
        },
        lease: { ttlSeconds: 6 },
        work: {
          splitAbove: 300,
          itemObjects: 100,
          initialItems: 6,
          itemTimeoutSeconds: 20,
          pollMs: 200,
          leaseViewMs: 1_000,
        },
      },
    });
    const d = spawnDaemon(stack, file, env);
    daemons.push(d);
    return d;
  }

  it("two daemons share a diff and a first export, and the mirrors equal their commits", async () => {
    const repo = await createRepo(stack, "split");
    const bucket = await createBucket(stack, "split");
    const topics = {
      topic: uniqueName("commits"),
      group: uniqueName("g"),
      work: uniqueName("work"),
    };
    const a = start(repo, bucket, topics);
    const b = start(repo, bucket, topics);
    const urls = await Promise.all([daemonAddress(a), daemonAddress(b)]);
    // Both in the group before the big commit, so that items spread over both.
    await inGroup(urls);
    const objects = tableObjects(900, "one");
    const head = await commitMany(stack, repo, "main", objects);
    const exported = () =>
      Promise.any(urls.map((u) => waitForExported(u, repo, "main", head, 180_000)));
    await exported();
    await assertMirrorEqual(stack, repo, head, bucket, "main/");
    // A branch of it is a new lane: its first export reconciles an empty prefix, split too.
    await stack.lakefs.createBranch(repo, "copy", "main");
    await Promise.any(urls.map((u) => waitForExported(u, repo, "copy", head, 180_000)));
    await assertMirrorEqual(stack, repo, head, bucket, "copy/");
    const lines = [...splitLines(a.output()), ...splitLines(b.output())];
    assert.equal(lines.length, 2, tail(a.output()) + tail(b.output()));
    for (const l of lines) {
      assert.equal(l.status, "SUCCESS");
      assert.ok(l.items > 6, `items were cut further by count (${l.items})`);
      assert.equal(l.workers.length, 2, `both daemons did items: ${l.workers.join(", ")}`);
    }
    // The run's records are gone once the status file is written; the status files are SUCCESS.
    const keys = [...(await listKeys(stack, bucket, "")).keys()];
    assert.deepEqual(
      keys.filter((k) => k.includes("_lakefs_mirror/work/")),
      [],
    );
    assert.ok(
      statusKeys(keys).every((k) => k.endsWith("_SUCCESS")),
      statusKeys(keys).join("\n"),
    );
  });

  it("regression: items that take longer than a Kafka session are each delivered once (no heartbeat dropped the worker)", async () => {
    const repo = await createRepo(stack, "splitlong");
    const bucket = await createBucket(stack, "splitlong");
    const topics = {
      topic: uniqueName("commits"),
      group: uniqueName("g"),
      work: uniqueName("work"),
    };
    // Every write held 800 ms: an item of about 100 objects, 8 at a time, takes some 10 s,
    // past the 6 s session. kafkajs heartbeats only between messages.
    const slow = await startScriptedProxy(stack.env.AWS_ENDPOINT_URL, (method) =>
      method === "PUT" ? { delayMs: 800 } : undefined,
    );
    try {
      const ds = [0, 1].map(() =>
        start(repo, bucket, topics, undefined, { AWS_ENDPOINT_URL: slow.url }),
      );
      const urls = await Promise.all(ds.map((d) => daemonAddress(d)));
      await inGroup(urls);
      const head = await commitMany(stack, repo, "main", tableObjects(400, "long"));
      await Promise.any(urls.map((u) => waitForExported(u, repo, "main", head, 180_000)));
      await assertMirrorEqual(stack, repo, head, bucket, "main/");
      const starts = new Map<string, number>();
      for (const d of ds)
        for (const line of d.output().split("\n"))
          if (line.includes('"work item started"')) {
            const j = JSON.parse(line) as { item: string; attempt: number };
            const k = `${j.item}@${j.attempt}`;
            starts.set(k, (starts.get(k) ?? 0) + 1);
          }
      assert.ok(starts.size > 3, `items ran: ${starts.size}`);
      const twice = [...starts].filter(([, n]) => n > 1);
      assert.deepEqual(twice, [], "an item delivered again was copied again");
    } finally {
      await slow.close();
    }
  });

  it("kill -9 of a worker mid-export: its items are done by the other daemon", async () => {
    const repo = await createRepo(stack, "splitkill");
    const bucket = await createBucket(stack, "splitkill");
    const topics = {
      topic: uniqueName("commits"),
      group: uniqueName("g"),
      work: uniqueName("work"),
    };
    const a = start(repo, bucket, topics);
    const b = start(repo, bucket, topics);
    const urls = await Promise.all([daemonAddress(a), daemonAddress(b)]);
    await inGroup(urls);
    const head = await commitMany(stack, repo, "main", tableObjects(900, "kill"));
    // The owner names the run; the other one is a worker: killed once items are out.
    const owner = await waitFor(
      "a split export to start",
      () =>
        Promise.resolve([a, b].find((d) => d.output().includes("split export: work items issued"))),
      180_000,
    );
    const worker = owner === a ? b : a;
    await sleep(300);
    worker.child.kill("SIGKILL");
    await waitForExported(await owner.url, repo, "main", head, 180_000);
    await assertMirrorEqual(stack, repo, head, bucket, "main/");
    const [line] = splitLines(owner.output());
    assert.equal(line?.status, "SUCCESS", tail(owner.output()));
  });

  it("with Kafka away the owner does every item itself", async () => {
    const repo = await createRepo(stack, "splitalone");
    const bucket = await createBucket(stack, "splitalone");
    const head = await commitMany(stack, repo, "main", tableObjects(500, "alone"));
    // A broker address nothing listens on.
    const d = start(
      repo,
      bucket,
      { topic: uniqueName("commits"), group: uniqueName("g"), work: uniqueName("work") },
      "127.0.0.1:9",
    );
    await waitForExported(await daemonAddress(d), repo, "main", head, 180_000);
    await assertMirrorEqual(stack, repo, head, bucket, "main/");
    assert.match(d.output(), /Kafka does not take work items; the owner does them itself/);
    const [line] = splitLines(d.output());
    assert.equal(line?.status, "SUCCESS", tail(d.output()));
    assert.equal(line?.workers.length, 1);
  });

  it("a poison item (its range never lists) ends in the FAILURE file, and later rounds wait", async () => {
    const repo = await createRepo(stack, "splitpoison");
    const bucket = await createBucket(stack, "splitpoison");
    const poisoned = "tables/t3";
    // lakeFS refuses every listing or diff of the poisoned range, whoever asks, for ever.
    const lakefs = await startScriptedProxy(stack.env.LAKEFS_ENDPOINT, (_method, path) => {
      const after = new URL(path, "http://x").searchParams.get("after") ?? "";
      return after.startsWith(poisoned)
        ? { refuse: { status: 403, body: '{"message":"listing refused by the test"}' } }
        : undefined;
    });
    try {
      const topics = {
        topic: uniqueName("commits"),
        group: uniqueName("g"),
        work: uniqueName("work"),
      };
      const d = start(repo, bucket, topics, undefined, { LAKEFS_ENDPOINT: lakefs.url });
      const url = await daemonAddress(d);
      await waitFor(
        "the daemon in the group",
        async () => (await daemonStatus(url)).kafka === "running",
      );
      await waitForExported(
        url,
        repo,
        "main",
        (await stack.lakefs.getBranch(repo, "main")).commit_id,
      );
      const head = await commitMany(stack, repo, "main", tableObjects(600, "poison"));
      const failure = await waitFor(
        "a FAILURE status file",
        async () =>
          statusKeys([...(await listKeys(stack, bucket, "main/")).keys()]).find(
            (k) => k.includes(head) && k.endsWith("_FAILURE"),
          ),
        180_000,
      ).catch((err: unknown) => {
        throw new Error(`${String(err)}\n${tail(d.output(), 60)}`);
      });
      const text = (await readKey(stack, bucket, `main/${failure}`)).toString("utf8");
      assert.match(
        text,
        /work item \["tables\/t3\/", "tables\/t4\/"\): .*listing refused by the test/,
      );
      const keys = [...(await listKeys(stack, bucket, "main/")).keys()];
      // Every other range was written; no marker of a later round was.
      assert.ok(keys.includes("tables/t0/part=0/f-0.csv"), keys.slice(0, 20).join("\n"));
      assert.ok(!keys.some((k) => k.startsWith(`${poisoned}/`)));
      assert.deepEqual(
        keys.filter((k) => k.endsWith("/_SUCCESS")),
        [],
      );
      // Issued a bounded number of times, then tried by the owner, then given up.
      const issuedAgain = d
        .output()
        .split("\n")
        .filter((l) => l.includes("work items issued again"));
      assert.ok(issuedAgain.length <= 3, `${issuedAgain.length} reissues`);
    } finally {
      await lakefs.close();
    }
  });

  it("a frozen worker that wakes after newer SUCCESSes writes nothing", async () => {
    const repo = await createRepo(stack, "splitfrozen");
    const bucket = await createBucket(stack, "splitfrozen");
    const topics = {
      topic: uniqueName("commits"),
      group: uniqueName("g"),
      work: uniqueName("work"),
    };
    // Each daemon writes through a proxy of its own; the worker's is made slow once the lane's
    // owner is known, so that the worker is mid-item when it freezes.
    const links = await Promise.all(
      [0, 1].map(() => startScriptedProxy(stack.env.AWS_ENDPOINT_URL, () => undefined)),
    );
    try {
      const ds = links.map((l) =>
        start(repo, bucket, topics, undefined, { AWS_ENDPOINT_URL: l.url }),
      );
      const urls = await Promise.all(ds.map((d) => daemonAddress(d)));
      const empty = (await stack.lakefs.getBranch(repo, "main")).commit_id;
      const ownerAt = await waitFor(
        "the lane's first export",
        async () => {
          for (const [i, u] of urls.entries()) {
            const s = await daemonStatus(u);
            if (s.lanes.some((l) => l.branch === "main" && l.lastSuccessCommit === empty))
              return i + 1;
          }
          return undefined;
        },
        60_000,
      );
      const owner = ds[ownerAt - 1]!;
      const worker = ds[2 - ownerAt]!;
      const ownerUrl = urls[ownerAt - 1]!;
      links[2 - ownerAt]!.setScript((method) => (method === "PUT" ? { delayMs: 150 } : undefined));
      await inGroup(urls);
      const one = await commitMany(stack, repo, "main", tableObjects(900, "one"));
      await waitFor(
        "the worker to start an item",
        () => Promise.resolve(worker.output().includes("work item started")),
        120_000,
      );
      await sleep(500);
      worker.child.kill("SIGSTOP");
      await waitForExported(ownerUrl, repo, "main", one, 180_000);
      // A newer commit rewrites every object, and is exported while the worker is still frozen.
      const two = await commitMany(stack, repo, "main", tableObjects(900, "two"));
      await waitForExported(ownerUrl, repo, "main", two, 180_000);
      await assertMirrorEqual(stack, repo, two, bucket, "main/");
      worker.child.kill("SIGCONT");
      // Awake, it finds its run over and stops: nothing of the first commit lands.
      await sleep(8_000);
      await assertMirrorEqual(stack, repo, two, bucket, "main/");
      assert.match(worker.output(), /work item stopped: its run or epoch is over/);
      assert.ok(splitLines(owner.output()).every((l) => l.status === "SUCCESS"));
    } finally {
      await Promise.all(links.map((l) => l.close()));
    }
  });
});

describe("a work item carries its owner's export settings", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await stack.close();
  });

  it("regression: a worker whose own rounds differ leaves to later rounds what the owner's say (it used its own)", async () => {
    const repo = await createRepo(stack, "item-rounds");
    const bucket = await createBucket(stack, "item-rounds");
    const head = await commitMany(stack, repo, "main", [
      { path: "t/part-0.csv", content: "a\n" },
      { path: "t/part-1.csv", content: "b\n" },
      { path: "t/_SUCCESS", content: "" },
    ]);
    // The worker's own configuration puts nothing in later rounds.
    const { file } = writeDaemonConfig(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/m/` }],
      extra: { export: { concurrency: 4, rounds: [{ pattern: "^never$", round: 1 }] } },
    });
    const config = loadConfig({ env: { ...daemonEnv(stack), LOG_LEVEL: "silent" }, file });
    const dest = new S3Destination(stack.s3, { bucket, prefix: "m/" });
    const lease = new Lease({
      dest,
      owner: "the-owner",
      repository: repo,
      branch: "main",
      ttlMs: 20_000,
      logger: silentLogger,
    });
    await lease.ensure();
    await lease.openRun("run-1");
    const range = { from: "", to: null };
    const item: WorkItem = {
      format: 1,
      run: "run-1",
      id: itemId("run-1", range),
      range,
      attempt: 0,
      epoch: lease.epoch!,
      owner: "the-owner",
      issuer: "the-owner's process",
      repository: repo,
      branch: "main",
      destination: `s3://${bucket}/m/`,
      commit: head,
      kind: "reconcile",
      from: [],
      retry: [],
      itemObjects: 100,
      viewMs: 1_000,
      // The owner's: Spark's _SUCCESS markers last.
      rounds: "spark",
      deletesLast: null,
    };
    const worker = new WorkWorker({
      lakefs: stack.lakefs,
      destination: () => dest,
      config,
      logger: silentLogger,
      name: () => "a-worker",
    });
    const outcome = await worker.run(item, () => Promise.resolve(), AbortSignal.timeout(30_000));
    assert.equal(outcome, "recorded");
    const record = parseRecord(
      (await readKey(stack, bucket, `m/${recordPath("run-1", item.id)}`)).toString(),
      "record",
    );
    assert.equal(record.error, null);
    assert.deepEqual(
      record.deferred?.map((t) => t.path),
      ["t/_SUCCESS"],
      "the marker is left to the owner's later round",
    );
    const keys = await listKeys(stack, bucket, "m/t/");
    assert.deepEqual([...keys.keys()].sort(), ["part-0.csv", "part-1.csv"]);
  });
});

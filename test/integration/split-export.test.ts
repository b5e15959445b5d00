import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { daemonAddress, sleep, tail } from "../helpers/crash.ts";
import { spawnDaemon, waitFor, waitForExported, writeDaemonConfig } from "../helpers/daemon.ts";
import type { DaemonProcess } from "../helpers/daemon.ts";
import { daemonStatus } from "../helpers/group.ts";
import { assertMirrorEqual, gatewayPut, listKeys, statusKeys } from "../helpers/mirror.ts";
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
    const d = spawnDaemon(stack, file);
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
    await waitFor(
      "both daemons in the group",
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
    await waitFor(
      "both daemons in the group",
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
});

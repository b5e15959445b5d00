import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Kafka, logLevel } from "kafkajs";
import {
  actionFor,
  commitEvent,
  laneStatus,
  postWebhook,
  startDaemon,
  waitFor,
  waitForExported,
} from "../helpers/daemon.ts";
import { Metrics } from "../../src/daemon/metrics.ts";
import { assertMirrorEqual, commitObjects, listKeys } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo, uniqueName } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

describe("daemon intake", () => {
  let stack: Stack;
  const closers: (() => Promise<void>)[] = [];
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    for (const c of closers.reverse()) await c();
    await stack.close();
  });

  it("a real lakeFS action calling the daemon keeps the mirror equal through commits and merges", async () => {
    const repo = await createRepo(stack, "action");
    const bucket = await createBucket(stack);
    const { daemon, url } = await startDaemon(stack, {
      mirrors: [
        {
          repository: repo,
          branches: ["main"],
          destination: `s3://${bucket}/{repository}/{branch}/`,
        },
      ],
    });
    closers.push(() => daemon.close());
    await commitObjects(stack, repo, "main", [
      { path: "_lakefs_actions/mirror.yaml", content: actionFor(url) },
    ]);
    const c2 = await commitObjects(stack, repo, "main", [
      { path: "data/a.csv", content: "a" },
      { path: "data/_SUCCESS", content: "" },
    ]);
    const lane = await waitForExported(url, repo, "main", c2);
    assert.equal(lane.commitsBehind, 0);
    assert.equal(lane.lagSeconds, 0);
    await assertMirrorEqual(stack, repo, c2, bucket, `${repo}/main/`);

    // A merge fires post-merge.
    await stack.lakefs.createBranch(repo, "dev", "main");
    await commitObjects(stack, repo, "dev", [{ path: "data/b.csv", content: "b" }], ["data/a.csv"]);
    const merged = await stack.lakefs.merge(repo, "dev", "main", "merge dev");
    await waitForExported(url, repo, "main", merged);
    await assertMirrorEqual(stack, repo, merged, bucket, `${repo}/main/`);
    const keys = await listKeys(stack, bucket, `${repo}/main/`);
    assert.equal(keys.has("data/a.csv"), false);
    assert.equal(keys.has("data/b.csv"), true);
  });

  it("a burst of 50 commits coalesces into far fewer exports and converges to the newest HEAD", async (t) => {
    const repo = await createRepo(stack, "burst");
    const bucket = await createBucket(stack);
    // The daemon's metrics, supplied through its composition root, count the exports.
    let exports = 0;
    class CountingMetrics extends Metrics {
      override export(...args: Parameters<Metrics["export"]>): void {
        exports++;
        super.export(...args);
      }
    }
    const { daemon, url } = await startDaemon(
      stack,
      { mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }] },
      { metrics: new CountingMetrics() },
    );
    closers.push(() => daemon.close());
    assert.ok(daemon.metrics instanceof CountingMetrics);
    // 50 commits land, then their 50 post-commit webhooks arrive together, as they do when
    // a pipeline commits in a loop faster than one export takes.
    const commits: string[] = [];
    for (let i = 0; i < 50; i++) {
      commits.push(
        await commitObjects(stack, repo, "main", [
          { path: `burst/${i}.txt`, content: `commit ${i}` },
        ]),
      );
    }
    const auth = { authorization: `Bearer ${stack.env.LAKEFSACTION_MIRROR_TOKEN}` };
    const answers = await Promise.all(
      commits.map((c) => postWebhook(url, commitEvent(repo, "main", c), auth)),
    );
    assert.deepEqual(new Set(answers.map((r) => r.status)), new Set([202]));
    const head = commits.at(-1)!;
    await waitForExported(url, repo, "main", head);
    await assertMirrorEqual(stack, repo, head, bucket, "");
    t.diagnostic(`50 commits, ${exports} exports`);
    assert.ok(exports <= 3, `50 commits took ${exports} exports`);
    assert.ok(exports >= 1);
  });

  it("consumes Kafka commit events, skips malformed ones, and commits offsets once exported", async () => {
    const repo = await createRepo(stack, "kafka");
    const bucket = await createBucket(stack);
    const topic = uniqueName("events");
    const groupId = uniqueName("group");
    const kafka = new Kafka({
      brokers: stack.env.KAFKA_BROKERS.split(","),
      logLevel: logLevel.NOTHING,
    });
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    const producer = kafka.producer();
    await producer.connect();
    const { daemon, url } = await startDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/k/` }],
      kafka: { topic, groupId },
    });
    closers.push(async () => {
      await daemon.close();
      await producer.disconnect();
      await admin.disconnect();
    });
    const c1 = await commitObjects(stack, repo, "main", [{ path: "k1.txt", content: "one" }]);
    await producer.send({
      topic,
      messages: [
        { key: `${repo}/main`, value: "{not json" },
        { key: `${repo}/main`, value: JSON.stringify({ event_type: "post-commit" }) },
        { key: `${repo}/main`, value: JSON.stringify(commitEvent(repo, "main", c1)) },
      ],
    });
    await waitForExported(url, repo, "main", c1);
    await assertMirrorEqual(stack, repo, c1, bucket, "k/");
    const offsets = await waitFor("the offset commit", async () => {
      const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
      const committed = t?.partitions[0]?.offset;
      return committed === "3" ? committed : undefined;
    });
    assert.equal(offsets, "3");
  });

  it("--forward-webhooks-to-kafka publishes events that another daemon exports; bad messages go to the dead-letter topic", async () => {
    const repo = await createRepo(stack, "forward");
    const bucket = await createBucket(stack);
    const topic = uniqueName("events");
    const deadLetterTopic = uniqueName("dead");
    const groupId = uniqueName("group");
    const kafka = new Kafka({
      brokers: stack.env.KAFKA_BROKERS.split(","),
      logLevel: logLevel.NOTHING,
    });
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [{ topic }, { topic: deadLetterTopic }],
      waitForLeaders: true,
    });
    const front = await startDaemon(stack, {
      mirrors: [],
      kafka: { topic, groupId: uniqueName("unused") },
      forwardToKafka: true,
    });
    const worker = await startDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      kafka: { topic, groupId, deadLetterTopic },
    });
    const producer = kafka.producer();
    await producer.connect();
    const dead = kafka.consumer({ groupId: uniqueName("dead-reader") });
    closers.push(async () => {
      await dead.disconnect();
      await producer.disconnect();
      await front.daemon.close();
      await worker.daemon.close();
      await admin.disconnect();
    });
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "fwd.txt", content: "forwarded" },
    ]);
    const res = await postWebhook(front.url, commitEvent(repo, "main", c1), {
      authorization: `Bearer ${stack.env.LAKEFSACTION_MIRROR_TOKEN}`,
    });
    assert.equal(res.status, 202);
    assert.equal(((await res.json()) as { reason?: string }).reason, "forwarded to Kafka");
    await waitForExported(worker.url, repo, "main", c1);
    await assertMirrorEqual(stack, repo, c1, bucket, "");

    await producer.send({ topic, messages: [{ key: `${repo}/main`, value: "garbage" }] });
    await dead.connect();
    await dead.subscribe({ topic: deadLetterTopic, fromBeginning: true });
    const letter = await new Promise<{ value: string; error: string }>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error("nothing reached the dead-letter topic")),
        30_000,
      );
      dead
        .run({
          eachMessage: ({ message }) => {
            clearTimeout(timer);
            resolve({
              value: message.value?.toString() ?? "",
              error: message.headers?.["lakefs-mirror-error"]?.toString() ?? "",
            });
            return Promise.resolve();
          },
        })
        .catch(reject);
    });
    assert.equal(letter.value, "garbage");
    assert.match(letter.error, /JSON/);
  });

  it("answers each bad request with its status code and a reason, and records nothing", async () => {
    // A repository lakeFS does not have: the start-up reconcile finds nothing to schedule.
    const repo = uniqueName("bad");
    const bucket = await createBucket(stack);
    const { daemon, url } = await startDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      extra: { server: { host: "127.0.0.1", port: 0, bodyLimitBytes: 4096 } },
    });
    closers.push(() => daemon.close());
    const auth = { authorization: `Bearer ${stack.env.LAKEFSACTION_MIRROR_TOKEN}` };
    const event = commitEvent(repo, "main", "a".repeat(64));
    const cases: [string, Response, number][] = [
      ["no token", await postWebhook(url, event), 401],
      ["wrong token", await postWebhook(url, event, { authorization: "Bearer nope" }), 401],
      ["not JSON", await postWebhook(url, "{oops", auth), 400],
      ["not an object", await postWebhook(url, "[1,2]", auth), 400],
      ["no repository", await postWebhook(url, { event_type: "post-commit" }, auth), 400],
      [
        "too large",
        await postWebhook(url, { ...event, commit_message: "x".repeat(10_000) }, auth),
        413,
      ],
      [
        "wrong type",
        await postWebhook(url, JSON.stringify(event), { ...auth, "content-type": "text/plain" }),
        415,
      ],
    ];
    for (const [name, res, status] of cases) {
      assert.equal(res.status, status, name);
      const body = (await res.json()) as { error?: string };
      assert.ok(body.error && body.error.length > 5, `${name} gives a reason`);
    }
    const get = await fetch(`${url}/webhooks/lakefs`);
    assert.equal(get.status, 405);
    await get.body?.cancel();

    const other = await postWebhook(url, commitEvent("not-mirrored", "main", "b".repeat(64)), auth);
    assert.equal(other.status, 200);
    assert.equal(((await other.json()) as { result: string }).result, "ignored");
    const otherBranch = await postWebhook(url, commitEvent(repo, "feature", "b".repeat(64)), auth);
    assert.equal(((await otherBranch.json()) as { result: string }).result, "ignored");

    assert.deepEqual(await laneStatus(url), []);
    assert.equal((await daemon.checkpoint.allPending()).size, 0);
    assert.equal((await listKeys(stack, bucket)).size, 0);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(
      metrics,
      /lakefs_mirror_intake_events_total\{source="webhook",result="rejected"\} 8/,
    );
  });

  it("refuses to start on a checkpoint store another daemon holds", async () => {
    const bucket = await createBucket(stack);
    const mirrors = [
      { repository: "any-repo", branches: ["main"], destination: `s3://${bucket}/` },
    ];
    const first = await startDaemon(stack, { mirrors });
    closers.push(() => first.daemon.close());
    await assert.rejects(startDaemon(stack, { mirrors, checkpointPath: first.checkpointPath }), {
      code: "LM_CHECKPOINT",
      message: /locked by another process/,
    });
  });
});

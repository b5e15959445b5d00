import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { Kafka, logLevel } from "kafkajs";
import { connectStack, createBucket, createRepo, uniqueName } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

describe("the local stack", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await stack.close();
  });

  it("lakeFS answers its healthcheck", async () => {
    const res = await fetch(`${stack.env.LAKEFS_ENDPOINT}/api/v1/healthcheck`);
    assert.equal(res.status, 204);
  });

  it("lakeFS keeps committed objects on the S3 server and serves them by commit ID", async () => {
    const repo = await createRepo(stack, "smoke");
    await stack.lakefs.uploadObject(repo, "main", "a/hello.txt", "hello lakeFS", {
      contentType: "text/plain",
      metadata: { owner: "smoke" },
    });
    const commit = await stack.lakefs.commit(repo, "main", { message: "first" });
    // Change the branch after the commit: a read by commit ID must not see it.
    await stack.lakefs.uploadObject(repo, "main", "a/hello.txt", "uncommitted");

    const stats = await stack.lakefs.statObject(repo, commit.id, "a/hello.txt");
    assert.match(
      stats.physical_address,
      new RegExp(`^s3://${stack.env.STACK_LAKEFS_BUCKET}/${repo}/`),
    );
    assert.equal(stats.size_bytes, 12);
    assert.equal(stats.content_type, "text/plain");
    assert.equal(stats.metadata?.owner, "smoke");

    const { body } = await stack.lakefs.getObject(repo, commit.id, "a/hello.txt");
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), "hello lakeFS");

    // The physical object is a real S3 object on the stack's server.
    const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(stats.physical_address);
    assert.ok(m?.[1] && m[2]);
    const raw = await stack.s3.send(new GetObjectCommand({ Bucket: m[1], Key: m[2] }));
    assert.equal(await raw.Body?.transformToString(), "hello lakeFS");
  });

  it("S3 stores and returns an object", async () => {
    const bucket = await createBucket(stack, "smoke");
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: "k", Body: "v1" }));
    const got = await stack.s3.send(new GetObjectCommand({ Bucket: bucket, Key: "k" }));
    assert.equal(await got.Body?.transformToString(), "v1");
  });

  it("Kafka delivers produced messages to a consumer group on a fresh topic", async () => {
    const kafka = new Kafka({
      clientId: "stack-smoke",
      brokers: stack.env.KAFKA_BROKERS.split(","),
      logLevel: logLevel.NOTHING,
    });
    const topic = uniqueName("smoke");
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
    const producer = kafka.producer();
    await producer.connect();
    const sent = ["repo-a/main", "repo-b/main", "repo-c/dev"];
    await producer.send({
      topic,
      messages: sent.map((key) => ({ key, value: `event for ${key}` })),
    });
    const consumer = kafka.consumer({ groupId: uniqueName("smoke-group") });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const received: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`received only ${received.length} messages`)),
        30_000,
      );
      consumer
        .run({
          eachMessage: ({ message }) => {
            received.push(message.key?.toString() ?? "");
            if (received.length === sent.length) {
              clearTimeout(timer);
              resolve();
            }
            return Promise.resolve();
          },
        })
        .catch(reject);
    });
    await consumer.disconnect();
    await producer.disconnect();
    await admin.disconnect();
    assert.deepEqual(received.sort(), [...sent].sort());
  });
});

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { waitFor } from "../helpers/daemon.ts";
import {
  assertMirrorEqual,
  commitObjects,
  commitPaths,
  listKeys,
  makeExporter,
  readKey,
  statusKeys,
} from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

interface ImportStatus {
  completed: boolean;
  ingested_objects?: number;
  commit?: { id: string };
  error?: { message: string };
}

/** Objects written straight to a bucket lakeFS does not manage, under `prefix/`. */
const outsideObjects: { key: string; body: Buffer; contentType?: string }[] = [
  { key: "prefix/a.txt", body: Buffer.from("imported a"), contentType: "text/plain" },
  { key: "prefix/dir/b.bin", body: randomBytes(10_000) },
  { key: "prefix/dir/deep/c.json", body: Buffer.from('{"c":1}'), contentType: "application/json" },
  { key: "prefix/with space/d é.txt", body: Buffer.from("spaced") },
];

describe("server-side copies read only allowed sources", () => {
  let stack: Stack;
  let repo: string;
  let outside: string;
  let commit: string;

  before(async () => {
    stack = await connectStack();
    repo = await createRepo(stack, "imports");
    outside = await createBucket(stack, "outside");
    for (const o of outsideObjects) {
      await stack.s3.send(
        new PutObjectCommand({
          Bucket: outside,
          Key: o.key,
          Body: o.body,
          ContentType: o.contentType,
        }),
      );
    }
    // Not under the imported prefix: must not show up anywhere.
    await stack.s3.send(
      new PutObjectCommand({ Bucket: outside, Key: "elsewhere/x.txt", Body: "not imported" }),
    );
    await importPrefix(`s3://${outside}/prefix/`, "imported/");
    // And one object written the ordinary way, whose bytes live in the storage namespace.
    commit = await commitObjects(stack, repo, "main", [
      { path: "native/n.txt", content: "written through the gateway" },
    ]);
  });
  after(async () => {
    await stack.close();
  });

  /** lakeFS's import API: POST the import, then poll its status until it completes. */
  async function importPrefix(source: string, destination: string): Promise<string> {
    const auth = `Basic ${Buffer.from(
      `${stack.env.LAKEFS_ACCESS_KEY_ID}:${stack.env.LAKEFS_SECRET_ACCESS_KEY}`,
    ).toString("base64")}`;
    const url = `${stack.env.LAKEFS_ENDPOINT}/api/v1/repositories/${repo}/branches/main/import`;
    const started = await fetch(url, {
      method: "POST",
      headers: { authorization: auth, "content-type": "application/json" },
      body: JSON.stringify({
        paths: [{ path: source, destination, type: "common_prefix" }],
        commit: { message: "import" },
      }),
    });
    assert.equal(started.status, 202, await started.clone().text());
    const { id } = (await started.json()) as { id: string };
    const done = await waitFor(
      "the import to complete",
      async () => {
        const res = await fetch(`${url}?id=${encodeURIComponent(id)}`, {
          headers: { authorization: auth },
        });
        assert.equal(res.status, 200);
        const status = (await res.json()) as ImportStatus;
        if (status.error) throw new Error(`import failed: ${status.error.message}`);
        return status.completed ? status : undefined;
      },
      30_000,
    );
    assert.equal(done.ingested_objects, outsideObjects.length);
    assert.ok(done.commit?.id);
    return done.commit.id;
  }

  function imported(path: string): boolean {
    return path.startsWith("imported/");
  }

  it("the imported entries' bytes are in the outside bucket, which the destination's credentials can read", async () => {
    const paths = await commitPaths(stack, repo, commit);
    assert.deepEqual(
      [...paths.keys()].filter(imported).sort(),
      outsideObjects.map((o) => `imported/${o.key.slice("prefix/".length)}`).sort(),
    );
    for (const path of paths.keys()) {
      const stats = await stack.lakefs.statObject(repo, commit, path);
      if (imported(path)) {
        assert.equal(
          stats.physical_address,
          `s3://${outside}/prefix/${path.slice("imported/".length)}`,
        );
      } else {
        assert.ok(
          stats.physical_address.startsWith(`s3://${stack.env.STACK_LAKEFS_BUCKET}/${repo}/`),
          stats.physical_address,
        );
      }
    }
    // The mirror's own S3 client (stack.s3, as makeExporter uses it) could read them directly.
    assert.deepEqual(await readKey(stack, outside, "prefix/a.txt"), outsideObjects[0]?.body);
  });

  it("by default, objects stored outside the storage namespace are streamed through lakeFS", async () => {
    const bucket = await createBucket(stack);
    const result = await makeExporter(stack, repo, bucket, "default/").exportAllFromCommit(commit);
    assert.equal(result.status, "SUCCESS", result.failureLines.join("\n"));
    assert.equal(result.copied, outsideObjects.length + 1);
    assert.equal(result.streamedCopies, outsideObjects.length);
    assert.equal(result.serverSideCopies, 1, "only the object in the storage namespace");
    const importedBytes = outsideObjects.reduce((n, o) => n + o.body.length, 0);
    assert.equal(result.bytesStreamed, importedBytes);
    await assertMirrorEqual(stack, repo, commit, bucket, "default/");
    const keys = await listKeys(stack, bucket, "default/");
    assert.equal(keys.size - statusKeys(keys.keys()).length, outsideObjects.length + 1);
  });

  it("with the import location in serverSideSources, they are copied server-side", async () => {
    const bucket = await createBucket(stack);
    const result = await makeExporter(stack, repo, bucket, "allowed/", {
      serverSideSources: [`s3://${outside}/prefix/`],
    }).exportAllFromCommit(commit);
    assert.equal(result.status, "SUCCESS", result.failureLines.join("\n"));
    assert.equal(result.copied, outsideObjects.length + 1);
    assert.equal(result.serverSideCopies, outsideObjects.length + 1);
    assert.equal(result.streamedCopies, 0);
    assert.equal(result.bytesStreamed, 0);
    await assertMirrorEqual(stack, repo, commit, bucket, "allowed/");
  });

  it("an allowed location covers only its own prefix of the bucket", async () => {
    const bucket = await createBucket(stack);
    const result = await makeExporter(stack, repo, bucket, "narrow/", {
      serverSideSources: [`s3://${outside}/prefix/dir/`],
    }).exportAllFromCommit(commit);
    assert.equal(result.status, "SUCCESS", result.failureLines.join("\n"));
    const underDir = outsideObjects.filter((o) => o.key.startsWith("prefix/dir/")).length;
    assert.equal(underDir, 2);
    assert.equal(result.serverSideCopies, underDir + 1);
    assert.equal(result.streamedCopies, outsideObjects.length - underDir);
    await assertMirrorEqual(stack, repo, commit, bucket, "narrow/");
  });
});

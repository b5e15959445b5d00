import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import { ObjectCopier } from "../../src/export/copier.ts";
import type { CopyMode } from "../../src/export/copier.ts";
import { statusFileName } from "../../src/export/status-file.ts";
import { Lease } from "../../src/lease/lease.ts";
import { createS3Client } from "../../src/s3/client.ts";
import { S3Destination } from "../../src/s3/destination.ts";
import { commitObjects, listKeys, readKey, silentLogger } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const MiB = 1024 * 1024;
const TTL_MS = 6000;

/**
 * Uploads in parts take long enough for their holder to lose the lease in the middle. Nothing
 * appears at a key before CompleteMultipartUpload, so the Complete is the write the fence must
 * stop: the old holder's object must never land over what the new holder wrote.
 */
describe("lease fencing of uploads in parts", () => {
  let stack: Stack;
  const clients: S3Client[] = [];
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await stack.close();
  });

  /** A client of the stack's MinIO of the test's own, so that SDK middleware can watch it. */
  function ownClient(): S3Client {
    const s3 = createS3Client({
      endpoint: stack.env.AWS_ENDPOINT_URL,
      region: stack.env.AWS_REGION,
      credentials: {
        accessKeyId: stack.env.AWS_ACCESS_KEY_ID,
        secretAccessKey: stack.env.AWS_SECRET_ACCESS_KEY,
      },
    });
    clients.push(s3);
    return s3;
  }

  /**
   * Holder A copies an 11 MiB object in three parts. Once its third part is answered, and
   * before its Complete goes out, A's clock jumps past its lease and the test waits while B
   * takes the lease over (epoch 2) and writes the same key and a SUCCESS status file.
   */
  async function lostBeforeComplete(mode: Exclude<CopyMode, "auto">, partCommand: string) {
    const repo = await createRepo(stack, "fence");
    const bucket = await createBucket(stack);
    const commit = await commitObjects(stack, repo, "main", [
      { path: "big.bin", content: randomBytes(11 * MiB) },
    ]);
    let now = Date.now();
    const lease = (owner: string, dest: S3Destination) =>
      new Lease({
        dest,
        owner,
        repository: repo,
        branch: "main",
        ttlMs: TTL_MS,
        logger: silentLogger,
        now: () => now,
      });
    const s3 = ownClient();
    const destA = new S3Destination(
      s3,
      { bucket, prefix: "" },
      {
        multipartThresholdBytes: 6 * MiB,
        multipartPartSizeBytes: 5 * MiB,
        copyMultipartThresholdBytes: 6 * MiB,
        copyPartSizeBytes: 5 * MiB,
      },
    );
    const destB = new S3Destination(stack.s3, { bucket, prefix: "" });
    const a = lease("daemon-a", destA);
    const b = lease("daemon-b", destB);
    assert.equal(await a.ensure(), true);

    const bBytes = Buffer.from("written by the new holder");
    let parts = 0;
    let completes = 0;
    let tookOver = false;
    s3.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === "CompleteMultipartUploadCommand") completes++;
        const out = await next(args);
        if (context.commandName === partCommand && ++parts === 3) {
          now += TTL_MS + 1;
          assert.equal(await b.ensure(), true, "B takes the lease over");
          assert.equal(b.epoch, 2);
          await destB.putText("big.bin", bBytes.toString());
          await destB.putText(statusFileName(commit, "SUCCESS", new Date(now)), "done");
          tookOver = true;
        }
        return out;
      },
      { step: "initialize", name: "takeOverAfterLastPart" },
    );

    const copier = new ObjectCopier({
      lakefs: stack.lakefs,
      repository: repo,
      dest: destA,
      mode,
      logger: silentLogger,
      retry: { retries: 2, minTimeoutMs: 10, maxTimeoutMs: 20 },
      fence: () => a.assertHeld(),
    });
    const stats = await stack.lakefs.statObject(repo, commit, "big.bin");
    await assert.rejects(copier.copy(commit, stats), { code: "LM_LEASE_LOST" });

    assert.equal(tookOver, true, "the upload got as far as its last part");
    assert.equal(completes, 0, "A sent a CompleteMultipartUpload after losing its lease");
    assert.deepEqual(await readKey(stack, bucket, "big.bin"), bBytes, "B's object stands");
    const uploads = await stack.s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.deepEqual(uploads.Uploads ?? [], [], "A's upload was aborted, not left behind");
    assert.equal((await listKeys(stack, bucket)).size, 3, "big.bin, the lease, B's status file");
  }

  it("a server-side copy in parts whose holder's clock jumps past its lease after the last part never completes over the new holder's object", async () => {
    await lostBeforeComplete("server-side", "UploadPartCopyCommand");
  });

  it("a streamed multipart upload whose holder is paused past its lease after the last part never completes over the new holder's object", async () => {
    await lostBeforeComplete("stream", "UploadPartCommand");
  });
});

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { listStatusFiles, pruneStatusFiles, statusFileName } from "../../src/export/status-file.ts";
import type { ExportStatus } from "../../src/export/status-file.ts";
import { S3Destination } from "../../src/s3/destination.ts";
import { listKeys, statusKeys } from "../helpers/mirror.ts";
import { connectStack, createBucket } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const commit = (c: string) => c.repeat(64);
const MINUTE = 60_000;

/** Status files written by daemons whose clocks disagree, pruned as the daemon does. */
describe("status-file pruning across writers", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await stack.close();
  });

  async function setup() {
    const bucket = await createBucket(stack);
    const dest = new S3Destination(stack.s3, { bucket, prefix: "m/" });
    /** Writes a status file named by a writer whose clock reads `at`. */
    const write = async (c: string, status: ExportStatus, at: number) => {
      const name = statusFileName(commit(c), status, new Date(at));
      await dest.putText(name, "x");
      // The store's LastModified tells writes apart to the millisecond (MinIO) or second (S3).
      await sleep(20);
      return name;
    };
    const remaining = async () => statusKeys((await listKeys(stack, bucket, "m/")).keys()).sort();
    return { dest, write, remaining };
  }

  it("after a hand-over to a daemon whose clock is behind, pruning keeps the newest SUCCESS", async () => {
    const { dest, write, remaining } = await setup();
    const now = Date.now();
    // Daemon A, its clock ten minutes ahead, exports a and b.
    await write("a", "SUCCESS", now + 10 * MINUTE);
    const aLast = await write("b", "SUCCESS", now + 10 * MINUTE + 1000);
    // Daemon B takes the lane over and exports c, d and e (its FAILURE, then its SUCCESS).
    await write("c", "SUCCESS", now);
    await write("d", "FAILURE", now + 1000);
    const newest = await write("e", "SUCCESS", now + 2000);

    const listed = await listStatusFiles(dest, AbortSignal.timeout(10_000));
    await pruneStatusFiles(dest, 1, AbortSignal.timeout(10_000));
    assert.deepEqual(await remaining(), [newest], `A's ${aLast} outlived B's newest SUCCESS`);
    assert.equal(
      listed[0]?.path,
      newest,
      "the ledger store rebuilds from the newest by the store's clock",
    );
    assert.deepEqual(
      listed.map((f) => f.commitId[0]),
      ["e", "d", "c", "b", "a"],
    );
  });

  it("pruning never deletes the status file of the ledger's last successful commit", async () => {
    const { dest, write, remaining } = await setup();
    const now = Date.now();
    await write("a", "SUCCESS", now);
    const lane = await write("b", "SUCCESS", now + 1000);
    // Later files of the lane's FAILUREs, and a SUCCESS someone else wrote under the prefix.
    await write("c", "FAILURE", now + 2000);
    const other = await write("f", "SUCCESS", now + 3000);
    const failure = await write("c", "FAILURE", now + 4000);

    await pruneStatusFiles(dest, 1, AbortSignal.timeout(10_000), commit("b"));
    assert.deepEqual(await remaining(), [lane, other, failure].sort());
  });
});

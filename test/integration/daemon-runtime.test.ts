import assert from "node:assert/strict";
import { createServer } from "node:net";
import type { AddressInfo, Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import {
  commitEvent,
  laneStatus,
  postWebhook,
  spawnDaemon,
  startDaemon,
  waitFor,
  waitForExported,
  writeDaemonConfig,
} from "../helpers/daemon.ts";
import { commitObjects, listKeys, readKey } from "../helpers/mirror.ts";
import { startScriptedProxy } from "../helpers/scripted-proxy.ts";
import { connectStack, createBucket, createRepo, uniqueName } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

/** A loopback port nothing listens on: a Kafka broker that is away. */
function deadPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/**
 * A Kafka broker that takes connections and never answers (a hung broker, or a network that
 * drops packets): a client connecting to it waits for its request timeout.
 */
async function blackholeBroker(): Promise<{ address: string; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on("error", () => undefined);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** The daemon's runtime on the real stack: intake, scheduler and shutdown. */
describe("daemon runtime", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await stack.close();
  });
  const auth = () => ({ authorization: `Bearer ${stack.env.LAKEFSACTION_MIRROR_TOKEN}` });

  it("a webhook that cannot be forwarded to Kafka is exported here, even for a lane another daemon would own", async (t) => {
    const repo = await createRepo(stack, "fwd-down");
    const bucket = await createBucket(stack, "fwd-down");
    const broker = `127.0.0.1:${await deadPort()}`;
    const { daemon, url } = await startDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      forwardToKafka: true,
      extra: {
        // In a group, with Kafka away for less than a session: no lane is this daemon's yet.
        kafka: {
          brokers: [broker],
          topic: uniqueName("events"),
          groupId: uniqueName("group"),
          sessionTimeoutMs: 120_000,
          heartbeatIntervalMs: 3_000,
        },
      },
    });
    t.after(() => daemon.close());
    const c1 = await commitObjects(stack, repo, "main", [{ path: "a.txt", content: "a" }]);
    const sent = Date.now();
    const res = await postWebhook(url, commitEvent(repo, "main", c1), auth());
    // Well within the hook's timeout in deploy/lakefs-action.yaml (10 s).
    assert.ok(Date.now() - sent < 8_000, `answered after ${Date.now() - sent} ms`);
    const body = (await res.json()) as { result: string; lanes: number; reason?: string };
    assert.equal(res.status, 202, JSON.stringify(body));
    assert.deepEqual([body.result, body.lanes], ["accepted", 1]);
    await waitForExported(url, repo, "main", c1, 30_000);
    assert.equal((await readKey(stack, bucket, "a.txt")).toString(), "a");
  });

  it("shutdown keeps to its grace: no queued export starts after SIGTERM, leases are handed over, the process exits", async (t) => {
    const repo = await createRepo(stack, "grace");
    const slow = await createBucket(stack, "grace-slow");
    const queued = await createBucket(stack, "grace-queued");
    await stack.lakefs.createBranch(repo, "other", "main");
    await commitObjects(
      stack,
      repo,
      "main",
      Array.from({ length: 8 }, (_, i) => ({ path: `data/${i}.txt`, content: `m${i}` })),
    );
    await commitObjects(stack, repo, "other", [{ path: "o.txt", content: "o" }]);
    // Every data copy into the slow bucket takes a second and a half.
    const proxy = await startScriptedProxy(stack.env.AWS_ENDPOINT_URL, (method, path) =>
      method === "PUT" && path.startsWith(`/${slow}/data/`) ? { delayMs: 1500 } : undefined,
    );
    t.after(() => proxy.close());
    const broker = await blackholeBroker();
    t.after(() => broker.close());
    const graceSeconds = 2;
    const { file } = writeDaemonConfig(stack, {
      mirrors: [
        { repository: repo, branches: ["main"], destination: `s3://${slow}/` },
        { repository: repo, branches: ["other"], destination: `s3://${queued}/` },
      ],
      reconcileIntervalSeconds: 1,
      extra: {
        scheduler: { maxParallelLanes: 1, retryBaseSeconds: 1, retryMaxSeconds: 2 },
        export: { concurrency: 1 },
        shutdown: { graceSeconds },
        lease: { enabled: true, ttlSeconds: 60 },
        // A broker that never answers: its client is still connecting when the signal comes.
        kafka: {
          brokers: [broker.address],
          topic: uniqueName("events"),
          groupId: uniqueName("group"),
          sessionTimeoutMs: 6_000,
          heartbeatIntervalMs: 2_000,
        },
      },
    });
    const proc = spawnDaemon(stack, file, { AWS_ENDPOINT_URL: proxy.url });
    t.after(() => {
      proc.child.kill("SIGKILL");
    });
    const url = await proc.url;
    // Kafka being away for a session (6 s) makes this daemon work on every lane.
    await waitFor(
      "the slow lane to export",
      async () =>
        (await laneStatus(url)).find((l) => l.branch === "main" && l.state === "exporting"),
      30_000,
    );
    await waitFor("a copy to be slowed", () => Promise.resolve(proxy.delayed() > 0 || undefined));
    const other = (await laneStatus(url)).find((l) => l.branch === "other");
    assert.notEqual(other?.state, "exporting", "the second lane waits for the first");
    const signalled = Date.now();
    proc.child.kill("SIGTERM");
    const code = await proc.exited;
    const took = (Date.now() - signalled) / 1000;
    assert.ok(
      took < graceSeconds + 4,
      `shutdown took ${took.toFixed(1)} s, grace ${graceSeconds} s`,
    );
    assert.notEqual(code, null, "exited by itself, not killed");
    // The queued lane never started: nothing of it at its destination, not even a ledger.
    assert.deepEqual([...(await listKeys(stack, queued)).keys()], []);
    // The running lane's lease was handed over (marked expired) before the exit.
    const lease = JSON.parse(
      (await readKey(stack, slow, "_lakefs_mirror/lease.json")).toString(),
    ) as {
      expiresAt: string;
    };
    assert.ok(Date.parse(lease.expiresAt) <= Date.now(), `lease expires at ${lease.expiresAt}`);
  });

  it("branch churn does not grow the daemon: ended lanes leave /status, their metrics and their destinations", async (t) => {
    const repo = await createRepo(stack, "churn");
    const bucket = await createBucket(stack, "churn");
    await commitObjects(stack, repo, "main", [{ path: "x.txt", content: "x" }]);
    const { daemon, url } = await startDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["tmp-*"], destination: `s3://${bucket}/{branch}/` }],
    });
    t.after(() => daemon.close());
    const metricsLanes = async () =>
      (
        (await (await fetch(`${url}/metrics`)).text()).match(
          /^lakefs_mirror_lane_lag_seconds\{/gm,
        ) ?? []
      ).length;
    for (let round = 0; round < 3; round++) {
      const names = Array.from({ length: 5 }, (_, i) => `tmp-${round}-${i}`);
      for (const name of names) {
        await stack.lakefs.createBranch(repo, name, "main");
        const head = (await stack.lakefs.getBranch(repo, name)).commit_id;
        await postWebhook(url, commitEvent(repo, name, head, "post-create-branch"), auth());
        await waitForExported(url, repo, name, head, 30_000);
      }
      for (const name of names) {
        await stack.lakefs.deleteBranch(repo, name);
        await postWebhook(url, commitEvent(repo, name, "", "post-delete-branch"), auth());
      }
      await waitFor(
        "every lane to end",
        async () => (await laneStatus(url)).length === 0 || undefined,
      );
      assert.equal(await metricsLanes(), 0, "no metric series of ended lanes");
    }
    // A branch of the same name again is a lane again, exported from scratch.
    await stack.lakefs.createBranch(repo, "tmp-0-0", "main");
    const head = (await stack.lakefs.getBranch(repo, "tmp-0-0")).commit_id;
    await postWebhook(url, commitEvent(repo, "tmp-0-0", head, "post-create-branch"), auth());
    await waitForExported(url, repo, "tmp-0-0", head, 30_000);
    assert.equal((await laneStatus(url)).length, 1);
  });

  /**
   * A daemon in this process whose lakeFS and S3 are scripted proxies, with first-byte
   * deadlines long enough that a held answer is not retried.
   */
  async function daemonBehind(
    repo: string,
    bucket: string,
    branches: string[],
    destination: string,
    lakefs: string,
    s3: string,
  ) {
    return startDaemon(stack, {
      mirrors: [{ repository: repo, branches, destination }],
      env: { LAKEFS_ENDPOINT: lakefs, AWS_ENDPOINT_URL: s3 },
      extra: {
        lakefs: { firstByteTimeoutMs: 20_000 },
        s3: { firstByteTimeoutMs: 20_000 },
        scheduler: { maxParallelLanes: 1, retryBaseSeconds: 30, retryMaxSeconds: 60 },
      },
    });
  }

  it("an event recorded after its lane read HEAD stays pending once that export is done: it may be for a newer commit", async (t) => {
    const repo = await createRepo(stack, "pending-head");
    const bucket = await createBucket(stack, "pending-head");
    const c1 = await commitObjects(stack, repo, "main", [{ path: "a.txt", content: "1" }]);
    // The lane's first load of its ledger is held back: HEAD is read, the export not begun.
    let holdLedger = true;
    // 0: the first export runs; 1: its status file is written; 2: its ledger too, and from
    // then on nothing can be written (the next run fails before it covers anything).
    let phase = 0;
    const s3 = await startScriptedProxy(stack.env.AWS_ENDPOINT_URL, (method, path) => {
      if (
        method === "GET" &&
        holdLedger &&
        path.startsWith(`/${bucket}/_lakefs_mirror/ledger.json`)
      ) {
        holdLedger = false;
        return { delayAnswerMs: 3000 };
      }
      if (method !== "PUT" || !path.startsWith(`/${bucket}/`)) return undefined;
      if (phase === 2)
        return {
          refuse: {
            status: 403,
            body: "<Error><Code>AccessDenied</Code></Error>",
            contentType: "application/xml",
          },
        };
      if (path.startsWith(`/${bucket}/EXPORT_`)) phase = 1;
      else if (phase === 1 && path.startsWith(`/${bucket}/_lakefs_mirror/ledger.json`)) phase = 2;
      return undefined;
    });
    t.after(() => s3.close());
    const { daemon, url } = await daemonBehind(
      repo,
      bucket,
      ["main"],
      `s3://${bucket}/`,
      stack.env.LAKEFS_ENDPOINT,
      s3.url,
    );
    t.after(() => daemon.close());
    const lane = daemon.scheduler.lane({
      repository: repo,
      branch: "main",
      destination: `s3://${bucket}/`,
    });
    await postWebhook(url, commitEvent(repo, "main", c1), auth());
    await waitFor("the ledger load to be held", () => Promise.resolve(!holdLedger || undefined));
    // A commit and its webhook while the first export has HEAD = c1 and has not begun.
    const c2 = await commitObjects(stack, repo, "main", [{ path: "a.txt", content: "2" }]);
    const res = await postWebhook(url, commitEvent(repo, "main", c2), auth());
    assert.equal(res.status, 202);
    await waitFor("c1 exported", async () =>
      (await laneStatus(url)).find((l) => l.lastSuccessCommit === c1),
    );
    // c2's export cannot write; its event must still be pending, as its webhook was told.
    await waitFor("the second run to fail", async () =>
      (await laneStatus(url)).find((l) => l.state === "backoff"),
    );
    const pending = await daemon.checkpoint.pending(lane.id);
    assert.equal(pending?.commitId, c2, "the event of c2 is still pending");
  });

  it("a branch deleted and created again while its lane looks it up keeps the new branch's event pending", async (t) => {
    const repo = await createRepo(stack, "pending-end");
    const bucket = await createBucket(stack, "pending-end");
    await commitObjects(stack, repo, "main", [{ path: "x.txt", content: "x" }]);
    let holdLookup = false;
    let refusePuts = false;
    const branchPath = `/api/v1/repositories/${repo}/branches/tmp-1`;
    const lakefs = await startScriptedProxy(stack.env.LAKEFS_ENDPOINT, (method, path) => {
      if (method === "GET" && holdLookup && path.split("?")[0] === branchPath) {
        holdLookup = false;
        return { delayAnswerMs: 3000 };
      }
      return undefined;
    });
    const s3 = await startScriptedProxy(stack.env.AWS_ENDPOINT_URL, (method, path) =>
      refusePuts && method === "PUT" && path.startsWith(`/${bucket}/`)
        ? {
            refuse: {
              status: 403,
              body: "<Error><Code>AccessDenied</Code></Error>",
              contentType: "application/xml",
            },
          }
        : undefined,
    );
    t.after(() => Promise.all([lakefs.close(), s3.close()]));
    const { daemon, url } = await daemonBehind(
      repo,
      bucket,
      ["tmp-*"],
      `s3://${bucket}/{branch}/`,
      lakefs.url,
      s3.url,
    );
    t.after(() => daemon.close());
    await stack.lakefs.createBranch(repo, "tmp-1", "main");
    const first = (await stack.lakefs.getBranch(repo, "tmp-1")).commit_id;
    await postWebhook(url, commitEvent(repo, "tmp-1", first, "post-create-branch"), auth());
    await waitForExported(url, repo, "tmp-1", first, 30_000);

    // Deleted: the lane's lookup of it is answered 404, but the answer is held back, and the
    // branch is created again (with a new commit) before the lane hears it is gone.
    await stack.lakefs.deleteBranch(repo, "tmp-1");
    holdLookup = true;
    refusePuts = true;
    await postWebhook(url, commitEvent(repo, "tmp-1", "", "post-delete-branch"), auth());
    await waitFor("the lookup to be held", () => Promise.resolve(!holdLookup || undefined));
    await stack.lakefs.createBranch(repo, "tmp-1", "main");
    const again = await commitObjects(stack, repo, "tmp-1", [{ path: "y.txt", content: "y" }]);
    const res = await postWebhook(url, commitEvent(repo, "tmp-1", again), auth());
    assert.equal(res.status, 202);
    const id = JSON.stringify([repo, "tmp-1", `s3://${bucket}/tmp-1/`]);
    // The old lane ends; the new branch's run cannot write yet. Its event stays pending.
    await waitFor("the re-created branch's run to fail", async () =>
      (await laneStatus(url)).find((l) => l.branch === "tmp-1" && l.state === "backoff"),
    );
    const pending = await daemon.checkpoint.pending(id);
    assert.equal(pending?.commitId, again, "the new branch's event is still pending");
  });
});

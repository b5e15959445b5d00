import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { SUCCESS_TEXT } from "../../src/export/status-file.ts";
import {
  commitConcurrently,
  daemonAddress,
  holdStackLock,
  lakefsServer,
  mirroredKeys,
  Prng,
  seedFrom,
  sleep,
  statusFilesNewestFirst,
  tail,
} from "../helpers/crash.ts";
import {
  commitEvent,
  laneStatus,
  postWebhook,
  spawnDaemon,
  waitFor,
  waitForExported,
  writeDaemonConfig,
} from "../helpers/daemon.ts";
import type { DaemonProcess } from "../helpers/daemon.ts";
import { assertMirrorEqual, commitPaths, headKey, listKeys, readKey } from "../helpers/mirror.ts";
import type { SeedObject } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const ITERATIONS = 10;

describe("crash convergence", () => {
  let stack: Stack;
  const daemons: DaemonProcess[] = [];
  let lakefsStopped = false;
  let release: (() => Promise<void>) | undefined;

  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    for (const d of daemons) if (d.child.exitCode === null) d.child.kill("SIGKILL");
    // Other test files share this lakeFS: it is started again whatever happened.
    if (lakefsStopped) await lakefsServer("start");
    await release?.();
    await stack.close();
  });

  const spawn = (file: string) => {
    const d = spawnDaemon(stack, file);
    daemons.push(d);
    return d;
  };

  const landed = (bucket: string, key: string) =>
    headKey(stack, bucket, key).then(
      () => true,
      () => false,
    );

  /** What the destination holds besides lakefs-mirror's own records, against lakeFS's listing. */
  async function assertNoStrays(repo: string, commitId: string, bucket: string) {
    const mirrored = await mirroredKeys(stack, bucket);
    const expected = await commitPaths(stack, repo, commitId);
    assert.deepEqual([...mirrored.entries()].sort(), [...expected.entries()].sort());
  }

  /** The newest status file at the root is a SUCCESS for `commitId`, with the SUCCESS text. */
  async function assertNewestStatusIsSuccess(bucket: string, commitId: string) {
    const [newest] = statusFilesNewestFirst((await listKeys(stack, bucket)).keys());
    assert.ok(newest, "no status file at the destination");
    assert.equal(newest.commitId, commitId, `newest status file: ${newest.key}`);
    assert.equal(newest.status, "SUCCESS", `newest status file: ${newest.key}`);
    assert.equal((await readKey(stack, bucket, newest.key)).toString(), SUCCESS_TEXT);
  }

  it("kill -9 at random moments during exports converges byte for byte, with reverts while the daemon is down", async () => {
    const seed = seedFrom("CRASH_SEED");
    console.log(`crash-convergence seed ${seed} (replay: CRASH_SEED=${seed})`);
    const rng = new Prng(seed);
    const started = Date.now();
    const repo = await createRepo(stack, "crash");
    const bucket = await createBucket(stack);
    const mirrors = [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }];
    const scheduler = { maxParallelLanes: 4, retryBaseSeconds: 1, retryMaxSeconds: 2 };
    // Two configurations sharing one checkpoint store: server-side copies, and streaming.
    const auto = writeDaemonConfig(stack, {
      mirrors,
      reconcileIntervalSeconds: 1,
      extra: { scheduler, export: { concurrency: 4, copyMode: "auto" } },
    });
    const stream = writeDaemonConfig(stack, {
      mirrors,
      reconcileIntervalSeconds: 1,
      checkpointPath: auto.checkpointPath,
      extra: { scheduler, export: { concurrency: 4, copyMode: "stream" } },
    });

    let counter = 0;
    const newPath = () => {
      const n = String(counter++).padStart(6, "0");
      const dir = `p${rng.int(0, 7)}`;
      return rng.next() < 0.1 ? `${dir}/sub dir/ü-${n}.bin` : `${dir}/obj-${n}.txt`;
    };
    const object = (path: string, iteration: number, size: number): SeedObject => {
      const viaGateway = rng.next() < 0.5;
      return {
        path,
        content: rng.bytes(size),
        via: viaGateway ? "gateway" : "api",
        ...(viaGateway && rng.next() < 0.3
          ? { contentType: "text/plain", metadata: { iteration: String(iteration) } }
          : {}),
      };
    };

    // The lane's first export (a full listing: no base yet) is killed too, so the first kills
    // below hit a lane that has never completed an export (reconciling listings of a prefix the
    // lane found empty), and the later ones a lane with a base (diffs).
    const seedCommit = await commitConcurrently(
      stack,
      repo,
      "main",
      Array.from({ length: 300 }, () => object(newPath(), -1, rng.int(1, 2048))),
      [],
      "seed",
    );
    const history = [seedCommit];
    console.log(`seed commit made, ${Date.now() - started} ms`);
    const firstRun = spawn(auto.file);
    await daemonAddress(firstRun);
    await waitFor(
      "the first export to be under way",
      async () => (await mirroredKeys(stack, bucket)).size >= 20,
      30_000,
    );
    firstRun.child.kill("SIGKILL");
    await firstRun.exited;
    console.log(`first export killed, ${Date.now() - started} ms`);

    const kills: { iteration: number; when: string; mode: string; trigger: string }[] = [];
    for (let i = 0; i < ITERATIONS; i++) {
      const iterationStart = Date.now();
      // The change: adds, overwrites (half of the same size, half not) and deletes.
      const existing = await commitPaths(stack, repo, history.at(-1)!);
      const total = rng.int(150, 300);
      const deletes = rng.sample(
        [...existing.keys()],
        Math.min(Math.floor(total * 0.2), Math.floor(existing.size / 4)),
      );
      const gone = new Set(deletes);
      const overwritten = rng.sample(
        [...existing.keys()].filter((p) => !gone.has(p)),
        Math.min(Math.floor(total * 0.3), existing.size - deletes.length),
      );
      const adds = Array.from({ length: total - deletes.length - overwritten.length }, newPath);
      const puts = [
        ...overwritten.map((p) =>
          object(p, i, rng.next() < 0.5 ? Math.max(1, existing.get(p)!) : rng.int(1, 2048)),
        ),
        ...adds.map((p) => object(p, i, rng.int(1, 2048))),
      ];
      const head = await commitConcurrently(stack, repo, "main", puts, deletes, `iteration ${i}`);
      history.push(head);
      const commitMs = Date.now() - iterationStart;

      const mode = i % 3 === 2 ? "stream" : "auto";
      const proc = spawn(mode === "stream" ? stream.file : auto.file);
      const spawnedAt = Date.now();
      await daemonAddress(proc);
      const startMs = Date.now() - spawnedAt;
      // Kill either after a random delay, or once an added key some way into the diff has landed.
      let trigger: string;
      if (rng.next() < 0.5) {
        const delay = rng.int(100, 1500);
        trigger = `${delay} ms after start`;
        await sleep(delay);
      } else {
        const sorted = [...adds].sort();
        const marker = sorted[Math.floor(sorted.length * (0.05 + rng.next() * 0.3))]!;
        const extra = rng.int(0, 200);
        trigger = `${JSON.stringify(marker)} landed, +${extra} ms`;
        const deadline = Date.now() + 20_000;
        for (;;) {
          if (proc.child.exitCode !== null)
            assert.fail(`the daemon exited on its own:\n${tail(proc.output())}`);
          if (Date.now() > deadline) {
            trigger = `timeout waiting for ${JSON.stringify(marker)}`;
            break;
          }
          if (await landed(bucket, marker)) break;
          await sleep(25);
        }
        await sleep(extra);
      }
      assert.equal(
        proc.child.exitCode,
        null,
        `the daemon exited on its own:\n${tail(proc.output())}`,
      );
      proc.child.kill("SIGKILL");
      await proc.exited;

      // Where the kill landed: after the SUCCESS for HEAD, during its export (the attempt was
      // recorded, no status file yet), or before that export began.
      const keys = await listKeys(stack, bucket);
      const statuses = statusFilesNewestFirst(keys.keys()).filter((s) => s.commitId === head);
      let attempts: string[] = [];
      if (keys.has("_lakefs_mirror/ledger.json")) {
        const ledger = JSON.parse(
          (await readKey(stack, bucket, "_lakefs_mirror/ledger.json")).toString(),
        ) as { attempts: string[] };
        attempts = ledger.attempts;
      }
      const when = statuses.some((s) => s.status === "SUCCESS")
        ? "after SUCCESS"
        : statuses.length === 0 && attempts.includes(head)
          ? "mid-export"
          : statuses.length > 0
            ? "after FAILURE"
            : "before export";
      const kill = { iteration: i, when, mode, trigger, changes: total, commitMs, startMs };
      kills.push(kill);
      console.log(JSON.stringify({ ...kill, iterationMs: Date.now() - iterationStart }));

      // While the daemon is down: revert the newest commit, or hard-reset to an older one.
      if (i % 4 === 1) {
        await stack.lakefs.revert(repo, "main", head);
        history.push((await stack.lakefs.getBranch(repo, "main")).commit_id);
      } else if (i % 4 === 3) {
        const back = rng.int(1, Math.min(3, history.length - 1));
        const target = history[history.length - 1 - back]!;
        await stack.lakefs.hardReset(repo, "main", target);
        history.splice(history.length - back);
        assert.equal((await stack.lakefs.getBranch(repo, "main")).commit_id, target);
      }
    }

    const head = (await stack.lakefs.getBranch(repo, "main")).commit_id;
    assert.equal(head, history.at(-1));
    const restart = Date.now();
    const last = spawn(auto.file);
    const url = await daemonAddress(last);
    try {
      await waitForExported(url, repo, "main", head, 60_000);
    } catch (err) {
      console.log(JSON.stringify(await laneStatus(url)), tail(last.output()));
      throw err;
    }
    const convergedMs = Date.now() - restart;
    await assertMirrorEqual(stack, repo, head, bucket);
    await assertNoStrays(repo, head, bucket);
    await assertNewestStatusIsSuccess(bucket, head);

    const count = (w: string) => kills.filter((k) => k.when === w).length;
    console.log(
      JSON.stringify({
        seed,
        iterations: ITERATIONS,
        objectsAtHead: (await commitPaths(stack, repo, head)).size,
        killsWithoutSuccessForHead: kills.length - count("after SUCCESS"),
        killsMidExport: count("mid-export"),
        killsBeforeExport: count("before export"),
        killsAfterSuccess: count("after SUCCESS"),
        finalConvergenceMs: convergedMs,
        totalMs: Date.now() - started,
      }),
    );
    assert.ok(count("mid-export") >= 1, "no kill landed while an export was running");

    last.child.kill("SIGTERM");
    assert.equal(await last.exited, 0, tail(last.output()));
  });

  it("lakeFS stopped mid-export for longer than the retry budget, then started, converges without restarting the daemon", async () => {
    const repo = await createRepo(stack, "lakefs-down");
    const bucket = await createBucket(stack);
    const { file } = writeDaemonConfig(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      reconcileIntervalSeconds: 1,
      extra: {
        retry: { retries: 2, minTimeoutMs: 50, maxTimeoutMs: 200, maxRetryTimeMs: 1000 },
        lakefs: { connectTimeoutMs: 1000, headersTimeoutMs: 3000, bodyTimeoutMs: 3000 },
        scheduler: { maxParallelLanes: 4, retryBaseSeconds: 1, retryMaxSeconds: 2 },
        export: { concurrency: 2, copyMode: "stream" },
      },
    });
    const proc = spawn(file);
    const url = await daemonAddress(proc);
    const initial = (await stack.lakefs.getBranch(repo, "main")).commit_id;
    await waitForExported(url, repo, "main", initial);

    const rng = new Prng(7);
    const puts: SeedObject[] = Array.from({ length: 300 }, (_, i) => ({
      path: `bulk/${String(i).padStart(4, "0")}.bin`,
      content: rng.bytes(rng.int(1, 4096)),
      via: "api",
    }));
    const head = await commitConcurrently(stack, repo, "main", puts, [], "300 objects");
    const auth = { authorization: `Bearer ${stack.env.LAKEFSACTION_MIRROR_TOKEN}` };
    assert.equal((await postWebhook(url, commitEvent(repo, "main", head), auth)).status, 202);
    await waitFor(
      "the export to be under way",
      async () => (await mirroredKeys(stack, bucket)).size >= 10,
      30_000,
    );

    // Another test file's test/stack/up would rebuild the whole stack while lakeFS is away.
    release = await holdStackLock();
    lakefsStopped = true;
    await lakefsServer("stop");
    const stoppedAt = Date.now();
    const landedAtStop = (await mirroredKeys(stack, bucket)).size;
    const seen: string[] = [];
    let troubleReported = false;
    try {
      while (Date.now() - stoppedAt < 4_500) {
        const health = await fetch(`${url}/healthz`);
        assert.equal(health.status, 200, "the daemon must stay up while lakeFS is away");
        const lane = (await laneStatus(url)).find((l) => l.repository === repo);
        assert.ok(lane);
        const state = `${lane.state} lastError=${lane.lastError ?? "-"} failing=${lane.failingPaths}`;
        if (seen.at(-1) !== state) seen.push(state);
        if (lane.lastError !== null || lane.failingPaths > 0 || lane.state === "backoff")
          troubleReported = true;
        await sleep(250);
      }
      assert.equal(proc.child.exitCode, null, tail(proc.output()));
    } finally {
      await lakefsServer("start");
      lakefsStopped = false;
      await release();
      release = undefined;
    }
    const backAt = Date.now();
    const downMs = backAt - stoppedAt;
    const copyFailuresWhileDown = proc
      .output()
      .split("\n")
      .filter((l) => l.includes('"msg":"copy failed"')).length;

    try {
      await waitForExported(url, repo, "main", head, 60_000);
    } catch (err) {
      console.log(JSON.stringify(await laneStatus(url)), tail(proc.output()));
      throw err;
    }
    const convergedMs = Date.now() - backAt;
    const statuses = statusFilesNewestFirst((await listKeys(stack, bucket)).keys());
    console.log(
      JSON.stringify({
        landedAtStop,
        downMs,
        convergedAfterLakefsBackMs: convergedMs,
        laneWhileDown: seen,
        copyFailuresWhileDown,
        statusFiles: statuses.map((f) => `${f.commitId.slice(0, 8)} ${f.status}`),
      }),
    );
    for (const f of statuses.filter((x) => x.status === "FAILURE")) {
      const lines = (await readKey(stack, bucket, f.key)).toString().trimEnd().split("\n");
      console.log(`${f.key}: ${lines.length} lines, first: ${lines[0]}`);
    }
    assert.equal(proc.child.exitCode, null, "the daemon was not restarted");
    await assertMirrorEqual(stack, repo, head, bucket);
    await assertNoStrays(repo, head, bucket);
    await assertNewestStatusIsSuccess(bucket, head);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /^lakefs_mirror_exports_total\{result="(failure|error)"\} [1-9]/m);
    assert.ok(
      troubleReported,
      `the lane reported no error or failure while lakeFS was down for ${downMs} ms: ${seen.join(" | ")}`,
    );

    proc.child.kill("SIGTERM");
    assert.equal(await proc.exited, 0, tail(proc.output()));
  });
});

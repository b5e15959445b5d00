import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { TaskPool } from "../../src/export/pool.ts";
import { scrape, sample } from "../helpers/convergence.ts";
import { daemonAddress, sleep, tail } from "../helpers/crash.ts";
import {
  commitEvent,
  postWebhook,
  spawnDaemon,
  waitFor,
  waitForExported,
  writeDaemonConfig,
} from "../helpers/daemon.ts";
import type { DaemonProcess } from "../helpers/daemon.ts";
import {
  assertMirrorEqual,
  commitObjects,
  commitPaths,
  listKeys,
  readKey,
  statusKeys,
} from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const TTL_SECONDS = 4;
const LEASE_KEY = "_lakefs_mirror/lease.json";
const LEDGER_KEY = "_lakefs_mirror/ledger.json";
const BULK = 300;

/** The lease object as the briefing documents it, read straight from S3. */
interface LeaseObject {
  owner: string;
  epoch: number;
  expiresAt: string;
  renewedAt: string;
}

type LogLine = Record<string, unknown> & { msg?: string };

/** A daemon process with its address and its name in leases (from its own /status). */
interface RunningDaemon {
  proc: DaemonProcess;
  url: string;
  owner: string;
}

/** The JSON lines of a daemon's output (anything else it printed is skipped). */
function logLines(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {
      // A line cut off at the end of the output read so far.
    }
  }
  return out;
}

const isExportLine = (l: LogLine) => l.msg === "export finished" || l.msg === "export failed";

describe("split brain: two daemons, one destination", () => {
  let stack: Stack;
  const closers: (() => Promise<unknown>)[] = [];
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    for (const c of closers.reverse()) await c();
    await stack.close();
  });

  const auth = () => ({ authorization: `Bearer ${stack.env.LAKEFSACTION_MIRROR_TOKEN}` });

  /** A config file of its own (so a checkpoint store, so a lease owner, of its own). */
  function configFor(repo: string, bucket: string): string {
    return writeDaemonConfig(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
      reconcileIntervalSeconds: 1,
      extra: {
        lease: { enabled: true, ttlSeconds: TTL_SECONDS },
        scheduler: { maxParallelLanes: 4, retryBaseSeconds: 1, retryMaxSeconds: 2 },
        // One object at a time, twice over, through this process: an export of a few hundred
        // objects takes seconds, long enough to be paused or killed in the middle.
        export: { concurrency: 2, copyMode: "stream" },
      },
    }).file;
  }

  async function spawn(repo: string, bucket: string): Promise<RunningDaemon> {
    const proc = spawnDaemon(stack, configFor(repo, bucket));
    closers.push(async () => {
      if (proc.child.exitCode === null && proc.child.signalCode === null) {
        proc.child.kill("SIGKILL");
        await proc.exited;
      }
    });
    const url = await daemonAddress(proc);
    const status = (await (await fetch(`${url}/status`)).json()) as { owner: string };
    assert.ok(status.owner, "the daemon names itself in /status");
    return { proc, url, owner: status.owner };
  }

  async function readLease(bucket: string): Promise<LeaseObject | undefined> {
    const keys = await listKeys(stack, bucket, "_lakefs_mirror/");
    if (!keys.has("lease.json")) return undefined;
    return JSON.parse((await readKey(stack, bucket, LEASE_KEY)).toString()) as LeaseObject;
  }

  /** Every key at the destination with its ETag and LastModified: any write changes one. */
  async function inventory(bucket: string): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    let token: string | undefined;
    do {
      const res = await stack.s3.send(
        new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }),
      );
      for (const o of res.Contents ?? [])
        out.set(o.Key ?? "", `${o.ETag} ${o.LastModified?.toISOString()}`);
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  /** Last-modified times of every key, for telling which keys were written after an instant. */
  async function modifiedTimes(bucket: string): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    let token: string | undefined;
    do {
      const res = await stack.s3.send(
        new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }),
      );
      for (const o of res.Contents ?? []) out.set(o.Key ?? "", o.LastModified?.getTime() ?? 0);
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  const bulkPath = (i: number) => `bulk/${String(i).padStart(5, "0")}.txt`;

  /** Stages `BULK` objects on main without committing them (HEAD does not move yet). */
  async function stageBulk(repo: string): Promise<void> {
    const pool = new TaskPool(16);
    for (let i = 0; i < BULK; i++) {
      await pool.submit(async () => {
        await stack.lakefs.uploadObject(repo, "main", bulkPath(i), `bulk object ${i} `.repeat(8));
      });
    }
    await pool.drain();
  }

  /**
   * Makes `d` the lease holder: waits until the current lease has expired (nobody else is
   * running the lane: it is current everywhere), then a webhook for the HEAD it already holds
   * makes `d` run the lane, and so take the lease, finding nothing to write.
   */
  async function leaseTo(d: RunningDaemon, repo: string, bucket: string, head: string) {
    const held = await readLease(bucket);
    if (held) await sleep(Math.max(0, Date.parse(held.expiresAt) - Date.now()) + 200);
    assert.equal((await postWebhook(d.url, commitEvent(repo, "main", head), auth())).status, 202);
    return waitFor(
      `the lease to go to ${d.owner}`,
      async () => {
        const lease = await readLease(bucket);
        return lease?.owner === d.owner ? lease : undefined;
      },
      10_000,
    );
  }

  /** Commits the staged objects, tells `d`, and waits for some of them to land at the mirror. */
  async function startBigExport(d: RunningDaemon, repo: string, bucket: string) {
    const head = (await stack.lakefs.commit(repo, "main", { message: `${BULK} objects` })).id;
    assert.equal((await postWebhook(d.url, commitEvent(repo, "main", head), auth())).status, 202);
    await waitFor(
      "the big export to be under way",
      async () => (await listKeys(stack, bucket, "bulk/")).size >= 20,
      20_000,
    );
    return head;
  }

  /** What a mirror must hold: the commit's objects, by lakeFS's own listing. */
  async function assertExactKeys(repo: string, head: string, bucket: string): Promise<void> {
    const keys = await listKeys(stack, bucket);
    for (const k of [...keys.keys()])
      if (k.startsWith("_lakefs_mirror/") || statusKeys([k]).length > 0) keys.delete(k);
    assert.deepEqual(
      [...keys].sort(),
      [...(await commitPaths(stack, repo, head))].sort(),
      "the mirrored keys and sizes are the commit's",
    );
  }

  it("a daemon paused past its lease while another takes the lane writes nothing when it resumes, and the mirror stays equal to HEAD", async (t) => {
    const repo = await createRepo(stack, "split");
    const bucket = await createBucket(stack);
    const c1 = await commitObjects(stack, repo, "main", [{ path: "first.txt", content: "one" }]);

    const a = await spawn(repo, bucket);
    await waitForExported(a.url, repo, "main", c1, 20_000);
    const b = await spawn(repo, bucket);
    assert.notEqual(a.owner, b.owner, "separate checkpoint stores are separate lease owners");
    // B comes to the lane once A's lease has lapsed, takes it over and finds it current.
    await Promise.all([waitForExported(b.url, repo, "main", c1, 20_000), stageBulk(repo)]);

    const taken = await leaseTo(a, repo, bucket, c1);
    const c2 = await startBigExport(a, repo, bucket);
    a.proc.child.kill("SIGSTOP");
    const stoppedAt = Date.now();
    const leaseAtStop = await readLease(bucket);
    assert.equal(leaseAtStop?.owner, a.owner, "A holds the lease while it exports");
    assert.equal(leaseAtStop.epoch, taken.epoch);
    await sleep(300);
    const landed = await listKeys(stack, bucket, "bulk/");
    assert.ok(landed.size < BULK, `A had finished (${landed.size} keys) before it was paused`);
    assert.equal(
      statusKeys((await listKeys(stack, bucket)).keys()).filter((k) => k.includes(c2)).length,
      0,
    );

    // Past A's lease B takes the lane over, in a higher epoch, and brings it to HEAD.
    const bLease = await waitFor(
      "B to take the lease over",
      async () => {
        const lease = await readLease(bucket);
        return lease?.owner === b.owner && lease.epoch > leaseAtStop.epoch ? lease : undefined;
      },
      (TTL_SECONDS + 6) * 1000,
    );
    const takenOverAt = Date.now();
    await waitForExported(b.url, repo, "main", c2, 40_000);
    const bLines = logLines(b.proc.output());
    const takeLine = bLines.find((l) => l.msg === "lease taken" && l.epoch === bLease.epoch);
    assert.ok(takeLine, tail(b.proc.output()));
    assert.ok(
      Date.parse(String(takeLine.time)) >= Date.parse(leaseAtStop.expiresAt),
      `B took the lease at ${String(takeLine.time)}, before A's lease ran out at ${leaseAtStop.expiresAt}`,
    );
    const bExport = bLines.find((l) => l.msg === "export finished" && l.to === c2);
    assert.ok(bExport, tail(b.proc.output()));
    assert.equal(bExport.status, "SUCCESS");
    assert.equal(bExport.leaseEpoch, bLease.epoch);
    assert.ok(
      Date.parse(String(bExport.startedAt)) >= stoppedAt,
      "B's export began after A stopped",
    );
    const statusesAfterB = statusKeys((await listKeys(stack, bucket)).keys());
    assert.ok(statusesAfterB.includes(String(bExport.statusFile)), statusesAfterB.join("\n"));
    assert.match(String(bExport.statusFile), new RegExp(`^EXPORT_${c2}_.*_SUCCESS$`));

    // Change the paths A was copying when it was paused (the first ones it had not landed),
    // and some it had: a stale write by A would put older bytes there.
    let frontier = 0;
    while (frontier < BULK && landed.has(bulkPath(frontier).slice("bulk/".length))) frontier++;
    const changed: number[] = [];
    for (let i = Math.max(0, frontier - 5); i < Math.min(BULK, frontier + 25); i++) changed.push(i);
    const c3 = await commitObjects(
      stack,
      repo,
      "main",
      changed.map((i) => ({ path: bulkPath(i), content: `changed after the take-over ${i}` })),
    );
    assert.equal((await postWebhook(b.url, commitEvent(repo, "main", c3), auth())).status, 202);
    await waitForExported(b.url, repo, "main", c3, 20_000);
    const bThird = logLines(b.proc.output()).find(
      (l) => l.msg === "export finished" && l.to === c3,
    );
    assert.ok(bThird, tail(b.proc.output()));
    const written = await inventory(bucket);
    written.delete(LEASE_KEY);
    const ledger = (await readKey(stack, bucket, LEDGER_KEY)).toString();
    const statuses = statusKeys(written.keys()).sort();
    assert.ok(statuses.includes(String(bThird.statusFile)));

    // A wakes up long after its lease ran out.
    const resumeOffset = a.proc.output().length;
    a.proc.child.kill("SIGCONT");
    const resumedAt = Date.now();
    const afterResume = () => logLines(a.proc.output().slice(resumeOffset));
    await waitFor(
      "A to log its lease as lost",
      () => Promise.resolve(afterResume().some((l) => String(l.msg).startsWith("lease lost"))),
      3 * TTL_SECONDS * 1000,
    );
    await sleep(Math.max(0, resumedAt + 3 * TTL_SECONDS * 1000 - Date.now()));

    const aAfter = afterResume();
    assert.deepEqual(
      aAfter.filter(isExportLine),
      [],
      `A finished an export after it resumed:\n${a.proc.output().slice(resumeOffset)}`,
    );
    const lost = aAfter.find((l) => String(l.msg).startsWith("lease lost"));
    assert.match(String(lost?.err), /lease/);
    assert.equal(a.proc.child.exitCode, null, "A is still running");
    assert.equal((await fetch(`${a.url}/healthz`)).status, 200);

    const now = await inventory(bucket);
    now.delete(LEASE_KEY);
    assert.deepEqual(statusKeys(now.keys()).sort(), statuses, "the status files are B's");
    assert.equal((await readKey(stack, bucket, LEDGER_KEY)).toString(), ledger, "B's ledger");
    const rewritten = [...now].filter(([k, v]) => written.get(k) !== v).map(([k]) => k);
    const gone = [...written.keys()].filter((k) => !now.has(k));
    const evidence: string[] = [`A resumed at ${new Date(resumedAt).toISOString()}`];
    for (const k of rewritten) {
      const mirrored = (await readKey(stack, bucket, k)).toString();
      const res = await stack.gateway.send(
        new GetObjectCommand({ Bucket: repo, Key: `${c3}/${k}` }),
      );
      const head = await res.Body!.transformToString();
      evidence.push(
        `${k}: ${written.get(k)} -> ${now.get(k)}; holds "${mirrored}", HEAD "${head}"`,
      );
    }
    evidence.push(`A's log since it resumed:\n${tail(a.proc.output().slice(resumeOffset), 30)}`);
    assert.deepEqual(
      { rewritten, gone },
      { rewritten: [], gone: [] },
      `A wrote after it resumed:\n${evidence.join("\n")}`,
    );
    await assertMirrorEqual(stack, repo, c3, bucket);
    await assertExactKeys(repo, c3, bucket);

    t.diagnostic(
      `A paused with ${landed.size}/${BULK} objects landed; its lease (epoch ${leaseAtStop.epoch}) ran out ` +
        `${Date.parse(leaseAtStop.expiresAt) - stoppedAt} ms after the pause; B took over ` +
        `${Date.parse(String(takeLine.time)) - Date.parse(leaseAtStop.expiresAt)} ms after that ` +
        `(seen ${takenOverAt - stoppedAt} ms after the pause), exported ${c2.slice(0, 8)} in ` +
        `${String(bExport.durationMs)} ms; A logged the loss ` +
        `${Date.parse(String(lost?.time)) - resumedAt} ms after SIGCONT`,
    );

    a.proc.child.kill("SIGTERM");
    b.proc.child.kill("SIGTERM");
    assert.equal(await a.proc.exited, 0, tail(a.proc.output()));
    assert.equal(await b.proc.exited, 0, tail(b.proc.output()));
  });

  it("a lease whose owner died expires after the configured time and another daemon takes the lane over", async (t) => {
    const repo = await createRepo(stack, "dead-owner");
    const bucket = await createBucket(stack);
    const c1 = await commitObjects(stack, repo, "main", [{ path: "first.txt", content: "one" }]);

    const x = await spawn(repo, bucket);
    await waitForExported(x.url, repo, "main", c1, 20_000);
    const y = await spawn(repo, bucket);
    await Promise.all([waitForExported(y.url, repo, "main", c1, 20_000), stageBulk(repo)]);

    await leaseTo(x, repo, bucket, c1);
    const c2 = await startBigExport(x, repo, bucket);
    x.proc.child.kill("SIGKILL");
    await x.proc.exited;
    const killedAt = Date.now();
    const dead = await readLease(bucket);
    assert.equal(dead?.owner, x.owner);
    const expiresAt = Date.parse(dead.expiresAt);
    assert.ok(
      expiresAt - killedAt <= TTL_SECONDS * 1000,
      `the lease runs at most a TTL past its holder's last renewal (${expiresAt - killedAt} ms)`,
    );
    await sleep(200);
    const atKill = await modifiedTimes(bucket);
    assert.ok(
      statusKeys(atKill.keys()).every((k) => !k.includes(c2)),
      "X was killed before it finished",
    );
    const heldBefore = sample(await scrape(y.url), "lakefs_mirror_lease_events_total", {
      event: "held_elsewhere",
    });

    const yLease = await waitFor(
      "Y to take the lease over",
      async () => {
        const lease = await readLease(bucket);
        return lease?.owner === y.owner && lease.epoch > dead.epoch ? lease : undefined;
      },
      (TTL_SECONDS + 6) * 1000,
    );
    assert.equal(yLease.epoch, dead.epoch + 1);
    await waitForExported(y.url, repo, "main", c2, 40_000);

    // Y kept asking while the dead owner's lease ran, and was refused.
    const heldAfter = sample(await scrape(y.url), "lakefs_mirror_lease_events_total", {
      event: "held_elsewhere",
    });
    assert.ok(heldAfter > heldBefore, `Y tried the lane while X's lease ran (${heldAfter})`);
    // Every key Y wrote (new, or written again) was written after the lease expired.
    const final = await modifiedTimes(bucket);
    const byY = [...final].filter(([k, at]) => atKill.get(k) !== at && k !== LEASE_KEY);
    assert.ok(byY.length > 0);
    const firstWrite = Math.min(...byY.map(([, at]) => at));
    assert.ok(
      firstWrite >= expiresAt,
      `Y wrote at ${new Date(firstWrite).toISOString()}, before ${dead.expiresAt}`,
    );
    const yLines = logLines(y.proc.output());
    const takeLine = yLines.find((l) => l.msg === "lease taken" && l.epoch === yLease.epoch);
    assert.ok(takeLine, tail(y.proc.output()));
    assert.ok(Date.parse(String(takeLine.time)) >= expiresAt);
    const yExport = yLines.find((l) => l.msg === "export finished" && l.to === c2);
    assert.ok(yExport, tail(y.proc.output()));
    assert.equal(yExport.leaseEpoch, yLease.epoch);
    await assertMirrorEqual(stack, repo, c2, bucket);
    await assertExactKeys(repo, c2, bucket);

    t.diagnostic(
      `X's lease ran out ${expiresAt - killedAt} ms after the kill; Y took it ` +
        `${Date.parse(String(takeLine.time)) - expiresAt} ms after that and first wrote ` +
        `${firstWrite - expiresAt} ms after it (${byY.length} keys); refused ${heldAfter - heldBefore} ` +
        `times meanwhile; exported ${c2.slice(0, 8)} in ${String(yExport.durationMs)} ms`,
    );
    y.proc.child.kill("SIGTERM");
    assert.equal(await y.proc.exited, 0, tail(y.proc.output()));
  });
});

// (g) of npm run bench: one lane's big first export shared by the daemons of one consumer group
// (work items on Kafka), with a proxy in front of MinIO that holds every S3 answer ~40 ms, so
// one daemon at a low export.concurrency is bound by latency, not by the servers' CPU.
//   - the same 30,000-object commit exported to a new branch's empty prefix by 1, 2 and 3 daemons;
//   - 3 daemons, one worker killed with SIGKILL while its items run;
//   - 3 daemons under a group-wide request cap, with a 503 SlowDown storm on the writes for a
//     while: wall time, and the rate the proxy saw per second against the cap.
// Wall time runs from the branch's creation (the lane's start) to its SUCCESS status file. Copies
// are counted at the proxy, by key, so duplicates come from the store's side of the wire.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { TaskPool } from "../../src/export/pool.ts";
import { daemonEnv, writeDaemonConfig } from "../helpers/daemon.ts";
import { startFaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
import { createBucket, createRepo, uniqueName } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";
import type { Check, Measure } from "./report.ts";
import { binNodeFlags, cliEntry } from "./tools.ts";

const OBJECTS = Number(process.env.BENCH_SPLIT_OBJECTS ?? 30_000);
const LAG_MS = Number(process.env.BENCH_SPLIT_LAG_MS ?? 40);
const CONCURRENCY = Number(process.env.BENCH_SPLIT_CONCURRENCY ?? 8);
const CAP = Number(process.env.BENCH_SPLIT_CAP ?? 200);
/** Which rows run: `whole` (no work topic), `group` (1, 2, 3 daemons and the kill), `storm`. */
const ROWS = new Set((process.env.BENCH_SPLIT_ROWS ?? "whole,group,storm").split(","));
const STORM = { startS: 5, seconds: 15, rate: 0.3 };

export interface SplitBenchInput {
  stack: Stack;
  results: Measure[];
  checks: Check[];
  /** Lines for the results file below its tables. */
  notes: string[];
}

interface BenchDaemon {
  child: ChildProcess;
  output: () => string;
  url: Promise<string>;
  peakRssMb: () => number;
}

/** The per-key and per-second view of the S3 requests that passed the proxy. */
class Traffic {
  readonly puts = new Map<string, number>();
  /** Requests the daemons sent to lakeFS. */
  lakefs = 0;
  /** Requests by whole second since `t0`. */
  readonly perSecond: number[] = [];
  /** Of those, writes of mirrored objects (what the caps count, with their retries). */
  readonly writesPerSecond: number[] = [];
  /** The proxy's count of injected 503s, as last seen in each second. */
  readonly refusedBy: number[] = [];
  t0 = Date.now();

  readonly bucket: string;

  constructor(bucket: string) {
    this.bucket = bucket;
  }

  see(method: string, url: string): void {
    const s = Math.floor((Date.now() - this.t0) / 1000);
    if (s >= 0) this.perSecond[s] = (this.perSecond[s] ?? 0) + 1;
    if (method !== "PUT") return;
    const path = decodeURIComponent(url.split("?")[0] ?? "");
    const key = path.startsWith(`/${this.bucket}/`) ? path.slice(this.bucket.length + 2) : "";
    if (!key || key.includes("_lakefs_mirror/") || /(^|\/)EXPORT_[^/]*$/.test(key)) return;
    this.puts.set(key, (this.puts.get(key) ?? 0) + 1);
    if (s >= 0) this.writesPerSecond[s] = (this.writesPerSecond[s] ?? 0) + 1;
  }

  /** Notes the proxy's running count of injected 503s. */
  refusedSoFar(n: number): void {
    this.refusedBy[Math.floor((Date.now() - this.t0) / 1000)] = n;
  }

  /** The injected 503s of each second. */
  refusedPerSecond(): number[] {
    let last = this.refusedBy.find((n) => n !== undefined) ?? 0;
    return this.perSecond.map((_, s) => {
      const now = this.refusedBy[s] ?? last;
      const d = now - last;
      last = now;
      return d;
    });
  }

  /** Keys written under `prefix`, and the writes beyond the first of each. */
  copies(prefix: string): { keys: number; duplicates: number } {
    let keys = 0;
    let duplicates = 0;
    for (const [k, n] of this.puts)
      if (k.startsWith(prefix)) {
        keys++;
        duplicates += n - 1;
      }
    return { keys, duplicates };
  }

  reset(): void {
    this.puts.clear();
    this.lakefs = 0;
    this.perSecond.length = 0;
    this.writesPerSecond.length = 0;
    this.refusedBy.length = 0;
    this.t0 = Date.now();
  }
}

/** Where the daemons' logs go, one file each, printed at the start of (g). */
const logDir = mkdtempSync(join(tmpdir(), "lakefs-mirror-bench-split-"));
let spawned = 0;

function spawnBenchDaemon(
  stack: Stack,
  file: string,
  ends: { s3: string; lakefs: string },
): BenchDaemon {
  const child = spawn(process.execPath, [...binNodeFlags, cliEntry, "run", "--config", file], {
    env: {
      ...daemonEnv(stack),
      AWS_ENDPOINT_URL: ends.s3,
      LAKEFS_ENDPOINT: ends.lakefs,
      LOG_LEVEL: "info",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let resolveUrl: (u: string) => void = () => undefined;
  const url = new Promise<string>((r) => (resolveUrl = r));
  const log = createWriteStream(join(logDir, `daemon-${++spawned}.log`));
  child.once("exit", () => log.end());
  const onData = (d: Buffer) => {
    log.write(d);
    out += d.toString();
    if (out.length > 4_000_000) out = out.slice(-2_000_000);
    const m = /"address":"(http:\/\/[^"]+)".*daemon started/.exec(out);
    if (m?.[1]) resolveUrl(m[1]);
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  return {
    child,
    output: () => out,
    url,
    peakRssMb: () => {
      try {
        const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
        return Number(m?.[1] ?? 0) / 1024;
      } catch {
        return 0;
      }
    },
  };
}

async function until<T>(
  what: string,
  fn: () => T | undefined | Promise<T | undefined>,
  ms: number,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`bench (g): timed out waiting for ${what}`);
    await sleep(100);
  }
}

/**
 * A group of daemons sharing one commit topic, one work topic (unless `split` is false: then
 * every export runs whole in one daemon) and one consumer group.
 */
function group(
  stack: Stack,
  repo: string,
  bucket: string,
  ends: { s3: string; lakefs: string },
  opts: { cap?: number; split?: boolean } = {},
) {
  const { cap, split = true } = opts;
  const topics = { topic: uniqueName("bench-commits"), groupId: uniqueName("bench-g") };
  const work = uniqueName("bench-work");
  const members: BenchDaemon[] = [];
  const start = () => {
    const { file } = writeDaemonConfig(stack, {
      // Only the branches each row creates: main's own first export would run beside them.
      mirrors: [{ repository: repo, branches: ["run-*"], destination: `s3://${bucket}/{branch}/` }],
      reconcileIntervalSeconds: 1,
      extra: {
        kafka: {
          brokers: stack.env.KAFKA_BROKERS.split(","),
          ...topics,
          ...(split ? { workTopic: work } : {}),
          sessionTimeoutMs: 6_000,
          heartbeatIntervalMs: 1_000,
          partitions: 6,
        },
        lease: { ttlSeconds: 8 },
        export: {
          concurrency: CONCURRENCY,
          ...(cap ? { maxRequestsPerSecond: cap } : {}),
        },
        work: {
          splitAbove: 2_000,
          itemObjects: 1_000,
          initialItems: 64,
          itemsInParallel: 1,
          pollMs: 200,
          leaseViewMs: 2_000,
          itemTimeoutSeconds: 120,
        },
      },
    });
    const d = spawnBenchDaemon(stack, file, ends);
    members.push(d);
    return d;
  };
  const live = () =>
    members.filter((d) => d.child.exitCode === null && d.child.signalCode === null);
  /** Until every live member has joined the work group with all the others. */
  const formed = async () => {
    const n = live().length;
    await Promise.all(live().map((d) => d.url));
    await until(
      `${n} daemons in the work group`,
      () =>
        live().every((d) => d.output().includes(`"members":${n},`) || n === 1) ? true : undefined,
      90_000,
    );
    await sleep(3_000);
  };
  const stop = async () => {
    for (const d of members) if (d.child.exitCode === null) d.child.kill("SIGTERM");
    await Promise.race([
      Promise.all(members.map((d) => new Promise((r) => d.child.once("exit", r)))),
      sleep(20_000),
    ]);
    for (const d of members) if (d.child.exitCode === null) d.child.kill("SIGKILL");
  };
  return { start, live, formed, stop, members };
}

export async function benchSplit(b: SplitBenchInput): Promise<void> {
  const { stack } = b;
  const repo = await createRepo(stack, "bench-split");
  const bucket = await createBucket(stack, "bench-split");
  const size = (i: number) => 512 + (i % 5) * 256;
  const pathOf = (i: number) => `events/day=${i % 30}/hour=${i % 24}/part-${i}.parquet`;
  process.stderr.write(`(g) seeding ${OBJECTS} objects; daemon logs in ${logDir}\n`);
  const pool = new TaskPool(32);
  for (let i = 0; i < OBJECTS; i++)
    await pool.submit(() =>
      stack.lakefs
        .uploadObject(repo, "main", pathOf(i), randomBytes(size(i)))
        .then(() => undefined),
    );
  await pool.drain();
  const head = (await stack.lakefs.commit(repo, "main", { message: `seed ${OBJECTS}` })).id;
  const bytes = Array.from({ length: OBJECTS }, (_, i) => size(i)).reduce((s, n) => s + n, 0);

  const traffic = new Traffic(bucket);
  const proxy = await startFaultInjectingProxy(stack.env.AWS_ENDPOINT_URL, {
    flavor: "s3",
    seed: 7,
    eligible: (method) => method === "PUT",
    onRequest: (method, url) => {
      traffic.see(method, url);
      return undefined;
    },
  });
  proxy.setLag(LAG_MS);
  // lakeFS's side: requests counted, nothing held or refused.
  const lakefsProxy = await startFaultInjectingProxy(stack.env.LAKEFS_ENDPOINT, {
    flavor: "lakefs",
    onRequest: () => {
      traffic.lakefs++;
      return undefined;
    },
  });
  b.notes.push(
    `(g) ran its daemons with export.concurrency ${CONCURRENCY}, work.itemsInParallel 1, work.itemObjects 1000, work.splitAbove 2000, lease.ttlSeconds 8 (the Flags line above is for the other rows); each row's costs:`,
    "",
  );
  const scenario = `(g) first export, ${OBJECTS} objects, S3 +${LAG_MS} ms, concurrency ${CONCURRENCY}`;

  /** Creates the branch (a new lane) and waits for its SUCCESS; the mirror is then compared. */
  const exportBranch = async (branch: string, during?: (elapsedMs: number) => void) => {
    traffic.reset();
    const t0 = Date.now();
    await stack.lakefs.createBranch(repo, branch, head);
    let status: string | undefined;
    for (;;) {
      status = await statusOf(stack, bucket, `${branch}/`, head);
      if (status) break;
      if (Date.now() - t0 > 900_000) throw new Error(`bench (g): no status file for ${branch}`);
      during?.(Date.now() - t0);
      await sleep(50);
    }
    const seconds = (Date.now() - t0) / 1000;
    if (!status.endsWith("_SUCCESS")) throw new Error(`bench (g): ${branch} ended in ${status}`);
    await assertEqualToCommit(stack, repo, head, bucket, `${branch}/`);
    const requests = traffic.perSecond.reduce((n, m) => n + (m ?? 0), 0);
    return { seconds, requests, lakefs: traffic.lakefs, ...traffic.copies(`${branch}/`) };
  };

  const record = (
    tool: string,
    r: { seconds: number; requests: number; lakefs: number },
    daemons: BenchDaemon[],
  ) => {
    const seconds = r.seconds;
    b.notes.push(
      `- (g) ${tool}: ${(r.requests / OBJECTS).toFixed(3)} S3 requests and ${(r.lakefs / OBJECTS).toFixed(3)} lakeFS requests per object, everything the daemons sent while the row ran`,
    );
    // Wall time, and the highest peak RSS of the group's daemons (they share the CPU with the
    // servers, so CPU seconds are left out).
    const peakRssMb = Math.max(0, ...daemons.map((d) => d.peakRssMb()));
    b.results.push({ scenario, tool, objects: OBJECTS, bytes, seconds, peakRssMb });
    process.stderr.write(`${scenario} | ${tool}: ${seconds.toFixed(2)} s\n`);
  };
  const ends = { s3: proxy.url, lakefs: lakefsProxy.url };
  // The same export without a work topic: one daemon, not split (the baseline of the costs).
  const whole = group(stack, repo, bucket, ends, { split: false });
  if (ROWS.has("whole"))
    try {
      whole.start();
      await whole.formed();
      record(
        "lakefs-mirror, 1 daemon, no work topic (not split)",
        await exportBranch("run-0-whole"),
        whole.live(),
      );
    } finally {
      await whole.stop();
    }
  const plain = group(stack, repo, bucket, ends);
  const wall: number[] = [];
  if (ROWS.has("group"))
    try {
      for (const n of [1, 2, 3]) {
        while (plain.live().length < n) plain.start();
        await plain.formed();
        const r = await exportBranch(`run-${n}-daemons`);
        wall.push(r.seconds);
        record(`lakefs-mirror, ${n} daemon${n > 1 ? "s" : ""}`, r, plain.live());
        b.checks.push({
          label: `(g) duplicate copies, ${n} daemon${n > 1 ? "s" : ""}`,
          value: (100 * r.duplicates) / OBJECTS,
          target: 1,
          unit: "%",
          detail: `${r.duplicates} writes beyond the first of ${r.keys} keys, counted at the proxy; ${(r.requests / OBJECTS).toFixed(3)} S3 and ${(r.lakefs / OBJECTS).toFixed(3)} lakeFS requests per object in all`,
        });
      }
      b.checks.push({
        label: "(g) speedup, 3 daemons vs 1",
        value: wall[0]! / wall[2]!,
        target: 2.5,
        unit: "×",
        detail: `${wall[0]!.toFixed(1)} s / ${wall[2]!.toFixed(1)} s (2 daemons: ${(wall[0]! / wall[1]!).toFixed(2)}×)`,
      });

      // kill -9 of a worker (a daemon that is not the lane's owner) a third of the way through.
      const branch = "run-3-daemons-kill";
      let killed: string | undefined;
      const k = await exportBranch(branch, () => {
        if (killed || traffic.copies(`${branch}/`).keys < OBJECTS / 3) return;
        const lane = `"branch":"${branch}"`;
        const owner = plain
          .live()
          .find((d) => lineWith(d.output(), lane, "split export: work items issued"));
        const worker = plain
          .live()
          .find((d) => d !== owner && lineWith(d.output(), lane, "work item started"));
        if (!owner || !worker) return;
        worker.child.kill("SIGKILL");
        killed = `worker pid ${worker.child.pid} killed at ${traffic.copies(`${branch}/`).keys} objects`;
      });
      if (!killed) throw new Error("bench (g): the kill row never found a worker to kill");
      record("lakefs-mirror, 3 daemons, kill -9 of a worker", k, plain.live());
      b.checks.push({
        label: "(g) duplicate copies, 3 daemons, one killed",
        value: (100 * k.duplicates) / OBJECTS,
        target: 1,
        unit: "%",
        detail: `${killed}; SUCCESS, mirror equal to the commit; ${k.duplicates} writes beyond the first`,
      });
    } finally {
      await plain.stop();
    }

  // A 503 storm on the writes, under a group-wide request cap.
  const capped = group(stack, repo, bucket, ends, { cap: CAP });
  if (ROWS.has("storm"))
    try {
      for (let i = 0; i < 3; i++) capped.start();
      await capped.formed();
      let storm: "before" | "on" | "over" = "before";
      const r = await exportBranch("run-storm", (ms) => {
        traffic.refusedSoFar(proxy.injected().slowdown);
        if (storm === "before" && ms >= STORM.startS * 1000) {
          proxy.setRates({ slowdown: STORM.rate });
          storm = "on";
        } else if (storm === "on" && ms >= (STORM.startS + STORM.seconds) * 1000) {
          proxy.setRates({});
          storm = "over";
        }
      });
      proxy.setRates({});
      record(`lakefs-mirror, 3 daemons, cap ${CAP} writes/s, 503 storm`, r, capped.live());
      const rates = Array.from(traffic.perSecond, (n) => n ?? 0);
      const writes = Array.from(
        { length: rates.length },
        (_, s) => traffic.writesPerSecond[s] ?? 0,
      );
      // The first and last whole seconds are partial.
      const peak = Math.max(...writes.slice(1, -1));
      b.checks.push({
        label: `(g) peak object writes per second under the storm, cap ${CAP}/s`,
        value: peak,
        target: CAP * 1.25,
        unit: "req/s",
        detail: `busiest whole second of copies seen by the proxy, retries of refused ones included (all requests: ${Math.max(...rates.slice(1, -1))}/s); wall ${r.seconds.toFixed(1)} s`,
      });
      const refused = traffic.refusedPerSecond();
      b.notes.push(
        `(g) the storm row, second by second at the proxy: object writes / all requests, [503s injected] (SlowDown at ${STORM.rate * 100} % of writes from ${STORM.startS} s to ${STORM.startS + STORM.seconds} s, cap ${CAP} writes/s for the group):`,
        "",
        rates.map((n, s) => `${writes[s]}/${n}${refused[s] ? `[${refused[s]}]` : ""}`).join(" "),
      );
    } finally {
      await capped.stop();
      proxy.setRates({});
    }
  await proxy.close();
  await lakefsProxy.close();
}

/** A log line of `output` that has every one of `parts`. */
function lineWith(output: string, ...parts: string[]): boolean {
  return output.split("\n").some((l) => parts.every((p) => l.includes(p)));
}

/** The key of the commit's status file under `prefix`, if one is there. */
async function statusOf(stack: Stack, bucket: string, prefix: string, commit: string) {
  const res = await stack.s3.send(
    new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}EXPORT_${commit}_` }),
  );
  return res.Contents?.[0]?.Key;
}

/**
 * The mirror against lakeFS's own listing of the commit: the same keys, and for each the same
 * size and ETag (server-side copies of single-part objects keep it). Taken from lakeFS and S3
 * directly, not from lakefs-mirror's verify.
 */
async function assertEqualToCommit(
  stack: Stack,
  repo: string,
  commit: string,
  bucket: string,
  prefix: string,
) {
  const want = new Map<string, string>();
  for await (const page of stack.lakefs.listObjects(repo, commit, ""))
    for (const o of page) want.set(o.path, `${o.size_bytes} ${o.checksum}`);
  const got = new Map<string, string>();
  let token: string | undefined;
  do {
    const res = await stack.s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of res.Contents ?? []) {
      const key = (o.Key ?? "").slice(prefix.length);
      if (key.startsWith("_lakefs_mirror/") || /^EXPORT_[^/]*$/.test(key)) continue;
      got.set(key, `${o.Size} ${(o.ETag ?? "").replaceAll('"', "")}`);
    }
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
  } while (token);
  const wrong = [...want].filter(([k, v]) => got.get(k) !== v).map(([k]) => k);
  const extra = [...got.keys()].filter((k) => !want.has(k));
  if (wrong.length > 0 || extra.length > 0)
    throw new Error(
      `bench (g): mirror at ${prefix} differs from ${commit}: ${wrong.length} missing or wrong (${wrong.slice(0, 3).join(", ")}), ${extra.length} extra (${extra.slice(0, 3).join(", ")})`,
    );
}

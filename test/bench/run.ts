// npm run bench: lakefs-mirror against its peers on the local stack, as ratios from one run.
//   (a) full export of N small objects        vs rclone sync of the branch (lakeFS S3 gateway)
//   (b) incremental export of k changed of N  vs rclone sync of the same branch
//   (d) export --sync of an equal mirror, then of one with 1 % drift, vs rclone sync
//   (c) a few large objects, streamed and server-side, vs rclone sync and a raw GET+PUT baseline
// Each contender runs as its own process; peak RSS is its VmHWM, polled from /proc.
import { spawn, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { parseS3Uri } from "../../src/s3/uri.ts";
import { actionFor } from "../helpers/daemon.ts";
import { fileURLToPath } from "node:url";
import { TaskPool } from "../../src/export/pool.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const N = Number(process.env.BENCH_OBJECTS ?? 10_000);
const K = Number(process.env.BENCH_CHANGED ?? 10);
const LARGE_COUNT = Number(process.env.BENCH_LARGE_COUNT ?? 4);
const LARGE_MIB = Number(process.env.BENCH_LARGE_MIB ?? 96);
const root = fileURLToPath(new URL("../..", import.meta.url));
const cliEntry = `${root}dist/cli/bin.js`;

interface Measure {
  scenario: string;
  tool: string;
  objects: number;
  bytes: number;
  seconds: number;
  peakRssMb: number;
}

function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ seconds: number; peakRssMb: number }> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    let peakKb = 0;
    const poll = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
        if (m?.[1]) peakKb = Math.max(peakKb, Number(m[1]));
      } catch {
        // The process has just exited.
      }
    }, 20);
    child.on("exit", (code) => {
      clearInterval(poll);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (code !== 0)
        reject(new Error(`${cmd} ${args.join(" ")} exited ${code}:\n${out.slice(-3000)}`));
      else resolve({ seconds, peakRssMb: peakKb / 1024 });
    });
  });
}

async function seed(
  stack: Stack,
  repo: string,
  count: number,
  size: (i: number) => number,
  path: (i: number) => string,
) {
  const pool = new TaskPool(32);
  for (let i = 0; i < count; i++) {
    await pool.submit(async () => {
      await stack.lakefs.uploadObject(repo, "main", path(i), randomBytes(size(i)));
    });
  }
  await pool.drain();
  return (await stack.lakefs.commit(repo, "main", { message: `seed ${count}` })).id;
}

function rcloneEnv(stack: Stack): NodeJS.ProcessEnv {
  const e = stack.env;
  const remote = (name: string, endpoint: string, key: string, secret: string) => ({
    [`RCLONE_CONFIG_${name}_TYPE`]: "s3",
    [`RCLONE_CONFIG_${name}_PROVIDER`]: "Other",
    [`RCLONE_CONFIG_${name}_ENDPOINT`]: endpoint,
    [`RCLONE_CONFIG_${name}_ACCESS_KEY_ID`]: key,
    [`RCLONE_CONFIG_${name}_SECRET_ACCESS_KEY`]: secret,
    [`RCLONE_CONFIG_${name}_REGION`]: "us-east-1",
    [`RCLONE_CONFIG_${name}_FORCE_PATH_STYLE`]: "true",
  });
  // rclone 1.60 refuses to start with AWS_CA_BUNDLE set on a plain-HTTP endpoint; the stack is loopback HTTP.
  const { AWS_CA_BUNDLE: _bundle, ...inherited } = process.env;
  return {
    ...inherited,
    ...remote("LAKEFS", e.LAKEFS_ENDPOINT, e.LAKEFS_ACCESS_KEY_ID, e.LAKEFS_SECRET_ACCESS_KEY),
    ...remote("DEST", e.AWS_ENDPOINT_URL, e.AWS_ACCESS_KEY_ID, e.AWS_SECRET_ACCESS_KEY),
  };
}

const rcloneFlags = [
  "--transfers=32",
  "--checkers=32",
  "--s3-upload-concurrency=4",
  "--s3-chunk-size=16M",
  "-q",
];

async function main() {
  execFileSync("npm", ["run", "-s", "build"], { cwd: root, stdio: "inherit" });
  const stack = await connectStack();
  const env = { ...process.env, ...stack.env, LOG_LEVEL: "warn" };
  const renv = rcloneEnv(stack);
  const results: Measure[] = [];
  const latencies: number[] = [];
  const mirror = (args: string[]) =>
    run(process.execPath, [cliEntry, "export", ...args, "--concurrency=32"], env);

  // (a) + (b): N small objects, then K of them changed.
  const repo = await createRepo(stack, "bench");
  const bucket = await createBucket(stack, "bench");
  const small = (i: number) => 1024 + (i % 7) * 512;
  const pathOf = (i: number) => `data/part=${i % 100}/object-${i}.bin`;
  process.stderr.write(`seeding ${N} small objects…\n`);
  const c1 = await seed(stack, repo, N, small, pathOf);
  let smallBytes = 0;
  for (let i = 0; i < N; i++) smallBytes += small(i);

  const a1 = await mirror([repo, `s3://${bucket}/mirror/`, `--commit_id=${c1}`]);
  results.push({
    scenario: `(a) full, ${N} small`,
    tool: "lakefs-mirror",
    objects: N,
    bytes: smallBytes,
    ...a1,
  });
  const a2 = await run(
    "rclone",
    ["sync", `lakefs:${repo}/${c1}/`, `dest:${bucket}/rclone/`, ...rcloneFlags],
    renv,
  );
  results.push({
    scenario: `(a) full, ${N} small`,
    tool: "rclone sync",
    objects: N,
    bytes: smallBytes,
    ...a2,
  });

  const changed = Array.from({ length: K }, (_, j) => Math.floor((j * N) / K));
  for (const i of changed)
    await stack.lakefs.uploadObject(repo, "main", pathOf(i), randomBytes(small(i)));
  const c2 = (await stack.lakefs.commit(repo, "main", { message: `change ${K}` })).id;
  const kBytes = changed.reduce((s, i) => s + small(i), 0);
  const b1 = await mirror([
    repo,
    `s3://${bucket}/mirror/`,
    "--branch=main",
    `--prev_commit_id=${c1}`,
  ]);
  results.push({
    scenario: `(b) incremental, ${K} of ${N}`,
    tool: "lakefs-mirror",
    objects: K,
    bytes: kBytes,
    ...b1,
  });
  const b2 = await run(
    "rclone",
    ["sync", `lakefs:${repo}/${c2}/`, `dest:${bucket}/rclone/`, ...rcloneFlags],
    renv,
  );
  results.push({
    scenario: `(b) incremental, ${K} of ${N}`,
    tool: "rclone sync",
    objects: K,
    bytes: kBytes,
    ...b2,
  });

  // (d) the reconciling full export (--sync) against rclone sync, both on a mirror of c2 that is
  // already equal, then on one with 1 % drift (the same keys deleted, overwritten and added on
  // both tools' prefixes).
  const syncMirror = () => mirror([repo, `s3://${bucket}/mirror/`, `--commit_id=${c2}`, "--sync"]);
  const syncRclone = () =>
    run(
      "rclone",
      ["sync", `lakefs:${repo}/${c2}/`, `dest:${bucket}/rclone/`, ...rcloneFlags],
      renv,
    );
  const dEqual = `(d) --sync, ${N} equal`;
  results.push({
    scenario: dEqual,
    tool: "lakefs-mirror",
    objects: N,
    bytes: 0,
    ...(await syncMirror()),
  });
  results.push({
    scenario: dEqual,
    tool: "rclone sync",
    objects: N,
    bytes: 0,
    ...(await syncRclone()),
  });
  const drift = Math.max(3, Math.floor(N / 100));
  const driftKeys = Array.from({ length: drift }, (_, j) => Math.floor((j * N) / drift) + 1);
  for (const prefix of ["mirror/", "rclone/"]) {
    await Promise.all(
      driftKeys.map(async (i, j) => {
        const key = `${prefix}${pathOf(i % N)}`;
        if (j % 3 === 0) await stack.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
        else if (j % 3 === 1)
          await stack.s3.send(
            new PutObjectCommand({ Bucket: bucket, Key: key, Body: randomBytes(small(i % N) + 1) }),
          );
        else
          await stack.s3.send(
            new PutObjectCommand({ Bucket: bucket, Key: `${prefix}stray/${i}.bin`, Body: "x" }),
          );
      }),
    );
  }
  const dDrift = `(d) --sync, ${N} with ${drift} drifted`;
  results.push({
    scenario: dDrift,
    tool: "lakefs-mirror",
    objects: N,
    bytes: 0,
    ...(await syncMirror()),
  });
  results.push({
    scenario: dDrift,
    tool: "rclone sync",
    objects: N,
    bytes: 0,
    ...(await syncRclone()),
  });

  // (b) again through the daemon: lakeFS's post-commit action calls it, and the clock runs from
  // the commit call's return to the SUCCESS status file's appearance at the destination.
  const daemon = await startBenchDaemon(stack, repo, `s3://${bucket}/mirror/`, env);
  try {
    await daemon.install();
    const changedAgain = changed.map((i) => (i + 1) % N);
    for (const i of changedAgain)
      await stack.lakefs.uploadObject(repo, "main", pathOf(i), randomBytes(small(i)));
    const kLatency = await daemon.commitAndWait(`change ${K} again`);
    results.push({
      scenario: `(b) incremental, ${K} of ${N}`,
      tool: "lakefs-mirror daemon (commit→SUCCESS)",
      objects: K,
      bytes: kBytes,
      seconds: kLatency,
      peakRssMb: daemon.peakRssMb(),
    });
    for (let n = 0; n < 20; n++) {
      await stack.lakefs.uploadObject(repo, "main", `small-commits/${n}.txt`, `commit ${n}`);
      latencies.push(await daemon.commitAndWait(`small commit ${n}`));
    }
  } finally {
    await daemon.stop();
  }

  // (c) large objects.
  const lrepo = await createRepo(stack, "bench-large");
  const lbucket = await createBucket(stack, "bench-large");
  const largeSize = LARGE_MIB * 1024 * 1024;
  process.stderr.write(`seeding ${LARGE_COUNT} × ${LARGE_MIB} MiB…\n`);
  const lc = await seed(
    stack,
    lrepo,
    LARGE_COUNT,
    () => largeSize,
    (i) => `large/blob-${i}.bin`,
  );
  const lbytes = LARGE_COUNT * largeSize;
  const scenarioC = `(c) ${LARGE_COUNT} × ${LARGE_MIB} MiB`;
  const c0 = await run(
    process.execPath,
    [
      `${root}test/bench/raw-copy.mjs`,
      lrepo,
      lc,
      lbucket,
      "raw/",
      ...Array.from({ length: LARGE_COUNT }, (_, i) => `large/blob-${i}.bin`),
    ],
    env,
  );
  results.push({
    scenario: scenarioC,
    tool: "raw GET+PUT",
    objects: LARGE_COUNT,
    bytes: lbytes,
    ...c0,
  });
  const cs = await mirror([
    lrepo,
    `s3://${lbucket}/stream/`,
    `--commit_id=${lc}`,
    "--copy-mode=stream",
  ]);
  results.push({
    scenario: scenarioC,
    tool: "lakefs-mirror stream",
    objects: LARGE_COUNT,
    bytes: lbytes,
    ...cs,
  });
  const cc = await mirror([
    lrepo,
    `s3://${lbucket}/server/`,
    `--commit_id=${lc}`,
    "--copy-mode=server-side",
  ]);
  results.push({
    scenario: scenarioC,
    tool: "lakefs-mirror server-side",
    objects: LARGE_COUNT,
    bytes: lbytes,
    ...cc,
  });
  const cr = await run(
    "rclone",
    ["sync", `lakefs:${lrepo}/${lc}/`, `dest:${lbucket}/rclone/`, ...rcloneFlags],
    renv,
  );
  results.push({
    scenario: scenarioC,
    tool: "rclone sync",
    objects: LARGE_COUNT,
    bytes: lbytes,
    ...cr,
  });
  await stack.close();

  report(results, latencies);
}

function report(results: Measure[], latencies: number[]) {
  const peerOf = (m: Measure) =>
    results.find(
      (r) =>
        r.scenario === m.scenario &&
        (m.scenario.startsWith("(c)") ? r.tool === "raw GET+PUT" : r.tool === "rclone sync"),
    );
  const rows = results.map((m) => {
    const peer = peerOf(m);
    const ratio = peer && peer !== m ? `${(peer.seconds / m.seconds).toFixed(2)}×` : "—";
    return `| ${m.scenario} | ${m.tool} | ${(m.objects / m.seconds).toFixed(0)} | ${(m.bytes / 1e6 / m.seconds).toFixed(1)} | ${m.seconds.toFixed(2)} | ${m.peakRssMb.toFixed(0)} | ${ratio} |`;
  });
  const versions = [
    `node ${process.version}`,
    `rclone ${execFileSync("rclone", ["version"])
      .toString()
      .split("\n")[0]
      ?.replace(/^rclone /, "")}`,
    `lakeFS v1.86.0, MinIO RELEASE.2026-02-12 (test/stack)`,
    `${execFileSync("nproc").toString().trim()} cores`,
  ].join(", ");
  const text = [
    `Command: \`npm run bench\` (BENCH_OBJECTS=${N} BENCH_CHANGED=${K} BENCH_LARGE_COUNT=${LARGE_COUNT} BENCH_LARGE_MIB=${LARGE_MIB}), ${new Date().toISOString()}`,
    `Versions: ${versions}. lakefs-mirror runs with --concurrency=32; rclone with ${rcloneFlags.join(" ")}.`,
    "Ratio: the peer's wall time over this row's (above 1 = faster than the peer). Peer: rclone sync for (a), (b) and (d), the raw GET+PUT baseline for (c). (d) compares every object of the commit with the mirror (objects/s counts objects compared); drift: a third of the drifted keys deleted, a third overwritten with other bytes, a third added as strays.",
    "",
    "| scenario | tool | objects/s | MB/s | wall s | peak RSS MB | vs peer |",
    "|---|---|---|---|---|---|---|",
    ...rows,
    "",
    latencyLine(latencies),
    "",
  ].join("\n");
  process.stdout.write(text);
  mkdirSync(`${root}test/bench/results`, { recursive: true });
  writeFileSync(`${root}test/bench/results/latest.md`, text);
}

function latencyLine(latencies: number[]): string {
  if (latencies.length === 0) return "";
  const sorted = [...latencies].sort((a, b) => a - b);
  const median = sorted[Math.floor((sorted.length - 1) / 2)]! * 1000;
  const worst = sorted.at(-1)! * 1000;
  return `Daemon, ${latencies.length} small commits one after another (commit call returned → SUCCESS status file listed): median ${median.toFixed(0)} ms, worst ${worst.toFixed(0)} ms.`;
}

/** The daemon as its own process, fed by a real lakeFS action, with its peak RSS watched. */
async function startBenchDaemon(
  stack: Stack,
  repo: string,
  destination: string,
  env: NodeJS.ProcessEnv,
) {
  const dir = mkdtempSync(join(tmpdir(), "lakefs-mirror-bench-"));
  const configFile = join(dir, "config.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      mirrors: [{ repository: repo, branches: ["main"], destination }],
      server: { host: "127.0.0.1", port: 0 },
      webhook: { token: stack.env.LAKEFSACTION_MIRROR_TOKEN },
      checkpoint: { path: join(dir, "checkpoint") },
      reconcile: { intervalSeconds: 0 },
      export: { concurrency: 32 },
    }),
  );
  // Webhooks only: KAFKA_BROKERS from the stack would not turn Kafka on without a topic, but keep it out.
  const daemonEnv: NodeJS.ProcessEnv = { ...env };
  delete daemonEnv.KAFKA_BROKERS;
  const child = spawn(process.execPath, [cliEntry, "run", "--config", configFile], {
    env: { ...daemonEnv, LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.on("exit", (code) => reject(new Error(`daemon exited ${code}: ${out.slice(-2000)}`)));
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /"address":"([^"]+)".*daemon started/.exec(out);
      if (m?.[1]) resolve(m[1]);
    });
  });
  const loc = parseS3Uri(destination);
  const hasStatus = async (commitId: string) => {
    const res = await stack.s3.send(
      new ListObjectsV2Command({
        Bucket: loc.bucket,
        Prefix: `${loc.prefix}EXPORT_${commitId}_`,
        MaxKeys: 1,
      }),
    );
    return (res.KeyCount ?? 0) > 0;
  };
  const commitAndWait = async (message: string) => {
    const commit = await stack.lakefs.commit(repo, "main", { message });
    const started = process.hrtime.bigint();
    const deadline = Date.now() + 60_000;
    while (!(await hasStatus(commit.id))) {
      if (Date.now() > deadline)
        throw new Error(`no SUCCESS status file for ${commit.id}: ${out.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return Number(process.hrtime.bigint() - started) / 1e9;
  };
  return {
    install: async () => {
      await stack.lakefs.uploadObject(
        repo,
        "main",
        "_lakefs_actions/lakefs-mirror.yaml",
        actionFor(url),
      );
      await commitAndWait("install the lakefs-mirror action");
    },
    commitAndWait,
    peakRssMb: () => {
      const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
      return Number(m?.[1] ?? 0) / 1024;
    },
    stop: async () => {
      child.removeAllListeners("exit");
      child.kill("SIGTERM");
      await new Promise((r) => child.on("exit", r));
    },
  };
}

await main();

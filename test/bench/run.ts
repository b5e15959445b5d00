// npm run bench: lakefs-mirror against its peers and the object store's own limit, on the
// local stack, as ratios from one run. Every contender is a process of its own, measured by
// measure.py (wall time, CPU seconds, peak RSS from the kernel's accounting).
//   (a) full export of N small objects: rclone sync and mc mirror through the lakeFS S3
//       gateway; the limit is mc cp --recursive of the same physical objects inside MinIO.
//   (b) incremental, K of N changed, one-off CLI process (and its --help start-up), vs rclone
//       sync and mc mirror; then the daemon, commit → SUCCESS.
//   (e) a large diff, 10 % of N changed: the per-object rate against (a)'s, and vs rclone.
//   (d) export --sync of an equal mirror, then of one with 1 % drift, vs rclone sync.
//   (c) a few large objects in several shapes (BENCH_LARGE), streamed (through lakeFS and by
//       pre-signed reads) and server-side, vs rclone, two raw GET+PUT baselines (one stream, and
//       ranged reads into parallel parts) and mc cp's server-side copy (test/bench/large.ts).
//   (f) full exports of (a)'s objects and (c)'s into Azurite and fake-gcs-server, vs rclone's
//       azureblob and gcs backends to the same servers (test/bench/stores.ts).
//   (g) one lane's big first export shared by 1, 2 and 3 daemons of a consumer group, behind a
//       latency proxy; a worker killed; a 503 storm under a group-wide cap (test/bench/split.ts).
// BENCH_ONLY=a,b,e runs a subset (the N = 100,000 run skips the rest; BENCH_ONLY=g runs only (g)).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeleteObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { TaskPool } from "../../src/export/pool.ts";
import { parseS3Uri } from "../../src/s3/uri.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";
import { startBenchDaemon } from "./daemon.ts";
import { benchSplit } from "./split.ts";
import { benchStores } from "./stores.ts";
import { benchLarge, benchThrottled } from "./large.ts";
import { markdown, met, svgChart } from "./report.ts";
import type { Check, Measure } from "./report.ts";
import {
  binNodeFlags,
  cliEntry,
  mcEnv,
  measure,
  measureExport,
  rcloneCommand,
  rcloneEnv,
  rcloneFlags,
  repoRoot,
  versionOf,
} from "./tools.ts";
import type { Usage } from "./tools.ts";

const N = Number(process.env.BENCH_OBJECTS ?? 10_000);
const K = Number(process.env.BENCH_CHANGED ?? 10);
const LARGE_COUNT = Number(process.env.BENCH_LARGE_COUNT ?? 4);
const LARGE_MIB = Number(process.env.BENCH_LARGE_MIB ?? 96);
const ONLY = new Set((process.env.BENCH_ONLY ?? "a,b,c,d,e,f,g").split(",").map((s) => s.trim()));
const root = repoRoot;
const nodeFlags = binNodeFlags;
const resultsDir = `${root}test/bench/results`;

async function seed(
  stack: Stack,
  repo: string,
  indexes: Iterable<number>,
  size: (i: number) => number,
  path: (i: number) => string,
  message: string,
) {
  const pool = new TaskPool(32);
  for (const i of indexes) {
    await pool.submit(async () => {
      await stack.lakefs.uploadObject(repo, "main", path(i), randomBytes(size(i)));
    });
  }
  await pool.drain();
  return (await stack.lakefs.commit(repo, "main", { message })).id;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

async function main() {
  execFileSync("npm", ["run", "-s", "build"], { cwd: root, stdio: "inherit" });
  const stack = await connectStack();
  const mc = stack.env.MC;
  if (!mc)
    throw new Error("test/stack/up printed no MC: mc was not built (see test/stack/install)");
  const env = { ...process.env, ...stack.env, LOG_LEVEL: "warn" };
  const renv = rcloneEnv(stack.env);
  const rcloneBin = rcloneCommand(stack.env);
  const menv = mcEnv(stack.env, mkdtempSync(join(tmpdir(), "lakefs-mirror-bench-mc-")));
  const results: Measure[] = [];
  const checks: Check[] = [];
  const notes: string[] = [];
  const latencies: number[] = [];
  const mirror = (args: string[]) => measureExport(args, env);
  const rclone = (from: string, to: string) =>
    measure(rcloneBin.cmd, ["sync", from, to, ...rcloneFlags], renv);
  const mcMirror = (from: string, to: string) =>
    measure(mc, ["mirror", "--overwrite", "--remove", from, to], menv);
  const record = (scenario: string, tool: string, objects: number, bytes: number, u: Usage) => {
    const m = { scenario, tool, objects, bytes, ...u };
    results.push(m);
    process.stderr.write(`${scenario} | ${tool}: ${u.seconds.toFixed(2)} s\n`);
    return m;
  };
  const ratio = (label: string, target: number, ours: Measure, peer: Measure) =>
    checks.push({
      label,
      value: peer.seconds / ours.seconds,
      target,
      unit: "×",
      detail: `${peer.tool} ${peer.seconds.toFixed(2)} s / ${ours.tool} ${ours.seconds.toFixed(2)} s`,
    });

  if (ONLY.has("g")) await benchSplit({ stack, results, checks, notes });
  // (a)'s commit is the start of (b), (d), (e) and (f).
  if (["a", "b", "c", "d", "e", "f"].some((row) => ONLY.has(row))) {
    const repo = await createRepo(stack, "bench");
    const bucket = await createBucket(stack, "bench");
    const small = (i: number) => 1024 + (i % 7) * 512;
    const pathOf = (i: number) => `data/part=${i % 100}/object-${i}.bin`;
    const dest = (prefix: string) => `s3://${bucket}/${prefix}/`;
    process.stderr.write(`seeding ${N} small objects…\n`);
    const c1 = await seed(stack, repo, range(N), small, pathOf, `seed ${N}`);
    const smallBytes = range(N).reduce((s, i) => s + small(i), 0);

    // (a) Full export. The limit: the same physical objects copied inside MinIO by mc cp.
    const full = `(a) full, ${N} small`;
    const a1 = record(
      full,
      "lakefs-mirror",
      N,
      smallBytes,
      await mirror([repo, dest("mirror"), `--commit_id=${c1}`]),
    );
    const a2 = record(
      full,
      "rclone sync",
      N,
      smallBytes,
      await rclone(`lakefs:${repo}/${c1}/`, `dest:${bucket}/rclone/`),
    );
    const a3 = record(
      full,
      "mc mirror",
      N,
      smallBytes,
      await mcMirror(`lakefs/${repo}/${c1}/`, `dest/${bucket}/mcmirror/`),
    );
    const ns = parseS3Uri((await stack.lakefs.getRepository(repo)).storage_namespace);
    const a4 = record(
      full,
      "mc cp -r, server-side in MinIO (the limit)",
      N,
      smallBytes,
      await measure(
        mc,
        ["cp", "--recursive", `dest/${ns.bucket}/${ns.prefix}data/`, `dest/${bucket}/mccp/`],
        menv,
      ),
    );
    ratio("(a) full vs rclone sync", 3, a1, a2);
    ratio("(a) full vs mc mirror", 2, a1, a3);
    ratio("(a) full vs MinIO's own copy (mc cp)", 0.8, a1, a4);

    // (b) K changed: a one-off CLI process from start to exit, then the daemon.
    const changed = range(K).map((j) => Math.floor((j * N) / K));
    const c2 = await seed(stack, repo, changed, small, pathOf, `change ${K}`);
    const kBytes = changed.reduce((s, i) => s + small(i), 0);
    const incr = `(b) incremental, ${K} of ${N}`;
    if (ONLY.has("b")) {
      const b1 = record(
        incr,
        "lakefs-mirror (CLI process)",
        K,
        kBytes,
        await mirror([repo, dest("mirror"), "--branch=main", `--prev_commit_id=${c1}`]),
      );
      const b2 = record(
        incr,
        "rclone sync",
        K,
        kBytes,
        await rclone(`lakefs:${repo}/${c2}/`, `dest:${bucket}/rclone/`),
      );
      record(
        incr,
        "mc mirror",
        K,
        kBytes,
        await mcMirror(`lakefs/${repo}/${c2}/`, `dest/${bucket}/mcmirror/`),
      );
      ratio("(b) incremental CLI vs rclone sync", 30, b1, b2);
      const helps: number[] = [];
      for (let i = 0; i < 5; i++)
        helps.push(
          (await measure(process.execPath, [...nodeFlags, cliEntry, "--help"], env)).seconds,
        );
      checks.push({
        label: "CLI start-up (--help, median of 5)",
        value: helps.sort((x, y) => x - y)[2]!,
        target: 0.25,
        unit: "s",
        detail: `node ${cliEntry.slice(root.length)} --help`,
      });
    }

    // (e) A large diff: 10 % of N changed, against the full export's per-object rate.
    let head = c2;
    if (ONLY.has("e")) {
      const many = range(Math.floor(N / 10)).map((j) => j * 10 + 3);
      const c3 = await seed(stack, repo, many, small, pathOf, `change ${many.length}`);
      const eBytes = many.reduce((s, i) => s + small(i), 0);
      const large = `(e) diff, ${many.length} of ${N} changed`;
      const e1 = record(
        large,
        "lakefs-mirror (CLI process)",
        many.length,
        eBytes,
        await mirror([repo, dest("mirror"), "--branch=main", `--prev_commit_id=${head}`]),
      );
      const e2 = record(
        large,
        "rclone sync",
        many.length,
        eBytes,
        await rclone(`lakefs:${repo}/${c3}/`, `dest:${bucket}/rclone/`),
      );
      checks.push({
        label: "(e) large diff per-object rate vs (a)",
        value: e1.objects / e1.seconds / (a1.objects / a1.seconds),
        target: 0.8,
        unit: "×",
        detail: `${(e1.objects / e1.seconds).toFixed(0)} vs ${(a1.objects / a1.seconds).toFixed(0)} objects/s`,
      });
      ratio("(e) large diff vs rclone sync", 10, e1, e2);
      head = c3;
    }

    // (d) The reconciling full export on an equal mirror, then on one with 1 % drift.
    if (ONLY.has("d")) {
      const sync = () => mirror([repo, dest("mirror"), `--commit_id=${head}`, "--sync"]);
      const syncRclone = () => rclone(`lakefs:${repo}/${head}/`, `dest:${bucket}/rclone/`);
      const dEqual = `(d) --sync, ${N} equal`;
      record(dEqual, "lakefs-mirror", N, 0, await sync());
      record(dEqual, "rclone sync", N, 0, await syncRclone());
      const drift = Math.max(3, Math.floor(N / 100));
      const driftKeys = range(drift).map((j) => Math.floor((j * N) / drift) + 1);
      for (const prefix of ["mirror/", "rclone/"]) {
        await Promise.all(
          driftKeys.map(async (i, j) => {
            const key = `${prefix}${pathOf(i % N)}`;
            if (j % 3 === 0)
              await stack.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
            else if (j % 3 === 1)
              await stack.s3.send(
                new PutObjectCommand({
                  Bucket: bucket,
                  Key: key,
                  Body: randomBytes(small(i % N) + 1),
                }),
              );
            else
              await stack.s3.send(
                new PutObjectCommand({ Bucket: bucket, Key: `${prefix}stray/${i}.bin`, Body: "x" }),
              );
          }),
        );
      }
      const dDrift = `(d) --sync, ${N} with ${drift} drifted`;
      record(dDrift, "lakefs-mirror", N, 0, await sync());
      record(dDrift, "rclone sync", N, 0, await syncRclone());
    }

    // The daemon: lakeFS's post-commit action calls it; commit call returned → SUCCESS listed.
    if (ONLY.has("b")) {
      const daemon = await startBenchDaemon(
        [...nodeFlags, cliEntry],
        stack,
        repo,
        dest("mirror"),
        env,
      );
      try {
        await daemon.install();
        const again = changed.map((i) => (i + 1) % N);
        for (const i of again)
          await stack.lakefs.uploadObject(repo, "main", pathOf(i), randomBytes(small(i)));
        results.push({
          scenario: incr,
          tool: "lakefs-mirror daemon (commit→SUCCESS)",
          objects: K,
          bytes: kBytes,
          seconds: await daemon.commitAndWait(`change ${K} again`),
          peakRssMb: daemon.peakRssMb(),
        });
        for (let n = 0; n < 20; n++) {
          await stack.lakefs.uploadObject(repo, "main", `small-commits/${n}.txt`, `commit ${n}`);
          latencies.push(await daemon.commitAndWait(`small commit ${n}`));
        }
      } finally {
        await daemon.stop();
      }
      const sorted = [...latencies].sort((x, y) => x - y);
      checks.push({
        label: "daemon, 20 small commits: median commit → SUCCESS",
        value: sorted[Math.floor((sorted.length - 1) / 2)]! * 1000,
        target: 50,
        unit: "ms",
        detail: `worst ${(sorted.at(-1)! * 1000).toFixed(0)} ms`,
      });
    }

    // The large objects of (c) and (f), seeded once.
    const size = LARGE_MIB * 1024 * 1024;
    const lbytes = LARGE_COUNT * size;
    let large: Promise<{ repo: string; commit: string }> | undefined;
    const largeSet = () =>
      (large ??= (async () => {
        const repo = await createRepo(stack, "bench-large");
        process.stderr.write(`seeding ${LARGE_COUNT} × ${LARGE_MIB} MiB…\n`);
        const commit = await seed(
          stack,
          repo,
          range(LARGE_COUNT),
          () => size,
          (i) => `large/blob-${i}.bin`,
          "seed large",
        );
        return { repo, commit };
      })());

    // (c) Large objects, in several shapes (test/bench/large.ts).
    if (ONLY.has("c")) {
      const input = {
        stack,
        cliEnv: env,
        rclone: { cmd: rcloneBin.cmd, env: renv },
        mc: { cmd: mc, env: menv },
        record,
        ratio,
      };
      await benchLarge(input);
      await benchThrottled(input);
    }
    // (f) Full exports into Azurite and fake-gcs-server, small and large, vs rclone.
    if (ONLY.has("f")) {
      const l = await largeSet();
      await benchStores({
        env: stack.env,
        cliEnv: env,
        rclone: rcloneBin.cmd,
        small: { repo, commit: c1, objects: N, bytes: smallBytes },
        large: {
          ...l,
          objects: LARGE_COUNT,
          bytes: lbytes,
          label: `${LARGE_COUNT} × ${LARGE_MIB} MiB`,
        },
        record,
        ratio,
      });
    }
  }
  await stack.close();

  // The memory target is about many objects; streaming large ones holds parts by design
  // (export.multipartQueueSize × part size per upload), so (c) and (f)'s large rows are left out.
  const ours = results.filter(
    (m) =>
      m.tool.startsWith("lakefs-mirror") &&
      !m.scenario.includes(" MiB") &&
      !m.scenario.startsWith("(g)"),
  );
  if (ours.length > 0)
    checks.push({
      label: `peak RSS of lakefs-mirror, N = ${N}`,
      value: Math.max(...ours.map((m) => m.peakRssMb)),
      target: 200,
      unit: "MB",
      detail: `the highest of its (a), (b), (d), (e) and (f) small rows`,
    });
  const header = [
    `Command: \`${commandLine()}\`, ${new Date().toISOString()}`,
    `Versions: node ${process.version}, ${versionOf(rcloneBin.cmd, ["version"])} (${rcloneBin.origin}), ${versionOf(mc, ["--version"]).replace("DEVELOPMENT.GOGET", "built from its Go module")}, lakeFS v1.86.0, MinIO RELEASE.2026-02-12 (test/stack); ${execFileSync("nproc").toString().trim()} cores shared by the servers and the contenders.`,
    `Flags: lakefs-mirror --concurrency=32 (node ${nodeFlags.join(" ")}, as its bin's first line); rclone ${rcloneFlags.join(" ")}; mc mirror --overwrite --remove. CPU seconds are the contender's own process (user + system), not the servers'. Ratios: the peer's wall time over ours (above 1 = faster than the peer).`,
  ];
  const text = markdown(header, results, checks, notes);
  process.stdout.write(text);
  mkdirSync(resultsDir, { recursive: true });
  const name = process.env.BENCH_RESULT ?? (N === 10_000 ? "latest" : `n${N}`);
  writeFileSync(join(resultsDir, `${name}.md`), text);
  writeFileSync(
    join(resultsDir, `${name}.svg`),
    svgChart(`lakefs-mirror vs peers, N = ${N} (bar: measured ratio, tick: target)`, checks),
  );
  const missed = checks.filter((c) => !met(c)).map((c) => c.label);
  if (missed.length > 0) process.stderr.write(`targets missed: ${missed.join("; ")}\n`);
}

function commandLine(): string {
  const vars = [
    "BENCH_OBJECTS",
    "BENCH_CHANGED",
    "BENCH_LARGE_COUNT",
    "BENCH_LARGE_MIB",
    "BENCH_LARGE",
    "BENCH_THROTTLE_MBPS",
    "BENCH_THROTTLED_MIB",
    "BENCH_ONLY",
    "BENCH_RESULT",
    "BENCH_SPLIT_OBJECTS",
    "BENCH_SPLIT_LAG_MS",
    "BENCH_SPLIT_CONCURRENCY",
    "BENCH_SPLIT_CAP",
  ]
    .filter((v) => process.env[v])
    .map((v) => `${v}=${process.env[v]}`);
  return [...vars, "npm run bench"].join(" ");
}

await main();

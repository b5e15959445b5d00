// The bench's (c) rows: whole exports of a few large objects, for each of several shapes
// (BENCH_LARGE, default 4x96,16x256,1x1024: count × MiB), streamed and server-side, against
//   - rclone sync through the lakeFS S3 gateway (GET from the gateway, PUT to MinIO: it
//     streams, with its own ranged reads and parallel parts);
//   - the raw baselines: one GET piped into one upload per object (raw-copy.mjs), and ranged
//     GETs feeding parallel parts with our parallelism (raw-parallel.mjs);
//   - mc cp --recursive of the same physical objects inside MinIO (the store's own copy);
//   - lakefs-mirror's fixed cost: the same CLI exporting a commit of one tiny object;
// then one object over a link where each connection is the limit (benchThrottled).
// Each shape gets a bucket of its own, emptied when its rows are done (16 × 256 MiB is 4 GiB a
// contender).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { parseS3Uri } from "../../src/s3/uri.ts";
import { TaskPool } from "../../src/export/pool.ts";
import { startFaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
import { createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";
import type { Measure } from "./report.ts";
import { measure, measureExport, repoRoot, rcloneFlags } from "./tools.ts";
import type { Usage } from "./tools.ts";

const MiB = 1024 * 1024;

export interface LargeBenchInput {
  stack: Stack;
  cliEnv: NodeJS.ProcessEnv;
  rclone: { cmd: string; env: NodeJS.ProcessEnv };
  mc: { cmd: string; env: NodeJS.ProcessEnv };
  record: (scenario: string, tool: string, objects: number, bytes: number, u: Usage) => Measure;
  ratio: (label: string, target: number, ours: Measure, peer: Measure) => void;
}

export function largeShapes(spec = process.env.BENCH_LARGE ?? "4x96,16x256,1x1024") {
  return spec.split(",").map((s) => {
    const m = /^(\d+)x(\d+)$/.exec(s.trim());
    if (!m) throw new Error(`BENCH_LARGE: "${s}" is not <count>x<MiB>`);
    return { count: Number(m[1]), mib: Number(m[2]) };
  });
}

/** The two raw baselines on `keys` (objects of `size` bytes) of a commit, into `bucket`. */
const rawOne = (
  env: NodeJS.ProcessEnv,
  repo: string,
  commit: string,
  bucket: string,
  keys: string[],
) =>
  measure(
    process.execPath,
    [`${repoRoot}test/bench/raw-copy.mjs`, repo, commit, bucket, "raw/", ...keys],
    env,
  );
const rawParallel = (
  env: NodeJS.ProcessEnv,
  repo: string,
  commit: string,
  bucket: string,
  keys: string[],
  size: number,
) =>
  measure(
    process.execPath,
    [
      `${repoRoot}test/bench/raw-parallel.mjs`,
      repo,
      commit,
      bucket,
      "rawp/",
      ...keys.map((k) => `${k}:${size}`),
    ],
    { ...env, PART_MIB: "16", PARTS: "4" },
  );

async function seedLarge(stack: Stack, count: number, mib: number) {
  const repo = await createRepo(stack, `bench-${count}x${mib}`);
  process.stderr.write(`seeding ${count} × ${mib} MiB…\n`);
  // Two at a time: each upload holds its object in memory.
  const pool = new TaskPool(2);
  for (let i = 0; i < count; i++)
    await pool.submit(() =>
      stack.lakefs
        .uploadObject(repo, "main", `large/blob-${i}.bin`, randomBytes(mib * MiB))
        .then(() => undefined),
    );
  await pool.drain();
  const commit = (await stack.lakefs.commit(repo, "main", { message: "seed large" })).id;
  return { repo, commit };
}

export async function benchLarge(b: LargeBenchInput): Promise<void> {
  const { stack, cliEnv, record, ratio } = b;
  const mirror = (args: string[]) => measureExport(args, cliEnv);

  // The fixed cost of a CLI export: start-up, lakeFS's answers, the lease, ledger and status
  // files, for a commit of one 1 KiB object.
  const tinyRepo = await createRepo(stack, "bench-fixed");
  await stack.lakefs.uploadObject(tinyRepo, "main", "one.bin", randomBytes(1024));
  const tiny = (await stack.lakefs.commit(tinyRepo, "main", { message: "one" })).id;
  const tinyBucket = await createBucket(stack, "bench-fixed");
  // The median of three: the first run after a build also fills V8's compile cache.
  const runs: Usage[] = [];
  for (let i = 0; i < 3; i++)
    runs.push(await mirror([tinyRepo, `s3://${tinyBucket}/x${i}/`, `--commit_id=${tiny}`]));
  runs.sort((x, y) => x.seconds - y.seconds);
  const fixed = record(
    "(c) fixed cost: one 1 KiB object (median of 3)",
    "lakefs-mirror server-side",
    1,
    1024,
    runs[1]!,
  );

  for (const { count, mib } of largeShapes()) {
    const size = mib * MiB;
    const bytes = count * size;
    const { repo, commit } = await seedLarge(stack, count, mib);
    const bucket = await createBucket(stack, `bench-${count}x${mib}`);
    const scenario = `(c) ${count} × ${mib} MiB`;
    const rec = (tool: string, u: Usage) => record(scenario, tool, count, bytes, u);
    const keys = Array.from({ length: count }, (_, i) => `large/blob-${i}.bin`);
    const empty = () =>
      execFileSync(b.mc.cmd, ["rm", "--recursive", "--force", `dest/${bucket}/`], {
        env: b.mc.env,
        stdio: "ignore",
      });
    const row = async (tool: string, run: () => Promise<Usage>) => {
      const m = rec(tool, await run());
      empty();
      return m;
    };

    const raw = await row("raw GET+PUT, one stream per object", () =>
      rawOne(cliEnv, repo, commit, bucket, keys),
    );
    const rawPar = await row("raw parallel: 4 ranged GETs, 4 parts at once per object", () =>
      rawParallel(cliEnv, repo, commit, bucket, keys, size),
    );
    const stream = await row("lakefs-mirror stream", () =>
      mirror([repo, `s3://${bucket}/stream/`, `--commit_id=${commit}`, "--copy-mode=stream"]),
    );
    const presigned = await row("lakefs-mirror stream, pre-signed reads", () =>
      mirror([
        repo,
        `s3://${bucket}/presigned/`,
        `--commit_id=${commit}`,
        "--copy-mode=stream",
        "--presigned-reads",
      ]),
    );
    const peer = await row("rclone sync", () =>
      measure(
        b.rclone.cmd,
        ["sync", `lakefs:${repo}/${commit}/`, `dest:${bucket}/rclone/`, ...rcloneFlags],
        b.rclone.env,
      ),
    );
    const server = await row("lakefs-mirror server-side", () =>
      mirror([repo, `s3://${bucket}/server/`, `--commit_id=${commit}`, "--copy-mode=server-side"]),
    );
    const parts = await row("lakefs-mirror server-side, UploadPartCopy 64 MiB × 8", () =>
      mirror([
        repo,
        `s3://${bucket}/parts/`,
        `--commit_id=${commit}`,
        "--copy-mode=server-side",
        `--copy-multipart-threshold=${64 * MiB}`,
        `--copy-part-size=${64 * MiB}`,
      ]),
    );
    const lns = parseS3Uri((await stack.lakefs.getRepository(repo)).storage_namespace);
    const limit = await row("mc cp -r, server-side in MinIO", () =>
      measure(
        b.mc.cmd,
        ["cp", "--recursive", `dest/${lns.bucket}/${lns.prefix}data/`, `dest/${bucket}/mccp/`],
        b.mc.env,
      ),
    );
    const label = `(c) ${count} × ${mib} MiB`;
    ratio(`${label}, streamed vs rclone sync`, 1.2, stream, peer);
    ratio(`${label}, streamed vs raw parallel GET+PUT`, 0.9, stream, rawPar);
    ratio(`${label}, streamed pre-signed vs rclone sync`, 1.2, presigned, peer);
    ratio(`${label}, server-side vs MinIO's own copy (mc cp)`, 0.9, server, limit);
    // The copy alone: the fixed cost of any export taken off.
    ratio(
      `${label}, server-side less the CLI's fixed cost vs mc cp`,
      0.9,
      lessFixed(server, fixed),
      limit,
    );
    ratio(`${label}, UploadPartCopy vs CopyObject`, 1, parts, server);
    ratio(`${label}, streamed vs raw GET+PUT, one stream per object`, 1, stream, raw);
  }
}

/**
 * A link where one connection is the limit (a cross-region or rate-capped path: every body
 * to or from lakeFS held to THROTTLE_MBPS by a proxy in front of it), one object of
 * BENCH_THROTTLED_MIB: what ranged reads in parallel buy there.
 */
export async function benchThrottled(b: LargeBenchInput): Promise<void> {
  const mbps = Number(process.env.BENCH_THROTTLE_MBPS ?? 32);
  const mib = Number(process.env.BENCH_THROTTLED_MIB ?? 256);
  const { stack, record, ratio } = b;
  const { repo, commit } = await seedLarge(stack, 1, mib);
  const bucket = await createBucket(stack, "bench-throttled");
  const proxy = await startFaultInjectingProxy(stack.env.LAKEFS_ENDPOINT, { flavor: "lakefs" });
  proxy.setThrottle(mbps * 1e6);
  try {
    const cliEnv = { ...b.cliEnv, LAKEFS_ENDPOINT: proxy.url };
    const scenario = `(c) 1 × ${mib} MiB, each connection to lakeFS held to ${mbps} MB/s`;
    const rec = (tool: string, u: Usage) => record(scenario, tool, 1, mib * MiB, u);
    const key = "large/blob-0.bin";
    const raw = rec("raw GET+PUT, one stream", await rawOne(cliEnv, repo, commit, bucket, [key]));
    const rawPar = rec(
      "raw parallel: 4 ranged GETs, 4 parts at once",
      await rawParallel(cliEnv, repo, commit, bucket, [key], mib * MiB),
    );
    const one = rec(
      "lakefs-mirror stream, --parallel-reads=1",
      await measureExport(
        [
          repo,
          `s3://${bucket}/one/`,
          `--commit_id=${commit}`,
          "--copy-mode=stream",
          "--parallel-reads=1",
        ],
        cliEnv,
      ),
    );
    const stream = rec(
      "lakefs-mirror stream",
      await measureExport(
        [repo, `s3://${bucket}/stream/`, `--commit_id=${commit}`, "--copy-mode=stream"],
        cliEnv,
      ),
    );
    const renv = { ...b.rclone.env, RCLONE_CONFIG_LAKEFS_ENDPOINT: proxy.url };
    const peer = rec(
      "rclone sync",
      await measure(
        b.rclone.cmd,
        ["sync", `lakefs:${repo}/${commit}/`, `dest:${bucket}/rclone/`, ...rcloneFlags],
        renv,
      ),
    );
    const label = `(c) 1 × ${mib} MiB at ${mbps} MB/s a connection`;
    ratio(`${label}, ranged reads vs one stream`, 2, stream, one);
    ratio(`${label}, streamed vs rclone sync`, 1.2, stream, peer);
    ratio(`${label}, streamed vs raw parallel GET+PUT`, 0.9, stream, rawPar);
    ratio(`${label}, raw parallel vs raw one stream`, 1, rawPar, raw);
  } finally {
    await proxy.close();
    execFileSync(b.mc.cmd, ["rm", "--recursive", "--force", `dest/${bucket}/`], {
      env: b.mc.env,
      stdio: "ignore",
    });
  }
}

function lessFixed(m: Measure, fixed: Measure): Measure {
  return {
    ...m,
    tool: `${m.tool} less ${fixed.seconds.toFixed(2)} s`,
    seconds: Math.max(0.001, m.seconds - fixed.seconds),
  };
}

/**
 * The cost of rewriting one Iceberg manifest: Iceberg's Java writer (test/iceberg-java) makes a
 * manifest of FILES data files with statistics for COLUMNS columns (Iceberg's default codec,
 * deflate), and the rewriter rewrites it ROUNDS times. Prints the time per manifest and the
 * memory it takes (RSS and heap growth over the process before the first rewrite). The
 * manifest is Java's, so the size figures are what Iceberg writes at that many files.
 *
 *   node --expose-gc --import tsx test/bench/iceberg-rewrite.ts [FILES=10000] [COLUMNS=20] [ROUNDS=10]
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { rewriteManifest } from "../../src/iceberg/manifests.ts";
import { scanAvroMetadata } from "../../src/iceberg/manifest-scan.ts";
import { PathMapper } from "../../src/iceberg/path-map.ts";
import { zstdImplementation } from "../../src/iceberg/codecs.ts";
import { stackEnv } from "../helpers/stack.ts";

const [files = 10_000, columns = 20, rounds = 10] = process.argv.slice(2).map(Number);
const env = (await stackEnv()) as unknown as Record<string, string>;
const dir = await mkdtemp(join(tmpdir(), "iceberg-bench-"));
try {
  const prefix = "s3://repo/main/";
  const { stdout } = await promisify(execFile)(
    "java",
    [
      "-cp",
      env["ICEBERG_JAVA_CP"]!,
      "lakefsmirror.IcebergTables",
      "manifest",
      dir,
      prefix,
      String(files),
      String(columns),
    ],
    { maxBuffer: 1 << 20 },
  );
  const made = JSON.parse(stdout) as { manifest: string; length: number };
  const path = made.manifest.slice(prefix.length);
  const bytes = await readFile(join(dir, path));
  const mapper = new PathMapper({
    repository: "repo",
    destinationRoot: "s3://mirror-bucket/some/prefix/",
  });
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const base = process.memoryUsage();
  let peakRss = base.rss;
  let peakHeap = base.heapUsed;
  const times: number[] = [];
  const cpu: number[] = [];
  const scans: number[] = [];
  let outSize = 0;
  for (let i = 0; i < rounds; i++) {
    const t0 = process.hrtime.bigint();
    await scanAvroMetadata(path, bytes);
    const t1 = process.hrtime.bigint();
    const c1 = process.cpuUsage();
    const out = await rewriteManifest(path, bytes, mapper, () => undefined);
    const c2 = process.cpuUsage(c1);
    const t2 = process.hrtime.bigint();
    cpu.push((c2.user + c2.system) / 1000);
    scans.push(Number(t1 - t0) / 1e6);
    times.push(Number(t2 - t1) / 1e6);
    outSize = out.bytes.length;
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  }
  const median = (xs: number[]): number =>
    [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const mb = (n: number): string => (n / 2 ** 20).toFixed(1);
  console.log(
    [
      `node ${process.version}, zstd via ${zstdImplementation()}`,
      `manifest: ${files} data files, ${columns} columns of statistics, ${mb(bytes.length)} MiB (deflate) -> ${mb(outSize)} MiB rewritten`,
      `rewrite: median ${median(times).toFixed(0)} ms, min ${Math.min(...times).toFixed(0)} ms, max ${Math.max(...times).toFixed(0)} ms over ${rounds} rounds (${((median(times) * 1000) / files).toFixed(1)} µs per entry)`,
      // CPU time is the figure to compare on a shared machine: wall time includes waiting for a core.
      `rewrite CPU time: median ${median(cpu).toFixed(0)} ms, min ${Math.min(...cpu).toFixed(0)} ms`,
      `planner's scan of the same manifest: median ${median(scans).toFixed(0)} ms`,
      `memory above the process before the first rewrite: RSS +${mb(peakRss - base.rss)} MiB, heap +${mb(peakHeap - base.heapUsed)} MiB (peak)`,
    ].join("\n"),
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}

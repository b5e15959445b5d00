// npm run bench:million: lakefs-mirror's peak memory at 1,000,000 objects, for a full export
// of a commit and for a diff of 1,000,000 entries, each in a CLI process measured by
// measure.py (wall time, CPU seconds, peak RSS from the kernel's accounting).
//
// How the million objects are made, quickly: gzipped tar archives of 50,000 small files each
// are PUT into a MinIO bucket with MinIO's auto-extract header, so MinIO unpacks each archive
// into separate objects on its side (one request per 50,000 objects instead of one each);
// then lakeFS imports that prefix (its import API writes the commit's ranges from one
// listing, without staging each path). The repository's first commit (before the import)
// against the import commit is the 1,000,000-entry diff. The same diff the other way (the
// import commit against a branch made from the first commit) is 1,000,000 deletes, exported
// with the delta preset (deletes last, so every delete waits for the copies: the case of a
// VACUUM or a hard reset) into the full export's prefix, where the million keys are.
// BENCH_MILLION_OBJECTS changes the count (a small one checks the script itself).
// BENCH_MILLION_ONLY=deletes measures only the deletes, into an empty prefix (each delete
// hits a missing key, a no-op for S3): the million objects and the import are still made,
// the hour of the two other rows is saved.
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { TaskPool } from "../../src/export/pool.ts";
import { createS3Client } from "../../src/s3/client.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";
import { markdown } from "./report.ts";
import type { Check, Measure } from "./report.ts";
import { binNodeFlags, measureExport, repoRoot } from "./tools.ts";

const M = Number(process.env.BENCH_MILLION_OBJECTS ?? 1_000_000);
const PER_ARCHIVE = 50_000;
const ONLY = process.env.BENCH_MILLION_ONLY ?? "";
if (ONLY !== "" && ONLY !== "deletes")
  throw new Error(`BENCH_MILLION_ONLY must be "deletes" or unset, got "${ONLY}"`);

/** 1,000 partitions of 1,000 files, as a partitioned table would lay them out. */
const keyOf = (i: number) => `m/part=${String(i % 1000).padStart(4, "0")}/object-${i}.bin`;
/** 1–4 KiB of text naming the object, so every object differs and the archives compress. */
const contentOf = (i: number) => Buffer.from(`object ${i}\n`.repeat(75 + ((i * 7) % 226)));

/** One POSIX ustar entry header (regular file, mode 0644). */
function tarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  const octal = (value: number, at: number, width: number) =>
    h.write(`${value.toString(8).padStart(width - 1, "0")}\0`, at, "ascii");
  if (Buffer.byteLength(name) > 100) throw new Error(`tar entry name over 100 bytes: ${name}`);
  h.write(name, 0, "utf8");
  octal(0o644, 100, 8);
  octal(0, 108, 8);
  octal(0, 116, 8);
  octal(size, 124, 12);
  octal(Math.floor(Date.now() / 1000), 136, 12);
  h.write("        ", 148, "ascii");
  h.write("0", 156, "ascii");
  h.write("ustar\0", 257, "ascii");
  h.write("00", 263, "ascii");
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "ascii");
  return h;
}

function archive(from: number, to: number): { body: Buffer; bytes: number } {
  const parts: Buffer[] = [];
  let bytes = 0;
  for (let i = from; i < to; i++) {
    const data = contentOf(i);
    bytes += data.length;
    parts.push(tarHeader(keyOf(i), data.length), data);
    const pad = (512 - (data.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(1024));
  return { body: gzipSync(Buffer.concat(parts), { level: 1 }), bytes };
}

/** Writes the M objects into `bucket` through MinIO's archive auto-extraction. */
async function writeObjects(stack: Stack, bucket: string): Promise<number> {
  // MinIO answers an archive PUT once it has extracted every file, which on a loaded machine
  // takes minutes with no byte on the wire: a client that waits that long.
  const s3 = createS3Client({
    endpoint: stack.env.AWS_ENDPOINT_URL,
    region: stack.env.AWS_REGION,
    credentials: {
      accessKeyId: stack.env.AWS_ACCESS_KEY_ID,
      secretAccessKey: stack.env.AWS_SECRET_ACCESS_KEY,
    },
    idleTimeoutMs: 30 * 60_000,
  });
  const pool = new TaskPool(2);
  let bytes = 0;
  for (let from = 0; from < M; from += PER_ARCHIVE) {
    const to = Math.min(M, from + PER_ARCHIVE);
    const a = archive(from, to);
    bytes += a.bytes;
    await pool.submit(async () => {
      await s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: `archive-${from}.tar.gz`,
          Body: a.body,
          // x-amz-meta-snowball-auto-extract: MinIO stores the archive's files, not the archive.
          Metadata: { "snowball-auto-extract": "true" },
        }),
      );
      process.stderr.write(`  ${to} of ${M} objects written\n`);
    });
  }
  await pool.drain();
  s3.destroy();
  return bytes;
}

/** lakeFS's import API: the prefix becomes one commit on the branch. Returns its ID. */
async function importPrefix(stack: Stack, repo: string, source: string): Promise<string> {
  const id = await stack.lakefs.startImport(
    repo,
    "main",
    [{ path: source, destination: "table/", type: "common_prefix" }],
    { message: `import ${M} objects` },
  );
  for (;;) {
    await new Promise((r) => setTimeout(r, 2_000));
    const s = await stack.lakefs.importStatus(repo, "main", id);
    if (s.error) throw new Error(`import failed: ${s.error.message}`);
    process.stderr.write(`  import: ${s.ingested_objects ?? 0} objects\n`);
    if (s.completed) {
      if (!s.commit) throw new Error("import completed without a commit");
      if (s.ingested_objects !== M)
        throw new Error(`import ingested ${s.ingested_objects} objects, not ${M}`);
      return s.commit.id;
    }
  }
}

async function main() {
  execFileSync("npm", ["run", "-s", "build"], { cwd: repoRoot, stdio: "inherit" });
  const stack = await connectStack();
  const env = { ...process.env, ...stack.env, LOG_LEVEL: "warn" };
  const mirror = (args: string[]) => measureExport(args, env);
  const steps: string[] = [];
  const timed = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    const value = await f();
    steps.push(`${what}: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    process.stderr.write(`${steps.at(-1)}\n`);
    return value;
  };

  const source = await createBucket(stack, "million-src");
  const dest = await createBucket(stack, "million");
  const repo = await createRepo(stack, "million");
  const base = (await stack.lakefs.getBranch(repo, "main")).commit_id;
  const bytes = await timed(`write ${M} objects into MinIO (auto-extracted archives)`, () =>
    writeObjects(stack, source),
  );
  const head = await timed(`lakeFS import of the prefix`, () =>
    importPrefix(stack, repo, `s3://${source}/m/`),
  );

  const results: Measure[] = [];
  const record = (scenario: string, u: Measure) => {
    results.push(u);
    process.stderr.write(`${scenario}: ${u.seconds.toFixed(0)} s, ${u.peakRssMb.toFixed(0)} MB\n`);
  };
  if (!ONLY) {
    const full = await mirror([repo, `s3://${dest}/full/`, `--commit_id=${head}`]);
    record("full", {
      scenario: `full export, ${M} objects`,
      tool: "lakefs-mirror",
      objects: M,
      bytes,
      ...full,
    });
    const diff = await mirror([
      repo,
      `s3://${dest}/diff/`,
      `--prev_commit_id=${base}`,
      "--branch=main",
    ]);
    record("diff", {
      scenario: `diff of ${M} entries`,
      tool: "lakefs-mirror",
      objects: M,
      bytes,
      ...diff,
    });
  }
  await stack.lakefs.createBranch(repo, "empty", base);
  const target = ONLY ? "deletes/" : "full/";
  const deletes = await mirror([
    repo,
    `s3://${dest}/${target}`,
    `--prev_commit_id=${head}`,
    "--branch=empty",
    "--rounds=delta",
  ]);
  const left = await stack.s3.send(
    new ListObjectsV2Command({ Bucket: dest, Prefix: `${target}table/`, MaxKeys: 1 }),
  );
  if (left.KeyCount) throw new Error(`keys left under ${target}table/ after the deletes`);
  record("deletes", {
    scenario: `${M} deletes with deletesLast${ONLY ? " (keys missing)" : ""}`,
    tool: "lakefs-mirror",
    objects: M,
    bytes: 0,
    ...deletes,
  });
  await stack.close();

  const checks: Check[] = results.map((m) => ({
    label: `peak RSS, ${m.scenario}`,
    value: m.peakRssMb,
    target: 200,
    unit: "MB",
    detail: `${m.seconds.toFixed(0)} s, ${(m.objects / m.seconds).toFixed(0)} objects/s`,
  }));
  const header = [
    `Command: \`${process.env.BENCH_MILLION_OBJECTS ? `BENCH_MILLION_OBJECTS=${M} ` : ""}${ONLY ? `BENCH_MILLION_ONLY=${ONLY} ` : ""}npm run bench:million\`, ${new Date().toISOString()}`,
    `Versions: node ${process.version}, lakeFS v1.86.0, MinIO RELEASE.2026-02-12 (test/stack); ${execFileSync("nproc").toString().trim()} cores shared by the servers and lakefs-mirror (--concurrency=32, node ${binNodeFlags.join(" ")}).`,
    `Made by: ${steps.join("; ")}. The objects are 1–4 KiB in 1,000 partitions (\`table/part=NNNN/object-I.bin\` in lakeFS); the diff is the repository's first commit against the import commit (${M} added entries); the deletes are the import commit against a branch made from the first commit (${M} removed entries), exported with \`--rounds=delta\` (deletes last, export.deferredInMemory 10,000) into ${ONLY ? "an empty prefix (every delete hits a missing key)" : "the full export's prefix (every delete removes one of its keys)"}.`,
  ];
  const text = markdown(header, results, checks);
  process.stdout.write(text);
  const dir = `${repoRoot}test/bench/results`;
  mkdirSync(dir, { recursive: true });
  const name = `million${M === 1_000_000 ? "" : `-${M}`}${ONLY ? `-${ONLY}` : ""}.md`;
  writeFileSync(join(dir, name), text);
}

await main();

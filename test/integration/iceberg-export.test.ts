import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { cliSummary, runCli } from "../helpers/cli.ts";
import { icebergJava, icebergPy, s3Of } from "../helpers/iceberg.ts";
import { listKeys, statusKeys } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

interface Rows {
  current: string[];
  snapshots: Record<string, string[]>;
  files: string[];
}

/**
 * `lakefs-mirror export --rounds=iceberg` on tables written by real Iceberg writers through
 * the lakeFS S3 gateway: the mirrored tables are read at the mirror, with no lakeFS in the way,
 * by pyiceberg and by Iceberg's Java reader, every snapshot by its ID, row for row like the
 * source; fastavro finds every manifest_length equal to the manifest's size. `verify` compares
 * rewritten files with the rewrite of their source.
 */
describe("export --rounds=iceberg: mirrored tables refer to the mirror", () => {
  let stack: Stack;
  let tmp: string;
  before(async () => {
    stack = await connectStack();
    tmp = await mkdtemp(join(tmpdir(), "iceberg-export-"));
  });
  after(async () => {
    await stack.close();
    await rm(tmp, { recursive: true, force: true });
  });

  const cli = (args: string[]) => runCli(stack, args);

  it("a pyiceberg table merged from a branch and changed on main: whole export, then a diff export; verify clean only with the rewrite", async () => {
    const repo = await createRepo(stack, "iceexp");
    const bucket = await createBucket(stack, "iceexp");
    const gateway = s3Of(stack, "gateway");
    const db = join(tmp, `${repo}.db`);
    await stack.lakefs.createBranch(repo, "dev", "main");
    const dev = await icebergPy<{ metadata: string }>(stack, "write-dev", {
      db,
      s3: gateway,
      warehouse: `s3://${repo}/dev/wh`,
      format_version: 2,
      codec: "deflate",
    });
    await stack.lakefs.commit(repo, "dev", { message: "table on dev" });
    await stack.lakefs.merge(repo, "dev", "main");
    const onMain = dev.metadata.replace(`s3://${repo}/dev/`, `s3://${repo}/main/`);
    const main = await icebergPy<{ metadata: string }>(stack, "write-main", {
      db,
      s3: gateway,
      metadata: onMain,
      base: onMain.slice(0, onMain.indexOf("/metadata/")),
    });
    const c1 = (await stack.lakefs.commit(repo, "main", { message: "changed on main" })).id;
    const metadataPath = main.metadata.slice(`s3://${repo}/main/`.length);
    const uri = `s3://${bucket}/mirror/`;

    const whole = await cli(["export", repo, uri, `--commit_id=${c1}`, "--rounds=iceberg"]);
    assert.equal(whole.code, 0, whole.stdout + whole.stderr);
    assert.equal(cliSummary(whole).status, "SUCCESS");

    const source = await icebergPy<Rows>(stack, "read", {
      s3: gateway,
      metadata: `s3://${repo}/${c1}/${metadataPath}`,
    });
    const mirror = await icebergPy<Rows>(stack, "read", {
      s3: s3Of(stack, "minio"),
      metadata: `${uri}${metadataPath}`,
    });
    assert.ok(Object.keys(source.snapshots).length >= 4);
    assert.deepEqual(mirror.snapshots, source.snapshots);
    assert.deepEqual(mirror.current, source.current);
    assert.ok(
      mirror.files.every((f) => f.startsWith(uri)),
      mirror.files.join("\n"),
    );
    const rewritten = [...(await listKeys(stack, bucket, "mirror/")).keys()].filter(
      (p) => p.endsWith(".avro") || p.endsWith(".metadata.json"),
    );
    const checked = await icebergPy<Record<string, number>>(stack, "check", {
      repository: repo,
      root: uri,
      files: rewritten,
      source_s3: gateway,
      mirror_s3: s3Of(stack, "minio"),
      source_prefix: `${repo}/${c1}/`,
      mirror_prefix: `${bucket}/mirror/`,
    });
    assert.ok(checked["manifests"]! >= 4, JSON.stringify(checked));

    // verify knows the rewrite; without it every rewritten file is a difference.
    const verified = await cli(["verify", repo, c1, uri, "--rounds=iceberg"]);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    const raw = await cli(["verify", repo, c1, uri]);
    assert.equal(raw.code, 1, raw.stdout + raw.stderr);
    // One line per difference, `<kind>\t<path as JSON>[\t<detail>]`; the log line is JSON.
    const differing = raw.stdout
      .trim()
      .split("\n")
      .filter((l) => /^[a-z]+\t/.test(l))
      .map((l) => JSON.parse(l.split("\t")[1]!) as string);
    assert.deepEqual(differing.sort(), rewritten.sort());

    // --sync compares each rewritten file with the rewrite of its source: nothing to write on a
    // clean mirror; a manifest changed at the mirror is written again, and only that one.
    const clean = await cli([
      "export",
      repo,
      uri,
      `--commit_id=${c1}`,
      "--rounds=iceberg",
      "--sync",
    ]);
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    // (Rewritten files are written whole, counted as streamed; plain files uploaded in parts
    // have an ETag no copy reproduces, and --sync copies those again server-side.)
    assert.equal(cliSummary(clean).streamedCopies, 0, clean.stdout);
    assert.ok((cliSummary(clean).unchanged as number) >= rewritten.length, clean.stdout);
    const manifest = rewritten.find((p) => p.endsWith(".avro") && !/\/snap-[^/]+$/.test(p))!;
    const key = `mirror/${manifest}`;
    const good = await (
      await stack.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
    ).Body!.transformToByteArray();
    const tampered = Buffer.from(good);
    tampered.writeUInt8(tampered.readUInt8(tampered.length - 1) ^ 0xff, tampered.length - 1);
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: tampered }));
    const mended = await cli([
      "export",
      repo,
      uri,
      `--commit_id=${c1}`,
      "--rounds=iceberg",
      "--sync",
    ]);
    assert.equal(mended.code, 0, mended.stdout + mended.stderr);
    assert.equal(cliSummary(mended).streamedCopies, 1, mended.stdout);
    const back = await (
      await stack.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
    ).Body!.transformToByteArray();
    assert.deepEqual(Buffer.from(back), Buffer.from(good));

    // A diff export: its new manifest list records manifests the first export rewrote.
    const next = await icebergPy<{ metadata: string }>(stack, "append", { db, s3: gateway });
    const c2 = (await stack.lakefs.commit(repo, "main", { message: "one more append" })).id;
    const diff = await cli([
      "export",
      repo,
      uri,
      "--branch=main",
      `--prev_commit_id=${c1}`,
      "--rounds=iceberg",
    ]);
    assert.equal(diff.code, 0, diff.stdout + diff.stderr);
    const copied = cliSummary(diff).copied as number;
    assert.ok(copied > 0 && copied < rewritten.length, `the diff copied ${copied} files`);
    const nextPath = next.metadata.slice(`s3://${repo}/main/`.length);
    const [source2, mirror2] = await Promise.all([
      icebergPy<Rows>(stack, "read", { s3: gateway, metadata: `s3://${repo}/${c2}/${nextPath}` }),
      icebergPy<Rows>(stack, "read", { s3: s3Of(stack, "minio"), metadata: `${uri}${nextPath}` }),
    ]);
    assert.deepEqual(mirror2.snapshots, source2.snapshots);
    assert.deepEqual(mirror2.current, source2.current);
    const again = await cli(["verify", repo, c2, uri, "--iceberg-rewrite"]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
  });

  it("a table recording a path outside the repository: FAILURE naming the file and the path, its metadata not written", async () => {
    const repo = await createRepo(stack, "iceforeign");
    const bucket = await createBucket(stack, "iceforeign");
    const gateway = s3Of(stack, "gateway");
    const written = await icebergPy<{ metadata: string }>(stack, "write-dev", {
      db: join(tmp, `${repo}.db`),
      s3: gateway,
      warehouse: `s3://${repo}/main/wh`,
      format_version: 2,
      codec: "null",
    });
    // A newer metadata file whose table location is another bucket (as a table registered
    // from elsewhere would hold).
    const path = written.metadata.slice(`s3://${repo}/main/`.length);
    const got = await stack.gateway.send(
      new GetObjectCommand({ Bucket: repo, Key: `main/${path}` }),
    );
    const meta = JSON.parse(await got.Body!.transformToString()) as { location: string };
    meta.location = "s3://someone-elses-bucket/tables/t";
    const bad = path.replace(/[^/]+\.metadata\.json$/, "99999-foreign.metadata.json");
    await stack.gateway.send(
      new PutObjectCommand({ Bucket: repo, Key: `main/${bad}`, Body: JSON.stringify(meta) }),
    );
    const commit = (await stack.lakefs.commit(repo, "main", { message: "foreign location" })).id;

    const run = await cli([
      "export",
      repo,
      `s3://${bucket}/`,
      `--commit_id=${commit}`,
      "--rounds=iceberg",
    ]);
    assert.equal(run.code, 1, run.stdout + run.stderr);
    const keys = await listKeys(stack, bucket);
    const status = statusKeys(keys.keys());
    assert.equal(status.length, 1);
    assert.match(status[0]!, /_FAILURE$/);
    const text = await (
      await stack.s3.send(new GetObjectCommand({ Bucket: bucket, Key: status[0] }))
    ).Body!.transformToString();
    assert.ok(text.includes(bad), text);
    assert.ok(text.includes("s3://someone-elses-bucket/tables/t"), text);
    assert.equal(keys.has(bad), false, "the metadata file that cannot be rewritten is not written");
    // With the rewrite off, the same table is copied byte for byte.
    const plain = await cli([
      "export",
      repo,
      `s3://${bucket}/plain/`,
      `--commit_id=${commit}`,
      "--rounds=iceberg",
      "--no-iceberg-rewrite",
    ]);
    assert.equal(plain.code, 0, plain.stdout + plain.stderr);
  });

  for (const format of [2, 3]) {
    const kind = format === 2 ? "Parquet position-delete files" : "deletion vectors";
    it(`a format ${format} table with ${kind}, written by Iceberg's Java library: Iceberg's Java reader reads the mirror like the source`, async () => {
      const repo = await createRepo(stack, "iceexpdel");
      const bucket = await createBucket(stack, "iceexpdel");
      const src = join(tmp, `${repo}-src`);
      const sourcePrefix = `s3://${repo}/main/`;
      const written = await icebergJava<{ metadata: string }>(stack, [
        "write",
        src,
        sourcePrefix,
        String(format),
      ]);
      for (const rel of await files(src)) {
        await stack.gateway.send(
          new PutObjectCommand({
            Bucket: repo,
            Key: `main/${rel}`,
            Body: await readFile(join(src, rel)),
          }),
        );
      }
      const commit = (await stack.lakefs.commit(repo, "main", { message: `v${format}` })).id;
      const root = `s3://${bucket}/m/`;
      const run = await cli(["export", repo, root, `--commit_id=${commit}`, "--rounds=iceberg"]);
      assert.equal(run.code, 0, run.stdout + run.stderr);

      // Iceberg's Java reader on a copy of the mirror: nothing under the source's prefix exists.
      const dst = join(tmp, `${repo}-dst`);
      const listed = await stack.s3.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: "m/" }),
      );
      for (const o of listed.Contents ?? []) {
        if (statusKeys([o.Key!.slice(2)]).length) continue;
        const body = await stack.s3.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key }));
        const path = join(dst, o.Key!.slice(2));
        await mkdir(dirname(path), { recursive: true });
        await writeFile(path, await body.Body!.transformToByteArray());
      }
      const metadataPath = written.metadata.slice(sourcePrefix.length);
      const [source, mirror] = await Promise.all([
        icebergJava<{ snapshots: Record<string, string[]>; current: string[] }>(stack, [
          "read",
          src,
          sourcePrefix,
          written.metadata,
        ]),
        icebergJava<{ snapshots: Record<string, string[]>; current: string[] }>(stack, [
          "read",
          dst,
          root,
          root + metadataPath,
        ]),
      ]);
      assert.equal(Object.keys(source.snapshots).length, 4);
      assert.deepEqual(mirror, source);
      assert.equal(source.current.length, 25 - 5, "the deletes took effect");
      const verified = await cli(["verify", repo, commit, root, "--rounds=iceberg"]);
      assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    });
  }

  async function files(dir: string): Promise<string[]> {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
  }
});

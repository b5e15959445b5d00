import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { icebergPy, mirrorWithRewrite, s3Of } from "../helpers/iceberg.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

interface Rows {
  current: string[];
  snapshots: Record<string, string[]>;
  files: string[];
}

/**
 * Iceberg tables written by pyiceberg through the lakeFS S3 gateway, rewritten by the library
 * into a plain MinIO prefix, and read back there by pyiceberg with no lakeFS in the way: every
 * snapshot by ID equals the source's, row for row, and fastavro finds every manifest_length
 * equal to the manifest's size and every other field as it was.
 */
describe("Iceberg tables rewritten to a plain S3 prefix read like their source", () => {
  let stack: Stack;
  let tmp: string;
  before(async () => {
    stack = await connectStack();
    tmp = await mkdtemp(join(tmpdir(), "iceberg-rewrite-"));
  });
  after(async () => {
    await stack.close();
    await rm(tmp, { recursive: true, force: true });
  });

  it("a table merged from a branch, then overwritten, deleted from, evolved and expired on main", async () => {
    const repo = await createRepo(stack, "ice");
    const bucket = await createBucket(stack, "ice");
    const gateway = s3Of(stack, "gateway");
    const db = join(tmp, `${repo}.db`);
    await stack.lakefs.createBranch(repo, "dev", "main");

    // Written on dev, merged, then written on main with write.*.path set to main's paths:
    // the table holds paths of both refs, as tables that move between branches do.
    const dev = await icebergPy<{ metadata: string }>(stack, "write-dev", {
      db,
      s3: gateway,
      warehouse: `s3://${repo}/dev/wh`,
      format_version: 2,
      codec: "null",
    });
    await stack.lakefs.commit(repo, "dev", { message: "table on dev" });
    await stack.lakefs.merge(repo, "dev", "main");
    const onMain = dev.metadata.replace(`s3://${repo}/dev/`, `s3://${repo}/main/`);
    const base = onMain.slice(0, onMain.indexOf("/metadata/"));
    const main = await icebergPy<{ metadata: string }>(stack, "write-main", {
      db,
      s3: gateway,
      metadata: onMain,
      base,
    });
    const c1 = (await stack.lakefs.commit(repo, "main", { message: "changed on main" })).id;
    const metadataPath = main.metadata.slice(`s3://${repo}/main/`.length);

    const source = await icebergPy<Rows>(stack, "read", {
      s3: gateway,
      metadata: `s3://${repo}/${c1}/${metadataPath}`,
    });
    const snapshotIds = Object.keys(source.snapshots);
    assert.ok(snapshotIds.length >= 4, `the history has ${snapshotIds.length} snapshots`);
    assert.ok(
      source.files.some((f) => f.startsWith(`s3://${repo}/dev/`)),
      source.files.join("\n"),
    );
    assert.ok(source.files.some((f) => f.startsWith(`s3://${repo}/main/`)));

    const mirrored = await mirrorWithRewrite(stack, repo, c1, bucket, "mirror/");
    const root = `s3://${bucket}/mirror/`;
    const mirror = await icebergPy<Rows>(stack, "read", {
      s3: s3Of(stack, "minio"),
      metadata: `${root}${metadataPath}`,
    });
    assert.deepEqual(mirror.snapshots, source.snapshots);
    assert.deepEqual(mirror.current, source.current);
    assert.ok(
      mirror.files.every((f) => f.startsWith(root)),
      mirror.files.join("\n"),
    );
    const files = [...mirrored.plan.kinds.keys()].filter(
      (p) => p.endsWith(".avro") || p.endsWith(".metadata.json"),
    );
    const checked = await icebergPy<Record<string, number>>(stack, "check", {
      repository: repo,
      root,
      files,
      source_s3: gateway,
      mirror_s3: s3Of(stack, "minio"),
      source_prefix: `${repo}/${c1}/`,
      mirror_prefix: `${bucket}/mirror/`,
    });
    assert.ok(
      checked["manifest_lists"]! >= 4 && checked["manifests"]! >= 4,
      JSON.stringify(checked),
    );
    assert.deepEqual([...(checked["codecs"] as unknown as string[])].sort(), [
      "deflate",
      "null",
      "snappy",
      "zstandard",
    ]);

    // Every manifest before every manifest list, and those before every metadata file.
    const at = (kind: string): number[] =>
      mirrored.order.flatMap((p, i) => (mirrored.plan.kinds.get(p) === kind ? [i] : []));
    assert.ok(Math.max(...at("manifest")) < Math.min(...at("manifest-list")));
    assert.ok(Math.max(...at("manifest-list")) < Math.min(...at("metadata")));

    // An incremental export: only the new commit's files, so the new manifest list records
    // manifests rewritten by the first export, whose sizes come from the mirror.
    const before = new Set(mirrored.sizes.keys());
    const next = await icebergPy<{ metadata: string }>(stack, "append", { db, s3: gateway });
    const c2 = (await stack.lakefs.commit(repo, "main", { message: "one more append" })).id;
    const second = await mirrorWithRewrite(
      stack,
      repo,
      c2,
      bucket,
      "mirror/",
      (p) => !before.has(p),
    );
    assert.ok(second.plan.external.size > 0, "the second export records manifests of the first");
    const nextPath = next.metadata.slice(`s3://${repo}/main/`.length);
    const [source2, mirror2] = await Promise.all([
      icebergPy<Rows>(stack, "read", { s3: gateway, metadata: `s3://${repo}/${c2}/${nextPath}` }),
      icebergPy<Rows>(stack, "read", { s3: s3Of(stack, "minio"), metadata: `${root}${nextPath}` }),
    ]);
    assert.deepEqual(mirror2.snapshots, source2.snapshots);
    assert.deepEqual(mirror2.current, source2.current);
  });

  it("a format 1 table", async () => {
    const repo = await createRepo(stack, "ice");
    const bucket = await createBucket(stack, "ice");
    const gateway = s3Of(stack, "gateway");
    const written = await icebergPy<{ metadata: string }>(stack, "write-dev", {
      db: join(tmp, `${repo}.db`),
      s3: gateway,
      warehouse: `s3://${repo}/main/wh`,
      format_version: 1,
      codec: "zstd",
    });
    const commit = (await stack.lakefs.commit(repo, "main", { message: "v1 table" })).id;
    const metadataPath = written.metadata.slice(`s3://${repo}/main/`.length);
    const mirrored = await mirrorWithRewrite(stack, repo, commit, bucket, "");
    const root = `s3://${bucket}/`;
    const [source, mirror] = await Promise.all([
      icebergPy<Rows>(stack, "read", {
        s3: gateway,
        metadata: `s3://${repo}/${commit}/${metadataPath}`,
      }),
      icebergPy<Rows>(stack, "read", {
        s3: s3Of(stack, "minio"),
        metadata: `${root}${metadataPath}`,
      }),
    ]);
    assert.equal(Object.keys(source.snapshots).length, 2);
    assert.deepEqual(mirror.snapshots, source.snapshots);
    const files = [...mirrored.plan.kinds.keys()];
    const checked = await icebergPy<Record<string, number>>(stack, "check", {
      repository: repo,
      root,
      files,
      source_s3: gateway,
      mirror_s3: s3Of(stack, "minio"),
      source_prefix: `${repo}/${commit}/`,
      mirror_prefix: `${bucket}/`,
    });
    assert.equal(checked["manifest_lists"], 2);
  });
});

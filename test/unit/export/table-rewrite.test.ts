import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { describe, it } from "node:test";
import pino from "pino";
import type { Destination } from "../../../src/destination/destination.ts";
import { LakefsNotFoundError, SourceObjectError } from "../../../src/errors.ts";
import { Exporter } from "../../../src/export/exporter.ts";
import { AvroWriter } from "../../../src/iceberg/avro-binary.ts";
import { avroContainer } from "../iceberg/avro-fixture.ts";
import type { LakefsClient } from "../../../src/lakefs/client.ts";
import type { ObjectStats } from "../../../src/lakefs/types.ts";

// Minimal Avro object container files with Iceberg's field names: enough for the planner to
// tell a manifest list from a manifest and for the rewrite to map their paths. Real tables
// (pyiceberg, Iceberg's Java library) are in test/integration/iceberg-export.test.ts.
function manifest(dataFiles: string[]): Uint8Array {
  const schema = {
    type: "record",
    name: "manifest_entry",
    fields: [
      { name: "status", type: "int" },
      {
        name: "data_file",
        type: {
          type: "record",
          name: "r2",
          fields: [
            { name: "content", type: "int" },
            { name: "file_path", type: "string" },
            { name: "file_format", type: "string" },
            { name: "file_size_in_bytes", type: "long" },
          ],
        },
      },
    ],
  };
  const w = new AvroWriter();
  for (const p of dataFiles) {
    w.long(1);
    w.long(0);
    w.string(p);
    w.string("PARQUET");
    w.long(10);
  }
  return avroContainer(schema, w.finish(), dataFiles.length);
}

function manifestList(manifests: [string, number][]): Uint8Array {
  const schema = {
    type: "record",
    name: "manifest_file",
    fields: [
      { name: "manifest_path", type: "string" },
      { name: "manifest_length", type: "long" },
    ],
  };
  const w = new AvroWriter();
  for (const [p, n] of manifests) {
    w.string(p);
    w.long(n);
  }
  return avroContainer(schema, w.finish(), manifests.length);
}

/** A commit of `files` in lakeFS and an empty mirror, both in memory; writes are recorded. */
function world(files: Map<string, Uint8Array>) {
  const stat = (path: string): ObjectStats => ({
    path,
    path_type: "object",
    physical_address: `local://ns/${path}`,
    checksum: `c${files.get(path)!.length}`,
    size_bytes: files.get(path)!.length,
    mtime: 1,
  });
  const missing = (path: string) => new SourceObjectError(`cannot read ${path}: not found`);
  const lakefs = {
    getCommit: () => Promise.resolve({ id: "c1" }),
    getRepository: () => Promise.resolve({ storage_namespace: "local://ns" }),
    statObject: (_r: string, _c: string, p: string) =>
      files.has(p)
        ? Promise.resolve(stat(p))
        : Promise.reject(new LakefsNotFoundError(`${p} not found`, "object")),
    getObject: (_r: string, _c: string, p: string) =>
      files.has(p)
        ? Promise.resolve({ body: Readable.from([files.get(p)!]) })
        : Promise.reject(missing(p)),
    listObjects: async function* () {
      yield await Promise.resolve([...files.keys()].sort().map(stat));
    },
    listObjectsAfter: () => Promise.resolve({ results: [], pagination: { has_more: false } }),
  } as unknown as LakefsClient;
  const mirror = new Map<string, Uint8Array>();
  const order: string[] = [];
  const deleted: string[] = [];
  const destination = {
    uri: "s3://mirror/p/",
    capabilities: { maxDeleteBatch: 1000, serverSideCopyFrom: [], contentIdIsChecksum: false },
    key: (p: string) => p,
    describe: (p: string) => p,
    head: (p: string) =>
      Promise.resolve(mirror.has(p) ? { size: mirror.get(p)!.length, metadata: {} } : undefined),
    putStream: async (p: string, body: Readable) => {
      const bytes = await buffer(body);
      // Writes settle out of order unless a barrier holds them.
      for (let i = 0; i < (p.length % 5) * 3; i++) await new Promise((r) => setImmediate(r));
      mirror.set(p, bytes);
      order.push(p);
    },
    putText: (p: string, t: string) => {
      mirror.set(p, Buffer.from(t));
      order.push(p);
      return Promise.resolve();
    },
    deleteBatch: (paths: string[]) => {
      deleted.push(...paths);
      return Promise.resolve([]);
    },
  } as unknown as Destination;
  return { lakefs, destination, mirror, order, deleted };
}

describe("the Iceberg rewrite in the export", () => {
  it("a table whose metadata is not under metadata/ (write.metadata.path) is rewritten and written in a reader's order, with any rounds (regression: its manifest was copied raw under SUCCESS)", async () => {
    for (const rounds of ["iceberg", "spark"] as const) {
      const m = manifest(["s3://repo/main/tbl/data/a.parquet"]);
      const files = new Map<string, Uint8Array>([
        ["tbl/data/a.parquet", Buffer.from("PAR1 data PAR1")],
        ["tbl/meta/custom-m0.avro", m],
        [
          "tbl/meta/snap-1-1-u.avro",
          manifestList([["s3://repo/main/tbl/meta/custom-m0.avro", m.length]]),
        ],
        [
          "tbl/meta/00001-x.metadata.json",
          Buffer.from(
            JSON.stringify({
              "format-version": 2,
              location: "s3://repo/main/tbl",
              properties: { "write.metadata.path": "s3://repo/main/tbl/meta" },
              snapshots: [
                { "snapshot-id": 1, "manifest-list": "s3://repo/main/tbl/meta/snap-1-1-u.avro" },
              ],
            }),
          ),
        ],
      ]);
      const w = world(files);
      const result = await new Exporter({
        lakefs: w.lakefs,
        repository: "repo",
        destination: w.destination,
        rounds,
        icebergRewrite: true,
        copyMode: "stream",
        logger: pino({ level: "silent" }),
        retry: { retries: 0 },
      }).exportAllFromCommit("c1");
      assert.equal(result.status, "SUCCESS", `${rounds}: ${result.failureLines.join("\n")}`);
      const written = (p: string) => Buffer.from(w.mirror.get(p) ?? []).toString("latin1");
      for (const p of [
        "tbl/meta/custom-m0.avro",
        "tbl/meta/snap-1-1-u.avro",
        "tbl/meta/00001-x.metadata.json",
      ]) {
        assert.ok(!written(p).includes("s3://repo/main/"), `${rounds}: ${p} still names lakeFS`);
        assert.ok(
          written(p).includes("s3://mirror/p/tbl/"),
          `${rounds}: ${p} names no mirror path`,
        );
      }
      const at = (p: string) => w.order.indexOf(p);
      assert.ok(at("tbl/data/a.parquet") < at("tbl/meta/custom-m0.avro"), w.order.join(" "));
      assert.ok(at("tbl/meta/custom-m0.avro") < at("tbl/meta/snap-1-1-u.avro"), w.order.join(" "));
      assert.ok(
        at("tbl/meta/snap-1-1-u.avro") < at("tbl/meta/00001-x.metadata.json"),
        w.order.join(" "),
      );
    }
  });

  it("a retried manifest that is gone from the commit is deleted: planning skips it (regression: the export threw and the lane never moved)", async () => {
    const w = world(new Map());
    const result = await new Exporter({
      lakefs: w.lakefs,
      repository: "repo",
      destination: w.destination,
      rounds: "iceberg",
      logger: pino({ level: "silent" }),
      retry: { retries: 0 },
    }).exportCover([], "c2", {
      retry: [{ path: "tbl/metadata/abc-m0.avro", reason: "left undone", op: "delete" }],
    });
    assert.equal(result.status, "SUCCESS", result.failureLines.join("\n"));
    assert.deepEqual(w.deleted, ["tbl/metadata/abc-m0.avro"]);
  });
});

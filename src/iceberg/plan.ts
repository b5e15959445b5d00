import { TableRewriteError } from "../errors.ts";
import { scanAvroMetadata } from "./manifest-scan.ts";
import type { PathMapper } from "./path-map.ts";

/** How a file of an Iceberg table is rewritten for the mirror. */
export type RewriteKind =
  | "position-deletes"
  | "deletion-vectors"
  | "manifest"
  | "manifest-list"
  | "metadata"
  | "version-hint";

/** One barrier of an export: every file of a stage is written before any of the next. */
export interface IcebergStage {
  kind: "delete-files" | "manifests" | "manifest-lists" | "metadata" | "version-hints";
  paths: string[];
}

export interface IcebergPlan {
  /**
   * In write order: delete files, manifests, manifest lists, table metadata, version hints.
   * Data files (and every file not named here) are copied byte for byte, in or before the
   * first stage. `version-hint` files are copied as they are, but last: they name the newest
   * metadata file, which must be in place first.
   */
  stages: IcebergStage[];
  /** Every file of the export that is rewritten, and how. */
  kinds: Map<string, Exclude<RewriteKind, "version-hint">>;
  /**
   * For each manifest list and manifest of the export, the repository paths of the rewritten
   * files whose sizes it records (its manifests; its position-delete and deletion-vector
   * files): those must be written, or their size known, before it is rewritten.
   */
  records: Map<string, string[]>;
  /**
   * Recorded files that are not in this export (an incremental export's older manifests and
   * delete files): their rewritten size is the size of the object already at the mirror.
   */
  external: Set<string>;
  /** Files that cannot be rewritten (a path outside the repository, an unsupported kind). */
  failures: TableRewriteError[];
}

const ICEBERG_MANIFEST_NAME =
  /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-m\d+|optimized-m-[0-9a-f-]{36})\.avro$/i;

/** What Iceberg names its metadata files (Iceberg's TableMetadataParser and SnapshotProducer). */
export function metadataKindByName(path: string): "metadata" | "version-hint" | "avro" | undefined {
  const name = path.slice(path.lastIndexOf("/") + 1);
  if (name.endsWith(".metadata.json") || name.endsWith(".metadata.json.gz")) return "metadata";
  if (name === "version-hint.text") return "version-hint";
  // Manifests and manifest lists live in the table's metadata directory (`snap-*.avro` for
  // lists), or where `write.metadata.path` puts them, named as Iceberg's writers name them
  // (`<uuid>-m<n>.avro`, Spark's `optimized-m-<uuid>.avro`); an Avro data file is never read.
  if (
    name.endsWith(".avro") &&
    (name.startsWith("snap-") || ICEBERG_MANIFEST_NAME.test(name) || /(^|\/)metadata\//.test(path))
  ) {
    return "avro";
  }
  return undefined;
}

/**
 * Plans the rewrite of the Iceberg files among an export's `paths` (repository paths of the
 * exported commit). Reads each manifest list and manifest of the export (with `read`) to learn
 * which files they record: a Parquet file is a position-delete file only because a manifest
 * says so (content 1), and those are the files whose rewrite changes sizes that other files
 * record. A delete file of this export must have its manifest in the export too (Iceberg adds
 * both in one commit).
 */
export async function planIcebergRewrite(
  paths: Iterable<string>,
  mapper: PathMapper,
  read: (path: string) => Promise<Uint8Array>,
): Promise<IcebergPlan> {
  const all = new Set(paths);
  const kinds = new Map<string, Exclude<RewriteKind, "version-hint">>();
  const records = new Map<string, string[]>();
  const hints: string[] = [];
  const failures: TableRewriteError[] = [];
  const deleteFiles = new Map<string, "position-deletes" | "deletion-vectors">();

  const scanAvro = async (path: string) => {
    try {
      const scan = await scanAvroMetadata(path, await read(path));
      kinds.set(path, scan.kind);
      const recorded: string[] = [];
      for (const f of scan.files) {
        const target = mapper.repositoryPath(f.uri);
        if (target === undefined) {
          throw new TableRewriteError(
            `${path} records "${f.uri}", which is not an object of lakeFS repository ${mapper.repository}`,
            path,
            f.uri,
          );
        }
        if (scan.kind === "manifest-list") {
          recorded.push(target);
        } else if (f.content === 1) {
          const format = f.format.toUpperCase();
          if (format !== "PARQUET" && format !== "PUFFIN") {
            throw new TableRewriteError(
              `${path} records the ${f.format} position-delete file ${f.uri}; only Parquet position deletes and Puffin deletion vectors are rewritten`,
              path,
              f.uri,
            );
          }
          deleteFiles.set(target, format === "PARQUET" ? "position-deletes" : "deletion-vectors");
          recorded.push(target);
        }
      }
      records.set(path, [...new Set(recorded)]);
    } catch (err) {
      if (!(err instanceof TableRewriteError)) throw err;
      failures.push(err);
    }
  };
  for (const path of all) {
    const byName = metadataKindByName(path);
    if (byName === "metadata") kinds.set(path, "metadata");
    else if (byName === "version-hint") hints.push(path);
    else if (byName === "avro") await scanAvro(path);
  }
  // A manifest list names its manifests: one of this export that its name did not give away
  // (a writer's own naming outside `metadata/`) is read as a manifest too.
  for (const path of [...kinds.keys()]) {
    if (kinds.get(path) !== "manifest-list") continue;
    for (const m of records.get(path) ?? []) if (all.has(m) && !kinds.has(m)) await scanAvro(m);
  }
  for (const [path, kind] of deleteFiles) if (all.has(path)) kinds.set(path, kind);

  const external = new Set<string>();
  for (const recorded of records.values()) {
    for (const p of recorded) if (!all.has(p)) external.add(p);
  }
  const stage = (kind: IcebergStage["kind"], ...of: RewriteKind[]): IcebergStage => ({
    kind,
    paths: [...kinds]
      .filter(([, k]) => of.includes(k))
      .map(([p]) => p)
      .sort(),
  });
  const stages: IcebergStage[] = [
    stage("delete-files", "position-deletes", "deletion-vectors"),
    stage("manifests", "manifest"),
    stage("manifest-lists", "manifest-list"),
    stage("metadata", "metadata"),
    { kind: "version-hints" as const, paths: hints.sort() },
  ].filter((s) => s.paths.length > 0);
  return { stages, kinds, records, external, failures };
}

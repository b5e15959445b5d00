import { buffer } from "node:stream/consumers";
import type { Destination } from "../destination/destination.ts";
import { LakefsNotFoundError, SourceObjectError, TableRewriteError } from "../errors.ts";
import { PathMapper, planIcebergRewrite, rewriteIcebergFile } from "../iceberg/index.ts";
import type { IcebergPlan, RewriteKind } from "../iceberg/index.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import { Rounds } from "./rounds.ts";
import type { RoundPosition } from "./rounds.ts";

/**
 * The files an Iceberg plan looks at: table metadata, manifests and manifest lists by their
 * names, and the files a manifest may record as delete files (Parquet, Puffin; Avro and ORC
 * ones are refused by the plan). Data files of other formats never matter to it.
 */
const TABLE_FILE =
  /\.(parquet|puffin|avro|orc)$|\.metadata\.json(\.gz)?$|(^|\/)version-hint\.text$/;

export type RewrittenKind = Exclude<RewriteKind, "version-hint">;

const VERSION_HINT = /(^|\/)version-hint\.text$/;

export interface TableRewriteOptions {
  lakefs: LakefsClient;
  repository: string;
  /** The commit the export writes: every file is read at it. */
  commitId: string;
  destination: Destination;
  /** Host names of lakeFS's S3 gateway, for tables whose writers stored HTTP URLs. */
  gatewayHosts?: readonly string[] | undefined;
  signal?: AbortSignal | undefined;
  /**
   * Where the rewritten sizes of recorded files come from: "export" (default), what this export
   * wrote, else the mirror for files it does not write; "mirror", always the object at the
   * mirror (verify, which writes nothing).
   */
  sizesFrom?: "export" | "mirror";
}

/**
 * The Iceberg path rewrite of one export: which of its files are rewritten so that the mirrored
 * table refers to the mirror (table metadata, manifest lists, manifests, position-delete files,
 * deletion vectors; see src/iceberg/), and the rewrite itself. Planned before the export writes
 * anything, from the paths it will copy (an incremental export's diff, a whole export's
 * listing), reading only the manifests and manifest lists among them.
 *
 * Rewritten sizes: a manifest list records its manifests' sizes, a manifest its delete files';
 * the export writes those first (the `iceberg` rounds), and their rewritten sizes are taken
 * from what this export wrote, or, for files an earlier export wrote, from the mirror.
 */
export class TableRewrite {
  readonly #o: TableRewriteOptions;
  readonly #mapper: PathMapper;
  readonly #plan: IcebergPlan;
  readonly #failures = new Map<string, TableRewriteError>();
  readonly #written = new Map<string, number>();

  private constructor(o: TableRewriteOptions, mapper: PathMapper, plan: IcebergPlan) {
    this.#o = o;
    this.#mapper = mapper;
    this.#plan = plan;
    for (const f of plan.failures) this.#failures.set(f.file, f);
  }

  /** Plans the rewrite of the Iceberg files among `paths` (those the export copies). */
  static async plan(o: TableRewriteOptions, paths: AsyncIterable<string>): Promise<TableRewrite> {
    const mapper = new PathMapper({
      repository: o.repository,
      destinationRoot: o.destination.uri,
      ...(o.gatewayHosts ? { gatewayHosts: o.gatewayHosts } : {}),
    });
    const candidates: string[] = [];
    for await (const path of paths) if (TABLE_FILE.test(path)) candidates.push(path);
    const plan = await planIcebergRewrite(candidates, mapper, (path) => read(o, path));
    return new TableRewrite(o, mapper, plan);
  }

  /** How a path of this export is rewritten; undefined: copied byte for byte. */
  kindOf(path: string): RewrittenKind | undefined {
    return this.#plan.kinds.get(path);
  }

  /** Why a path of this export cannot be rewritten (it records a path outside the repository). */
  failureOf(path: string): TableRewriteError | undefined {
    return this.#failures.get(path);
  }

  /** Files the plan refused. */
  get failures(): readonly TableRewriteError[] {
    return this.#plan.failures;
  }

  /** The file's bytes as the mirror keeps them. Throws TableRewriteError. */
  async rewrite(path: string, kind: RewrittenKind, bytes: Uint8Array): Promise<Uint8Array> {
    const out = await rewriteIcebergFile(kind, path, bytes, this.#mapper, async (f) => {
      const known = this.#written.get(f.path);
      if (known !== undefined) return known;
      if (this.#o.sizesFrom !== "mirror" && this.#plan.kinds.has(f.path)) {
        // Rewritten by this export but not written yet: its old size would be recorded.
        throw new TableRewriteError(
          `${path} records ${f.uri}, which this export rewrites but has not written yet (a file named unlike Iceberg's own writers name it?)`,
          path,
          f.uri,
        );
      }
      return (await this.#o.destination.head(f.path, this.#o.signal))?.size;
    });
    return out.bytes;
  }

  /**
   * The export's rounds with this plan's files placed as a reader of the table needs them,
   * whatever the rules say (a table whose metadata is not under `metadata/`, or other rounds
   * than the `iceberg` preset): delete files with the data (round 0), manifests (round 1),
   * their lists after them (round 1, step 1), table metadata (round 2), `version-hint.text`
   * (round 3); every other path where `base` puts it.
   */
  rounds(base: Rounds): Rounds {
    return new Rounds((path): RoundPosition => {
      switch (this.#plan.kinds.get(path)) {
        case "position-deletes":
        case "deletion-vectors":
          return { round: 0 };
        case "manifest":
          return { round: 1, step: 0 };
        case "manifest-list":
          return { round: 1, step: 1 };
        case "metadata":
          return { round: 2 };
        case undefined:
          return VERSION_HINT.test(path) ? { round: 3 } : base.positionOf(path);
      }
    });
  }

  /** Records a rewritten file's size once it is at the mirror. */
  written(path: string, size: number): void {
    this.#written.set(path, size);
  }
}

/**
 * A file's bytes at the commit. A path the export retries that is gone from the commit (its
 * task deletes it) reads as nothing: the plan then refuses it as no table file, which nothing
 * consults, since the export deletes it instead of copying it.
 */
async function read(o: TableRewriteOptions, path: string): Promise<Uint8Array> {
  try {
    const { body } = await o.lakefs.getObject(o.repository, o.commitId, path, o.signal);
    return await buffer(body);
  } catch (err) {
    if (err instanceof SourceObjectError || err instanceof LakefsNotFoundError)
      return new Uint8Array(0);
    throw err;
  }
}

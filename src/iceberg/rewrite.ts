import { rewriteManifest, rewriteManifestList } from "./manifests.ts";
import type { RewrittenSizeOf } from "./manifests.ts";
import type { PathMapper } from "./path-map.ts";
import type { RewriteKind } from "./plan.ts";
import { rewritePositionDeletes } from "./position-deletes.ts";
import { rewritePuffin } from "./puffin.ts";
import { rewriteTableMetadata } from "./table-metadata.ts";

export interface IcebergRewrite {
  /** The file's bytes for the mirror. */
  bytes: Uint8Array;
  /** `bytes.length`: the size the files that record this one must be given. */
  size: number;
  /** The rewritten files whose sizes this one records (repository path → size). */
  sizesRecorded: ReadonlyMap<string, bigint>;
}

const NONE: ReadonlyMap<string, bigint> = new Map();

/**
 * Rewrites one file of an Iceberg table (`file`, its repository path; `bytes`, its content at
 * the exported commit) so that it points at the mirror. `sizeOf` answers the rewritten size of
 * the files a manifest list or manifest records (from this export's earlier stages, or the
 * object already at the mirror); other kinds never call it. Throws TableRewriteError when the
 * file holds a path outside the repository or cannot be read.
 */
export async function rewriteIcebergFile(
  kind: Exclude<RewriteKind, "version-hint">,
  file: string,
  bytes: Uint8Array,
  mapper: PathMapper,
  sizeOf: RewrittenSizeOf,
): Promise<IcebergRewrite> {
  const done = (out: Uint8Array, sizesRecorded = NONE): IcebergRewrite => ({
    bytes: out,
    size: out.length,
    sizesRecorded,
  });
  switch (kind) {
    case "metadata":
      return done(rewriteTableMetadata(file, bytes, mapper));
    case "deletion-vectors":
      return done(rewritePuffin(file, bytes, mapper));
    case "position-deletes":
      return done(await rewritePositionDeletes(file, bytes, mapper));
    case "manifest": {
      const r = await rewriteManifest(file, bytes, mapper, sizeOf);
      return done(r.bytes, r.sizesRecorded);
    }
    case "manifest-list": {
      const r = await rewriteManifestList(file, bytes, mapper, sizeOf);
      return done(r.bytes, r.sizesRecorded);
    }
  }
}

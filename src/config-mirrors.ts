import { errorMessage } from "./errors.ts";
import { destinationsMeet, templateOf } from "./config-overlap.ts";
import { normalizeLocation, parseLocation } from "./destination/schemes.ts";

/** One `mirrors` entry of the configuration. */
export interface MirrorSpec {
  repository: string;
  /** Branch names or globs (`*` any run of characters, `?` one). */
  branches: string[];
  /** `s3://bucket/prefix/` (any destination URI), may use `{repository}` and `{branch}`. */
  destination: string;
  /**
   * The destination holds nothing but this mirror: a full listing may delete keys the commit
   * lacks even before lakefs-mirror has written a ledger or status file there.
   */
  dedicated?: boolean;
}

function hasGlob(branch: string): boolean {
  return /[*?]/.test(branch);
}

export function assertMirrors(value: unknown): asserts value is MirrorSpec[] {
  if (!Array.isArray(value))
    throw new Error("must be a list of {repository, branches, destination, dedicated?}");
  value.forEach((m: unknown, i) => {
    const at = `mirrors[${i}]`;
    if (typeof m !== "object" || m === null) throw new Error(`${at} must be an object`);
    const { repository, branches, destination, dedicated, ...rest } = m as Record<string, unknown>;
    const extra = Object.keys(rest);
    if (extra.length) throw new Error(`${at} has unknown key(s): ${extra.join(", ")}`);
    if (typeof repository !== "string" || !repository)
      throw new Error(`${at}.repository must be a repository name`);
    if (
      !Array.isArray(branches) ||
      branches.length === 0 ||
      !branches.every((b) => typeof b === "string" && b)
    ) {
      throw new Error(`${at}.branches must be a non-empty list of branch names or globs`);
    }
    if (typeof destination !== "string") throw new Error(`${at}.destination must be a URI`);
    if (dedicated !== undefined && typeof dedicated !== "boolean")
      throw new Error(`${at}.dedicated must be true or false`);
    try {
      parseLocation(destination.replaceAll("{repository}", "r").replaceAll("{branch}", "b"));
    } catch (err) {
      throw new Error(`${at}.destination: ${errorMessage(err)}`, { cause: err });
    }
    const manyBranches = branches.length > 1 || (branches as string[]).some(hasGlob);
    if (manyBranches && !destination.includes("{branch}")) {
      throw new Error(
        `${at}.destination must contain {branch}: several branches (${(branches as string[]).join(", ")}) would overwrite one another at ${destination}`,
      );
    }
  });
  assertDistinctDestinations(value as MirrorSpec[]);
}

/**
 * Two mirrors must never write one place, nor one inside the other: a listing of the outer one
 * would see, and by reconciling could delete, the inner one's keys, ledger and lease. Checked
 * over every branch name the globs can match (see destinationsMeet). Lanes that meet at run
 * time (another deployment's, say) are refused too.
 */
function assertDistinctDestinations(mirrors: MirrorSpec[]): void {
  const templates = mirrors.map((m) => ({
    repository: m.repository,
    branches: m.branches,
    template: templateOf(m.destination),
  }));
  for (let i = 0; i < mirrors.length; i++) {
    for (let j = 0; j < i; j++) {
      const met = destinationsMeet(templates[j]!, templates[i]!);
      if (!met) continue;
      const [outer, inner] = met.outerIs === "a" ? [j, i] : [i, j];
      const name = (k: number) => `mirrors[${k}] (${mirrors[k]!.destination})`;
      throw new Error(
        met.outer === met.inner
          ? `mirrors[${j}] and mirrors[${i}] would both write ${met.outer} (${name(j)}, ${name(i)}); give each its own destination`
          : `mirrors[${j}] and mirrors[${i}] would nest: ${met.outer} of ${name(outer)} encloses ${met.inner} of ${name(inner)}, and a listing of the outer one sees, and could delete, the inner one's keys; give each its own destination, side by side`,
      );
    }
  }
}

/** A mirror's destination for one branch, normalized: `s3a://b/x` and `s3://b/x/` are one place. */
export function resolveDestination(template: string, repository: string, branch: string): string {
  const uri = template.replaceAll("{repository}", repository).replaceAll("{branch}", branch);
  return normalizeLocation(uri);
}

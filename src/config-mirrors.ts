import { errorMessage } from "./errors.ts";
import { formatS3Uri, parseS3Uri } from "./s3/uri.ts";

/** One `mirrors` entry of the configuration. */
export interface MirrorSpec {
  repository: string;
  /** Branch names or globs (`*` any run of characters, `?` one). */
  branches: string[];
  /** `s3://bucket/prefix/`, may use `{repository}` and `{branch}`. */
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
    if (typeof destination !== "string") throw new Error(`${at}.destination must be an s3:// URI`);
    if (dedicated !== undefined && typeof dedicated !== "boolean")
      throw new Error(`${at}.dedicated must be true or false`);
    try {
      parseS3Uri(destination.replaceAll("{repository}", "r").replaceAll("{branch}", "b"));
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
 * Two mirrors must never write one place: identical destination templates that can resolve to
 * the same prefix, or fixed destinations equal or nested (a listing of the outer one would see,
 * and could delete, the inner one's keys). Lanes that meet at run time are refused too.
 */
function assertDistinctDestinations(mirrors: MirrorSpec[]): void {
  const normalized = mirrors.map((m) => {
    const probe = formatS3Uri(
      parseS3Uri(
        m.destination.replaceAll("{repository}", "\u0001").replaceAll("{branch}", "\u0002"),
      ),
    );
    return probe.replaceAll("\u0001", "{repository}").replaceAll("\u0002", "{branch}");
  });
  for (let i = 0; i < mirrors.length; i++) {
    for (let j = 0; j < i; j++) {
      const [a, b] = [normalized[i]!, normalized[j]!];
      const fixed = !a.includes("{") && !b.includes("{");
      const sameTemplate =
        a === b &&
        (mirrors[i]!.repository === mirrors[j]!.repository || !a.includes("{repository}"));
      if (sameTemplate || (fixed && (a.startsWith(b) || b.startsWith(a)))) {
        throw new Error(
          `mirrors[${j}] and mirrors[${i}] would both write ${a === b ? a : `${b} and ${a}`}; give each its own destination`,
        );
      }
    }
  }
}

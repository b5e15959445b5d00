import { inspect } from "node:util";
import { ConfigError } from "../errors.ts";

export interface RoundRule {
  /**
   * A regular expression tested against the object's path. When it has a named group
   * `version` of decimal digits, the paths it matches are also ordered by that number within
   * their round (see RoundPosition).
   */
  pattern: string;
  /** Rounds run in ascending order; paths that match no rule go to round 0. */
  round: number;
  /** Orders the paths of one round and version; default 0. */
  step?: number;
}

/**
 * Where a path goes: rounds run in ascending `round`; within a round, paths with a `version`
 * run in ascending version, then paths without one; within one version, ascending `step`.
 * Every distinct position is a barrier: none of its writes starts before every write of the
 * positions before it has settled, and a failure stops the positions after it. Round 0 is
 * written while the listing streams, so version and step mean nothing there.
 */
export interface RoundPosition {
  round: number;
  /** A table version (Delta Lake's are 20-digit numbers, beyond a double's exact range). */
  version?: bigint | undefined;
  step?: number | undefined;
}

/**
 * Which round a path goes in, as the Spark exporter's custom filter decides it: a round number,
 * or a position with a version and step for logs that readers need in version order.
 */
export type RoundFunction = (path: string) => number | RoundPosition;

/** Rounds that suit a way of writing tables, each with whether deletes wait for every copy. */
export interface RoundPreset {
  rules: RoundRule[];
  /** Deletes run after every copy of the export, so readers of the old state find its files. */
  deletesLast: boolean;
}

export type RoundPresetName = "spark" | "delta" | "iceberg";

const LOG = "(.*/|^)_delta_log/";
const V = "(?<version>\\d+)";

/**
 * - spark: a job's `_SUCCESS` marker after its data, so a reader never takes a half-copied
 *   directory for a finished one (the lakeFS Spark exporter's rule).
 * - delta: what the Delta Lake protocol (PROTOCOL.md, "File Types") lets a reader rely on.
 *   Data files, deletion vectors, change data and the V2 checkpoints' `_delta_log/_sidecars/`
 *   come first (round 0): log entries and checkpoints reference them. Then each version in
 *   ascending order, each a barrier, since readers refuse a log with a gap (delta-rs: "Expected
 *   contiguous commit files"; Spark: DELTA_VERSIONS_NOT_CONTIGUOUS): the commit `<v>.json`
 *   (and the catalog-managed table's staged commits `_staged_commits/<v>.<uuid>.json`, or the
 *   older `_commits/`), then what the protocol says is written only after that commit:
 *   checkpoints of every kind (`<v>.checkpoint.parquet`, multi-part
 *   `<v>.checkpoint.<o>.<p>.parquet`, UUID-named `<v>.checkpoint.<uuid>.json|parquet`), the
 *   version checksum `<v>.crc`, and the log compaction `<x>.<v>.compacted.json` (it stands for
 *   the commits up to `v`). Other `_delta_log/` entries follow the versions; `_last_checkpoint`
 *   (which names a checkpoint) and `_SUCCESS` markers come after the whole log; deletes last,
 *   since a reader of the previous version still reads the files a new version removed.
 * - iceberg: Apache Iceberg's manifests after data (and delete files), manifest lists after
 *   the manifests, table metadata after the lists, `version-hint.text` last; deletes last,
 *   for readers of the previous snapshot.
 */
export const roundPresets: Readonly<Record<RoundPresetName, RoundPreset>> = {
  spark: { rules: [{ pattern: "(.*/|^)_SUCCESS$", round: 1 }], deletesLast: false },
  delta: {
    rules: [
      { pattern: `${LOG}_last_checkpoint$`, round: 2 },
      { pattern: `${LOG}_sidecars/`, round: 0 },
      { pattern: `${LOG}${V}\\.json$`, round: 1, step: 0 },
      { pattern: `${LOG}_(staged_)?commits/${V}\\.[^/]*\\.json$`, round: 1, step: 0 },
      { pattern: `${LOG}${V}\\.checkpoint(\\.[^/]+)?\\.(parquet|json)$`, round: 1, step: 1 },
      { pattern: `${LOG}${V}\\.crc$`, round: 1, step: 1 },
      { pattern: `${LOG}\\d+\\.${V}\\.compacted\\.json$`, round: 1, step: 1 },
      { pattern: LOG, round: 1 },
      { pattern: "(.*/|^)_SUCCESS$", round: 2 },
    ],
    deletesLast: true,
  },
  iceberg: {
    rules: [
      { pattern: "(.*/|^)metadata/version-hint\\.text$", round: 3 },
      { pattern: "(.*/|^)metadata/[^/]*\\.metadata\\.json(\\.gz)?$", round: 2 },
      // Manifest lists (`snap-<snapshot>-<attempt>-<uuid>.avro`) after the manifests they
      // list: with the path rewrite, a list records its manifests' rewritten sizes.
      { pattern: "(.*/|^)metadata/snap-[^/]*\\.avro$", round: 1, step: 1 },
      { pattern: "(.*/|^)metadata/", round: 1 },
      { pattern: "(.*/|^)_SUCCESS$", round: 1 },
    ],
    deletesLast: true,
  },
};

/**
 * Spark writes a `_SUCCESS` marker after a job's data: exporting it with the data could tell
 * a reader the directory is complete before it is. So by default `_SUCCESS` keys go last.
 */
export const defaultRoundRules: RoundRule[] = roundPresets.spark.rules;

export function isRoundPresetName(name: string): name is RoundPresetName {
  return Object.hasOwn(roundPresets, name);
}

/** A position with every field given: what the export orders by. */
export interface Position {
  round: number;
  version: bigint | undefined;
  step: number;
}

/** The position after every other: deletes that wait for every copy. */
export const LAST: Position = { round: Number.POSITIVE_INFINITY, version: undefined, step: 0 };

/** Orders positions as the export runs them (see RoundPosition). */
export function comparePositions(a: Position, b: Position): number {
  if (a.round !== b.round) return a.round < b.round ? -1 : 1;
  if (a.version !== b.version) {
    if (a.version === undefined) return 1;
    if (b.version === undefined) return -1;
    return a.version < b.version ? -1 : 1;
  }
  return a.step - b.step;
}

export function samePosition(a: Position, b: Position): boolean {
  return a.round === b.round && a.version === b.version && a.step === b.step;
}

const isNat = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 0;

/** Rules given as data, or a function; the first matching rule decides, else round 0. */
export class Rounds {
  readonly #of: (path: string) => Position;

  constructor(rules: RoundRule[] | RoundFunction = defaultRoundRules) {
    if (typeof rules === "function") {
      this.#of = (path) => first(fromFunction(rules(path), path));
      return;
    }
    const compiled = rules.map((r) => {
      if (!isNat(r.round)) {
        throw new ConfigError(`export round for pattern "${r.pattern}" must be an integer >= 0`);
      }
      if (r.step !== undefined && !isNat(r.step)) {
        throw new ConfigError(`export step for pattern "${r.pattern}" must be an integer >= 0`);
      }
      let re: RegExp;
      try {
        re = new RegExp(r.pattern, "u");
      } catch (err) {
        throw new ConfigError(
          `export round pattern "${r.pattern}" is not a valid regular expression`,
          { cause: err },
        );
      }
      return { re, round: r.round, step: r.step ?? 0 };
    });
    this.#of = (path) => {
      for (const r of compiled) {
        const m = r.re.exec(path);
        if (!m) continue;
        const v = m.groups?.["version"];
        return first({
          round: r.round,
          version: v !== undefined && /^\d+$/.test(v) ? BigInt(v) : undefined,
          step: r.step,
        });
      }
      return FIRST;
    };
  }

  /** The round of a path; round 0 runs while the listing streams, later ones after it. */
  of(path: string): number {
    return this.#of(path).round;
  }

  /** The full position of a path: its round, and its version and step within the round. */
  positionOf(path: string): Position {
    return this.#of(path);
  }
}

const FIRST: Position = { round: 0, version: undefined, step: 0 };

const first = (p: Position): Position => (p.round === 0 ? FIRST : p);

function fromFunction(given: number | RoundPosition, path: string): Position {
  // What a function gives is checked as unknown: JavaScript callers have no types to keep.
  const p = (typeof given === "number" ? { round: given } : given) as {
    round: unknown;
    version?: unknown;
    step?: unknown;
  };
  if (typeof p !== "object" || p === null || !isNat(p.round))
    throw new TypeError(
      `the round function gave ${inspect(typeof given === "object" ? given?.round : given)} for ${path}: want an integer >= 0`,
    );
  if (p.version !== undefined && (typeof p.version !== "bigint" || p.version < 0n))
    throw new TypeError(
      `the round function gave version ${inspect(p.version)} for ${path}: want a bigint >= 0`,
    );
  if (p.step !== undefined && !isNat(p.step))
    throw new TypeError(
      `the round function gave step ${inspect(p.step)} for ${path}: want an integer >= 0`,
    );
  return { round: p.round, version: p.version, step: p.step ?? 0 };
}

import { ConfigError } from "../errors.ts";

export interface RoundRule {
  /** A regular expression tested against the object's path. */
  pattern: string;
  /** Rounds run in ascending order; paths that match no rule go to round 0. */
  round: number;
}

/** Which round a path goes in, as the Spark exporter's custom filter decides it. */
export type RoundFunction = (path: string) => number;

/** Rounds that suit a way of writing tables, each with whether deletes wait for every copy. */
export interface RoundPreset {
  rules: RoundRule[];
  /** Deletes run after every copy of the export, so readers of the old state find its files. */
  deletesLast: boolean;
}

export type RoundPresetName = "spark" | "delta" | "iceberg";

/**
 * - spark: a job's `_SUCCESS` marker after its data, so a reader never takes a half-copied
 *   directory for a finished one (the lakeFS Spark exporter's rule).
 * - delta: Delta Lake's `_delta_log/` entries after the data files they reference, and
 *   `_last_checkpoint` after the checkpoints it names; deletes last, since a reader of the
 *   previous log version still reads the files a new version removed.
 * - iceberg: Apache Iceberg's manifests after data, table metadata after the manifests it
 *   lists, `version-hint.text` last; deletes last, for readers of the previous snapshot.
 */
export const roundPresets: Readonly<Record<RoundPresetName, RoundPreset>> = {
  spark: { rules: [{ pattern: "(.*/|^)_SUCCESS$", round: 1 }], deletesLast: false },
  delta: {
    rules: [
      { pattern: "(.*/|^)_delta_log/_last_checkpoint$", round: 2 },
      { pattern: "(.*/|^)_delta_log/", round: 1 },
      { pattern: "(.*/|^)_SUCCESS$", round: 1 },
    ],
    deletesLast: true,
  },
  iceberg: {
    rules: [
      { pattern: "(.*/|^)metadata/version-hint\\.text$", round: 3 },
      { pattern: "(.*/|^)metadata/[^/]*\\.metadata\\.json$", round: 2 },
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

/** Rules given as data, or a function; the first matching rule decides, else round 0. */
export class Rounds {
  readonly #of: RoundFunction;

  constructor(rules: RoundRule[] | RoundFunction = defaultRoundRules) {
    if (typeof rules === "function") {
      this.#of = (path) => {
        const round = rules(path);
        if (!Number.isInteger(round) || round < 0)
          throw new TypeError(`the round function gave ${round} for ${path}: want an integer >= 0`);
        return round;
      };
      return;
    }
    const compiled = rules.map((r) => {
      if (!Number.isInteger(r.round) || r.round < 0) {
        throw new ConfigError(`export round for pattern "${r.pattern}" must be an integer >= 0`);
      }
      try {
        return { re: new RegExp(r.pattern, "u"), round: r.round };
      } catch (err) {
        throw new ConfigError(
          `export round pattern "${r.pattern}" is not a valid regular expression`,
          { cause: err },
        );
      }
    });
    this.#of = (path) => compiled.find((r) => r.re.test(path))?.round ?? 0;
  }

  /** The round of a path; round 0 runs while the listing streams, later ones after it. */
  of(path: string): number {
    return this.#of(path);
  }
}

import { ConfigError } from "../errors.ts";

export interface RoundRule {
  /** A regular expression tested against the object's path. */
  pattern: string;
  /** Rounds run in ascending order; paths that match no rule go to round 0. */
  round: number;
}

/**
 * Spark writes a `_SUCCESS` marker after a job's data: exporting it with the data could tell
 * a reader the directory is complete before it is. So by default `_SUCCESS` keys go last.
 */
export const defaultRoundRules: RoundRule[] = [{ pattern: "(.*/|^)_SUCCESS$", round: 1 }];

export class Rounds {
  readonly #rules: { re: RegExp; round: number }[];
  /** Every round number in use, ascending, always including 0. */
  readonly order: number[];

  constructor(rules: RoundRule[] = defaultRoundRules) {
    this.#rules = rules.map((r) => {
      if (!Number.isInteger(r.round) || r.round < 0) {
        throw new ConfigError(`export round for pattern "${r.pattern}" must be an integer >= 0`);
      }
      try {
        return { re: new RegExp(r.pattern, "u"), round: r.round };
      } catch (err) {
        throw new ConfigError(
          `export round pattern "${r.pattern}" is not a valid regular expression`,
          {
            cause: err,
          },
        );
      }
    });
    this.order = [...new Set([0, ...rules.map((r) => r.round)])].sort((a, b) => a - b);
  }

  /** The first matching rule decides. */
  of(path: string): number {
    for (const r of this.#rules) if (r.re.test(path)) return r.round;
    return 0;
  }
}

import { sleep } from "../helpers/crash.ts";
import { concurrentWriters, exportIntervals } from "../helpers/group.ts";
import { newestSuccess } from "./checks.ts";
import type { CliRecord, Difference, ForeignKeys, Judge, ProgressWatch } from "./checks.ts";
import type { Fleet } from "./fleet.ts";
import type { Observed, Snapshot } from "./oracle.ts";
import { short } from "./world.ts";

/** A broken promise of lakefs-mirror, found by the fuzz: ends the run with its evidence. */
export class FuzzFailure extends Error {
  readonly kind: string;
  readonly details: string[];

  constructor(kind: string, message: string, details: string[] = []) {
    super(message);
    this.kind = kind;
    this.details = details;
  }
}

export interface RefereeParts {
  observed: Observed;
  judge: Judge;
  foreign: ForeignKeys;
  watch: ProgressWatch;
  fleet: Fleet;
  cliRuns: readonly CliRecord[];
}

/** Applies the invariants of checks.ts to the running system; throws FuzzFailure when one breaks. */
export class Referee {
  readonly #p: RefereeParts;

  constructor(parts: RefereeParts) {
    this.#p = parts;
  }

  /**
   * What holds at any moment: foreign keys, the SUCCESS rule, progress. A difference must
   * still be there a moment later to count, so that no check races a write it cannot see.
   */
  async check(): Promise<void> {
    const { observed, judge, cliRuns } = this.#p;
    let s = await observed.snapshot();
    await this.foreign(s);
    let r = await judge.successRule(s, cliRuns);
    if (r.differences.length) {
      const first = r;
      await sleep(1500);
      s = await observed.snapshot();
      await this.foreign(s);
      r = await judge.successRule(s, cliRuns);
      if (r.differences.length) {
        const n = r.newest!;
        const writer = n.cli ? `the CLI (${n.cli.mode}, step ${n.cli.step})` : "a daemon";
        throw new FuzzFailure(
          "mirror differs under SUCCESS",
          `the newest SUCCESS ${n.key} (commit ${short(n.commit)}, written by ${writer}) is over a ` +
            `mirror in the state of none of the commits an export may be writing ` +
            `(${r.allowed.map(short).join(", ")})`,
          [
            ...formatDiffs(r.differences),
            ...(first.newest?.key !== n.key ? [`(first seen under ${first.newest?.key})`] : []),
          ],
        );
      }
    }
    await this.progress(s);
  }

  async foreign(s: Snapshot): Promise<void> {
    const lost = await this.#p.foreign.lost(s, this.#p.observed);
    if (lost.length)
      throw new FuzzFailure(
        "foreign key deleted",
        `${lost.length} foreign keys under the prefix were deleted or changed`,
        lost,
      );
  }

  async progress(s: Snapshot): Promise<void> {
    const { fleet, watch } = this.#p;
    for (const slot of fleet.running()) {
      const status = await fleet.status(slot);
      if (!status) continue;
      const stuck = watch.observe(slot.index, status, s.newestWrite, Date.now());
      if (stuck.length) throw new FuzzFailure("lane stuck exporting", stuck[0]!, stuck.slice(1));
    }
  }

  /**
   * With faults off and every daemon up: within `boundMs` the newest SUCCESS names `head` over
   * a mirror equal to it, and it stays so a moment later. Returns how long it took.
   */
  async converge(head: string, boundMs: number): Promise<number> {
    const { observed, judge, cliRuns, fleet } = this.#p;
    const t0 = Date.now();
    for (;;) {
      const s = await observed.snapshot();
      await this.foreign(s);
      await this.progress(s);
      const newest = newestSuccess(s, cliRuns);
      const diffs = newest?.commit === head ? await judge.strict(s, head) : [];
      if (newest?.commit === head && diffs.length === 0) break;
      if (Date.now() - t0 > boundMs) {
        const lanes = await Promise.all(
          fleet
            .running()
            .map(
              async (slot) =>
                `daemon ${slot.index}: ${JSON.stringify((await fleet.status(slot))?.lanes ?? "no answer")}`,
            ),
        );
        throw new FuzzFailure(
          "did not converge",
          `${Math.round(boundMs / 1000)} s after faults stopped, the newest SUCCESS is ` +
            `${newest?.key ?? "none"}, not one for HEAD ${short(head)} over an equal mirror`,
          [...formatDiffs(diffs), ...lanes],
        );
      }
      await sleep(1000);
    }
    const took = Date.now() - t0;
    this.oneWriter();
    // Nothing may change once the lane is current (a late write of an export that lost its
    // lease, say).
    await sleep(1500);
    const diffs = await judge.strict(await observed.snapshot(), head);
    if (diffs.length)
      throw new FuzzFailure(
        "mirror changed after converging",
        `keys changed after the mirror equalled ${short(head)}`,
        formatDiffs(diffs),
      );
    return took;
  }

  /**
   * From the daemons' own "export finished" lines: two daemons never wrote the destination at
   * once (each line spans the run that wrote, from its start to after its status file).
   */
  oneWriter(): void {
    const intervals = this.#p.fleet.outputs().flatMap((o) => exportIntervals(o.name, o.text));
    const pairs = concurrentWriters(intervals);
    if (!pairs.length) return;
    const iso = (t: number) => new Date(t).toISOString().slice(11, 23);
    throw new FuzzFailure(
      "two daemons wrote at once",
      `${pairs.length} pairs of exports by different daemons overlap in time at the destination`,
      pairs.map(
        ([a, b]) =>
          `${a.daemon} ${iso(a.start)}–${iso(a.end)} ${a.status} (epoch ${a.leaseEpoch}) and ` +
          `${b.daemon} ${iso(b.start)}–${iso(b.end)} ${b.status} (epoch ${b.leaseEpoch})`,
      ),
    );
  }
}

function formatDiffs(diffs: Difference[]): string[] {
  const shown = diffs
    .slice(0, 30)
    .map((d) => `${JSON.stringify(d.key)}: expected ${d.expected}; actual ${d.actual}`);
  if (diffs.length > 30) shown.push(`… and ${diffs.length - 30} more keys`);
  return shown;
}

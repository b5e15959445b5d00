import type { DaemonStatus } from "../../src/daemon/daemon.ts";
import type { Entry, Expected, Listed, Observed, Served, Snapshot } from "./oracle.ts";
import { parseStatus, sameBytes, sameServed } from "./oracle.ts";
import { FRAMES_DIR } from "./paths.ts";
import { short } from "./world.ts";
import type { World } from "./world.ts";

/**
 * The fuzz's invariants, judged from lakeFS and S3 alone.
 *
 * The SUCCESS rule. Let C be the commit of the newest SUCCESS status file (by the store's
 * LastModified), written at t. Every export that may still be writing when the check looks
 * began after t, or is a CLI run that ended after t; so each key must be as in C, or as in a
 * commit such an export may be writing: one that was HEAD at some time since t (less a slack
 * for the clocks of this machine), or the target of such a CLI run. With all writers idle that
 * is the promise itself, the mirror equals C; while a daemon exports toward a newer HEAD it
 * still catches strays, lost deletes, stale versions and writes by a daemon that lost its lease.
 * A CLI whole export (`--branch`, `--commit_id`) never deletes, as the Spark exporter's does not,
 * so its SUCCESS only promises that C's objects are there; a diff export (`--prev_commit_id`)
 * that the paths of its diff are.
 *
 * Foreign keys (names lakeFS never has) are never deleted or changed, whatever happens.
 */

/** The slack between a status file's LastModified and this process's timestamps. */
const SLACK_MS = 2000;

export interface Difference {
  key: string;
  expected: string;
  actual: string;
}

export interface CliRecord {
  step: number;
  mode: "branch" | "commit" | "diff" | "sync";
  target: string;
  prev: string | undefined;
  start: number;
  end: number;
  statusKey: string | undefined;
}

export interface Newest {
  key: string;
  commit: string;
  lastModified: number;
  /** The CLI run that wrote it, if one did. */
  cli: CliRecord | undefined;
}

export function newestSuccess(s: Snapshot, cliRuns: readonly CliRecord[]): Newest | undefined {
  let best: { key: string; commit: string; lm: number; at: number } | undefined;
  for (const [key, l] of s.status) {
    const p = parseStatus(key);
    if (p?.status !== "SUCCESS") continue;
    if (!best || l.lastModified > best.lm || (l.lastModified === best.lm && p.at > best.at))
      best = { key, commit: p.commit, lm: l.lastModified, at: p.at };
  }
  if (!best) return undefined;
  const cli = cliRuns.find((r) => r.statusKey === best.key);
  return { key: best.key, commit: best.commit, lastModified: best.lm, cli };
}

type Candidate = { commit: string; entry: Entry | undefined };

/** What the judge needs of a branch's history: its HEADs over time and the paths written. */
export type BranchHistory = Pick<World, "headsSince" | "touched">;

export class Judge {
  readonly #expected: Expected;
  readonly #observed: Observed;
  readonly #world: BranchHistory;

  constructor(expected: Expected, observed: Observed, world: BranchHistory) {
    this.#expected = expected;
    this.#observed = observed;
    this.#world = world;
  }

  /** Differences from the SUCCESS rule (see above); none when there is no SUCCESS yet. */
  async successRule(
    s: Snapshot,
    cliRuns: readonly CliRecord[],
  ): Promise<{ newest: Newest | undefined; differences: Difference[]; allowed: string[] }> {
    const newest = newestSuccess(s, cliRuns);
    if (!newest) return { newest, differences: [], allowed: [] };
    const since = (newest.cli ? newest.cli.start : newest.lastModified) - SLACK_MS;
    const allowed = new Set([newest.commit, ...this.#world.headsSince(since)]);
    for (const r of cliRuns) if (r.end >= since) allowed.add(r.target);
    const c = await this.#expected.listing(newest.commit);
    let keys: Iterable<string>;
    if (!newest.cli || newest.cli.mode === "sync")
      keys = new Set([...s.mirrored.keys(), ...c.keys()]);
    else if (newest.cli.mode === "diff")
      keys = await this.#expected.diffPaths(newest.cli.prev!, newest.commit);
    else keys = c.keys();
    const differences = await this.#compare(s, [...keys], [newest.commit, ...allowed]);
    return { newest, differences, allowed: [...allowed] };
  }

  /** Differences between the mirror and exactly `commit`. */
  strict(s: Snapshot, commit: string): Promise<Difference[]> {
    return this.#expected
      .listing(commit)
      .then((c) => this.#compare(s, [...new Set([...s.mirrored.keys(), ...c.keys()])], [commit]));
  }

  async #compare(s: Snapshot, keys: string[], commits: string[]): Promise<Difference[]> {
    const listings = await Promise.all(
      [...new Set(commits)].map(async (commit) => ({
        commit,
        listing: await this.#expected.listing(commit),
      })),
    );
    // Metadata costs a HEAD per key: every path the fuzz wrote after the first commit, and a
    // sample of the untouched frames (their metadata never changes).
    const sample = new Set<string>();
    const frames = keys.filter((k) => k.startsWith(FRAMES_DIR) && !this.#world.touched.has(k));
    for (let i = 0; i < 10 && frames.length; i++)
      sample.add(frames[Math.floor(Math.random() * frames.length)]!);
    const untouched = new Set(frames);
    const metaChecked = (k: string) => !untouched.has(k) || sample.has(k);
    const out: Difference[] = [];
    const work = keys.map((key) => async () => {
      const cands: Candidate[] = listings.map((l) => ({
        commit: l.commit,
        entry: l.listing.get(key),
      }));
      const actual = s.mirrored.get(key);
      if (await this.#matches(key, actual, cands, metaChecked(key))) return;
      out.push({
        key,
        expected: await describe(this.#expected, cands),
        actual: await this.#describe(key, actual),
      });
    });
    for (let i = 0; i < work.length; i += 32)
      await Promise.all(work.slice(i, i + 32).map((w) => w()));
    return out.sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  /**
   * Whether the key is in the state of one of the candidates. With metadata checked, one HEAD
   * gives bytes and metadata of the same version (the listing may be older by then).
   */
  async #matches(key: string, listed: Listed | undefined, cands: Candidate[], meta: boolean) {
    let head: Served | undefined;
    let actual = listed;
    if (meta) {
      const h = await this.#observed.head(key);
      head = h;
      actual = h ? { etag: h.etag, size: h.size, lastModified: 0 } : undefined;
    }
    if (!actual) return cands.some((c) => !c.entry);
    for (const c of cands) {
      if (!c.entry) continue;
      if (!(await sameBytes(this.#expected, this.#observed, c.commit, c.entry, key, actual)))
        continue;
      if (!meta) return true;
      if (head && sameServed(head, await this.#expected.served(c.commit, c.entry))) return true;
    }
    return false;
  }

  async #describe(key: string, actual: Listed | undefined): Promise<string> {
    if (!actual) return "absent";
    const h = await this.#observed.head(key).catch(() => undefined);
    return `${actual.etag.slice(0, 8)} ${actual.size} B${h ? ` ${h.contentType} ${JSON.stringify(h.metadata)}` : ""}`;
  }
}

async function describe(expected: Expected, cands: Candidate[]): Promise<string> {
  const parts = await Promise.all(
    cands.map(async (c) => {
      if (!c.entry) return `absent (${short(c.commit)})`;
      const served = await expected.served(c.commit, c.entry).catch(() => undefined);
      const meta = served ? ` ${served.contentType} ${JSON.stringify(served.metadata)}` : "";
      return `${c.entry.checksum.slice(0, 8)} ${c.entry.size} B${meta} (${short(c.commit)})`;
    }),
  );
  return [...new Set(parts)].join(" | ");
}

/** Foreign keys written so far, each with what it holds. */
export class ForeignKeys {
  readonly written = new Map<string, { etag: string; size: number; step: number }>();

  /** Keys that are gone or hold something else (a key the listing lacks is asked for by HEAD). */
  async lost(s: Snapshot, observed: Observed): Promise<string[]> {
    const out: string[] = [];
    for (const [key, w] of this.written) {
      const now = s.foreign.get(key) ?? (await observed.head(key));
      if (!now) out.push(`${JSON.stringify(key)} (written at step ${w.step}) is gone`);
      else if (now.etag !== w.etag || now.size !== w.size)
        out.push(`${JSON.stringify(key)} (written at step ${w.step}) was overwritten`);
    }
    return out;
  }
}

/**
 * Watches every running daemon's lanes: one "exporting" with no sign of progress for longer
 * than the bound is stuck. Progress is any change of what /status shows of the lane (its
 * `lastProgressAt` when the daemon reports one) or a new write under the prefix.
 */
export class ProgressWatch {
  readonly #bound: number;
  readonly #seen = new Map<string, { signature: string; since: number }>();

  constructor(boundMs: number) {
    this.#bound = boundMs;
  }

  /** Forget what was seen of a daemon (paused, resumed, restarted: its clock stopped). */
  forget(daemon: number): void {
    for (const k of [...this.#seen.keys()]) if (k.startsWith(`${daemon}:`)) this.#seen.delete(k);
  }

  observe(daemon: number, status: DaemonStatus, newestWrite: number, now: number): string[] {
    const stuck: string[] = [];
    for (const lane of status.lanes) {
      const id = `${daemon}:${lane.destination}`;
      if (lane.state !== "exporting") {
        this.#seen.delete(id);
        continue;
      }
      const l = lane as typeof lane & { lastProgressAt?: unknown; stalled?: unknown };
      const signature = JSON.stringify([
        lane.lastExportedCommit,
        lane.lastSuccessCommit,
        lane.headCommit,
        lane.failingPaths,
        lane.lastError,
        l.lastProgressAt ?? null,
        newestWrite,
      ]);
      const seen = this.#seen.get(id);
      if (!seen || seen.signature !== signature) {
        this.#seen.set(id, { signature, since: now });
        continue;
      }
      if (now - seen.since > this.#bound) {
        stuck.push(
          `daemon ${daemon}: lane ${lane.repository}/${lane.branch} has been "exporting" for ` +
            `${Math.round((now - seen.since) / 1000)} s with no progress ` +
            `(status ${JSON.stringify(lane)}; newest write under the prefix ${new Date(newestWrite).toISOString()})`,
        );
      }
    }
    return stuck;
  }
}

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { ledgerAfterCliExport } from "../../../src/cli/cli-lane.ts";
import {
  beginAttempt,
  completeFailure,
  completeSuccess,
  emptyLedger,
  markRebuilt,
  planCover,
  staleCover,
} from "../../../src/ledger/ledger.ts";
import type { FailedPath, Ledger } from "../../../src/ledger/ledger.ts";

/**
 * The cover rule against a model of the destination. Commits are small trees over hostile
 * paths; the destination is a map of what each key holds. Exports write only what their plan
 * covers; the adversary decides which of those writes land when an export fails, stops or is
 * killed. After every step, for every commit X: the keys at the destination that differ from X
 * must lie in what planCover(ledger, X) would look at. A ledger lost and rebuilt from status
 * files (after whole exports that never delete) must be checked by a reconcile first.
 */

/** Keys that prefix one another, non-padded numbers, unicode with astral code points, %, +. */
const PATHS = [
  "frames/9",
  "frames/10",
  "frames/1",
  "a",
  "a/b",
  "a b",
  "%25",
  "+",
  "é",
  "\u{1F600}/x",
];

type Tree = Map<string, number>;

const tree = fc
  .array(fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }), {
    minLength: PATHS.length,
    maxLength: PATHS.length,
  })
  .map((vals) => {
    const t: Tree = new Map();
    vals.forEach((v, i) => v !== undefined && t.set(PATHS[i]!, v));
    return t;
  });

const step = fc.record({
  kind: fc.constantFrom(
    "daemon",
    "daemon",
    "daemon",
    "lose",
    "plain-whole",
    "cli-whole",
    "cli-diff",
    "cli-sync",
  ),
  /** A new commit at HEAD, or a reset to an older one. */
  head: fc.oneof(
    tree.map((t) => ({ tree: t })),
    fc.nat().map((n) => ({ reset: n })),
  ),
  outcome: fc.constantFrom("success", "failure", "stopped", "killed"),
  /** Per path: whether its write lands (an adversary's choices), and whether it fails. */
  lands: fc.array(fc.boolean(), { minLength: PATHS.length, maxLength: PATHS.length }),
  fails: fc.array(fc.boolean(), { minLength: PATHS.length, maxLength: PATHS.length }),
  from: fc.nat(),
  seconds: fc.integer({ min: 0, max: 40 }),
});

type Step = typeof step extends fc.Arbitrary<infer T> ? T : never;

function differs(a: Tree, b: Tree): string[] {
  return PATHS.filter((p) => a.get(p) !== b.get(p));
}

const backoffSeconds = (n: number) => 10 * 2 ** (n - 1);

interface World {
  commits: Tree[];
  dest: Tree;
  ledger: Ledger;
  /** The destination's ledger and the local copy are gone. */
  lost: boolean;
  /** Status files in order: commit and status. */
  statuses: { commit: string; ok: boolean }[];
  now: number;
}

const id = (i: number) => `c${i}`;
const treeOf = (w: World, c: string) => w.commits[Number(c.slice(1))]!;

/** What a daemon with no ledger anywhere rebuilds from the status files (LedgerStore.load). */
function rebuild(w: World): Ledger {
  const empty = emptyLedger("repo", "main");
  const newest = w.statuses.findLastIndex((s) => s.ok);
  if (newest < 0) return empty;
  const base = w.statuses[newest]!.commit;
  const attempts = [
    ...new Set(
      w.statuses
        .slice(newest + 1)
        .filter((s) => !s.ok)
        .map((s) => s.commit),
    ),
  ];
  return markRebuilt({ ...empty, base, lastSuccess: base, attempts }, "rebuilt from status files");
}

function checkCovered(w: World, ledger: Ledger): void {
  const now = new Date(w.now);
  w.commits.forEach((t, i) => {
    const plan = planCover(ledger, id(i), now);
    const wrong = differs(w.dest, t);
    if (plan.kind === "reconcile") return;
    if (plan.kind === "current") {
      assert.deepEqual(wrong, [], `"current" for ${id(i)} while ${wrong.join(", ")} differ`);
      return;
    }
    const covered = new Set<string>(ledger.failed.map((f) => f.path));
    if (plan.kind === "diff")
      for (const f of plan.from) for (const p of differs(treeOf(w, f), t)) covered.add(p);
    for (const p of wrong)
      assert.ok(covered.has(p), `${p} differs from ${id(i)} but ${JSON.stringify(plan)} misses it`);
  });
}

/** Runs writes of `paths` to their state in `target`, as the step's outcome allows. */
function write(
  w: World,
  target: Tree,
  paths: Iterable<string>,
  s: Step,
  carry: readonly FailedPath[],
): { status: "SUCCESS" | "FAILURE"; unfinished: FailedPath[] | undefined; killed: boolean } {
  const tried = new Set(paths);
  const failed: FailedPath[] = [];
  for (const p of tried) {
    const i = PATHS.indexOf(p);
    const ok = s.outcome === "success" || (s.outcome === "failure" ? !s.fails[i] : s.lands[i]);
    // A failed copy or delete may still have landed (atomic: old or new state, nothing else).
    if (ok || s.lands[i]) {
      const v = target.get(p);
      if (v === undefined) w.dest.delete(p);
      else w.dest.set(p, v);
    }
    if (!ok) failed.push({ path: p, reason: "injected" });
  }
  for (const c of carry) if (!tried.has(c.path)) failed.push(c);
  if (s.outcome === "killed") return { status: "FAILURE", unfinished: undefined, killed: true };
  if (s.outcome === "stopped") return { status: "FAILURE", unfinished: undefined, killed: false };
  return {
    status: failed.length === 0 ? "SUCCESS" : "FAILURE",
    unfinished: failed,
    killed: false,
  };
}

function run(steps: Step[]) {
  const w: World = {
    commits: [new Map<string, number>()],
    dest: new Map(),
    ledger: emptyLedger("repo", "main"),
    lost: false,
    statuses: [],
    now: Date.parse("2026-11-25T10:00:00Z"),
  };
  const act = (s: Step, H: string, target: Tree, now: Date) => {
    if (s.kind === "lose") {
      w.lost = true;
    } else if (s.kind === "plain-whole" || (w.lost && s.kind !== "daemon")) {
      // A one-off whole export into a prefix without a ledger: copies, never deletes.
      if (!w.lost) return;
      const r = write(w, target, target.keys(), s, []);
      if (!r.killed) w.statuses.push({ commit: H, ok: r.status === "SUCCESS" });
    } else if (s.kind === "daemon") {
      if (w.lost) {
        w.ledger = rebuild(w);
        w.lost = false;
      }
      const plan = planCover(w.ledger, H, now);
      if (plan.kind === "current" || plan.kind === "wait") return;
      const attempt = beginAttempt(w.ledger, H, now);
      const paths =
        plan.kind === "reconcile"
          ? PATHS
          : new Set([
              ...plan.from.flatMap((f) => differs(treeOf(w, f), target)),
              ...plan.retry.map((f) => f.path),
            ]);
      const r = write(w, target, paths, s, plan.kind === "diff" ? plan.carry : []);
      if (r.killed) {
        w.ledger = attempt;
        return;
      }
      w.statuses.push({ commit: H, ok: r.status === "SUCCESS" });
      w.ledger =
        r.status === "SUCCESS"
          ? completeSuccess(attempt, H, now)
          : completeFailure(attempt, H, r.unfinished, {
              now,
              retried: plan.kind === "reconcile" || (plan.kind === "diff" && plan.retry.length > 0),
              backoffSeconds,
            });
    } else {
      // A one-off export into the lane's prefix, keeping its ledger true (CliLane).
      const before = w.ledger;
      const attempt = beginAttempt(before, H, now);
      let paths: Set<string>;
      let cli: Parameters<typeof ledgerAfterCliExport>[3];
      if (s.kind === "cli-diff") {
        const from = id(s.from % w.commits.length);
        paths = new Set(differs(treeOf(w, from), target));
        cli = { kind: "diff", from };
      } else if (s.kind === "cli-sync") {
        paths = new Set(PATHS);
        cli = { kind: "sync" };
      } else {
        const cover = staleCover(before, H);
        const stale = "reconcile" in cover ? undefined : cover;
        paths = new Set(target.keys());
        if (stale) {
          for (const f of stale.from) for (const p of differs(treeOf(w, f), target)) paths.add(p);
          for (const f of stale.failed) paths.add(f.path);
        }
        cli = { kind: "whole", stale };
      }
      const r = write(w, target, paths, s, []);
      w.ledger = r.killed
        ? attempt
        : ledgerAfterCliExport(
            before,
            attempt,
            H,
            cli,
            { ...r, listing: undefined },
            {
              now,
              backoffSeconds,
            },
          );
      if (!r.killed) w.statuses.push({ commit: H, ok: r.status === "SUCCESS" });
    }
  };
  for (const s of steps) {
    w.now += s.seconds * 1000;
    if ("tree" in s.head) w.commits.push(s.head.tree);
    const head = "tree" in s.head ? w.commits.length - 1 : s.head.reset % w.commits.length;
    act(s, id(head), w.commits[head]!, new Date(w.now));
    checkCovered(w, w.lost ? rebuild(w) : w.ledger);
  }
}

describe("property: the cover rule against a model of the destination", () => {
  it("after any history of attempts, successes, failures, kills, resets, lost ledgers and one-off exports, the plan covers every key that may differ", () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 30 }), (steps) => run(steps)),
      { numRuns: 3000 },
    );
  });
});

import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { describe, it } from "node:test";
import fc from "fast-check";
import { LAST, Rounds, comparePositions, roundPresets } from "../../../src/export/rounds.ts";
import type { Position, RoundFunction, RoundPosition } from "../../../src/export/rounds.ts";
import type { ExportTask } from "../../../src/export/task.ts";
import type { FailedPath } from "../../../src/ledger/ledger.ts";
import { RecordingStubs, spillDir, stats } from "./recording-stubs.ts";
import type { WriteEvent } from "./recording-stubs.ts";

/**
 * Properties of the order in which an ExportRun issues its writes, recorded by stubs: rounds
 * are barriers, deletes go last when asked, a failure (of this run, or carried from an
 * earlier one and not written now) stops every later round, and Delta Lake's log is written
 * in version order for any set of log files.
 */

const RUNS = 150;

/** Hostile path segments: non-padded numbers, prefixes of one another, unicode, %, +, spaces. */
const segment = fc.constantFrom(
  "t",
  "tt",
  "t t",
  "t+",
  "9",
  "10",
  "100%",
  "ü",
  "\u{1F600}",
  "date=2026-11-2",
  "a%2Fb",
);
const dir = fc.array(segment, { maxLength: 3 }).map((s) => s.join("/"));
const under = (table: string, name: string) => (table ? `${table}/${name}` : name);

/** A Delta version as a writer names it (20 digits) or as a hostile one does (not padded). */
const versionName = (v: bigint, padded: boolean, width = 20) =>
  padded ? v.toString().padStart(width, "0") : v.toString();
const uuid = fc.uuid();

/** Every kind of file the Delta protocol puts in a table's `_delta_log/`, for one version. */
function versionFiles(table: string): fc.Arbitrary<string[]> {
  return fc
    .record({
      v: fc.oneof(fc.bigInt({ min: 0n, max: 30n }), fc.bigInt({ min: 0n, max: 10n ** 20n - 1n })),
      padded: fc.boolean(),
      json: fc.boolean(),
      classic: fc.boolean(),
      parts: fc.integer({ min: 0, max: 3 }),
      uuidCheckpoint: fc.option(fc.tuple(uuid, fc.constantFrom("json", "parquet"))),
      crc: fc.boolean(),
      compactedFrom: fc.option(fc.bigInt({ min: 0n, max: 30n })),
      staged: fc.option(uuid),
    })
    .map((f) => {
      const n = versionName(f.v, f.padded);
      const log = (name: string) => under(table, `_delta_log/${name}`);
      const files: string[] = [];
      if (f.json) files.push(log(`${n}.json`));
      if (f.classic) files.push(log(`${n}.checkpoint.parquet`));
      for (let o = 1; o <= f.parts && f.parts > 1; o++)
        files.push(
          log(
            `${n}.checkpoint.${versionName(BigInt(o), true, 10)}.${versionName(BigInt(f.parts), true, 10)}.parquet`,
          ),
        );
      if (f.uuidCheckpoint) files.push(log(`${n}.checkpoint.${f.uuidCheckpoint.join(".")}`));
      if (f.crc) files.push(log(`${n}.crc`));
      if (f.compactedFrom !== null && f.compactedFrom < f.v)
        files.push(log(`${versionName(f.compactedFrom, f.padded)}.${n}.compacted.json`));
      if (f.staged) files.push(log(`_staged_commits/${n}.${f.staged}.json`));
      return files;
    });
}

function tableFiles(table: string): fc.Arbitrary<string[]> {
  return fc
    .record({
      versions: fc.array(versionFiles(table), { maxLength: 5 }),
      data: fc.array(
        fc.tuple(dir, fc.nat(99)).map(([d, i]) => under(under(table, d), `part-${i}.parquet`)),
        { maxLength: 4 },
      ),
      sidecars: fc.array(uuid, { maxLength: 2 }),
      lastCheckpoint: fc.boolean(),
      other: fc.boolean(),
      success: fc.boolean(),
    })
    .map((t) => [
      ...t.versions.flat(),
      ...t.data,
      ...t.sidecars.map((u) => under(table, `_delta_log/_sidecars/${u}.parquet`)),
      ...(t.lastCheckpoint ? [under(table, "_delta_log/_last_checkpoint")] : []),
      ...(t.other ? [under(table, "_delta_log/.s3-optimization-0")] : []),
      ...(t.success ? [under(table, "_SUCCESS")] : []),
    ]);
}

/** Several tables in one export, some nested in or named as prefixes of others. */
const deltaPaths: fc.Arbitrary<string[]> = fc
  .uniqueArray(dir, { minLength: 1, maxLength: 3 })
  .chain((tables) => fc.tuple(...tables.map(tableFiles)))
  .map((lists) => [...new Set(lists.flat())]);

interface Scenario {
  tasks: ExportTask[];
  failing: Set<string>;
  gone: Set<string>;
  carry: FailedPath[];
  inMemory: number;
  concurrency: number;
}

/** Tasks over `paths` in any order (copies, deletes, retried syncs), some failing, some carried. */
function scenario(paths: fc.Arbitrary<string[]>, withFailures: boolean): fc.Arbitrary<Scenario> {
  return paths
    .chain((ps) =>
      fc.record({
        ordered: fc.shuffledSubarray(ps, { minLength: ps.length, maxLength: ps.length }),
        ops: fc.array(fc.constantFrom("copy", "copy", "delete", "sync"), {
          minLength: ps.length,
          maxLength: ps.length,
        }),
        failing: withFailures
          ? fc.subarray(ps, { maxLength: Math.min(2, ps.length) })
          : fc.constant<string[]>([]),
        gone: fc.subarray(ps),
        carry: withFailures
          ? fc.array(
              fc.record({
                path: fc.oneof(fc.constantFrom(...(ps.length ? ps : ["x"])), dir),
                op: fc.constantFrom("copy" as const, "delete" as const),
              }),
              { maxLength: 2 },
            )
          : fc.constant<{ path: string; op: "copy" | "delete" }[]>([]),
        inMemory: fc.integer({ min: 1, max: 6 }),
        concurrency: fc.integer({ min: 1, max: 5 }),
      }),
    )
    .map((s) => {
      const op = new Map(s.ordered.map((p, i) => [p, s.ops[i]!]));
      const tasks: ExportTask[] = s.ordered.map((path) => {
        const o = op.get(path);
        if (o === "delete") return { op: "delete", path };
        if (o === "sync") return { op: "sync", path };
        return { op: "copy", path, stats: stats(path), change: "added" };
      });
      const carry = [...new Map(s.carry.map((c) => [c.path, c])).values()].map((c) => ({
        path: c.path,
        op: c.op,
        reason: "injected earlier failure",
      }));
      return {
        tasks,
        failing: new Set(s.failing),
        gone: new Set(s.gone),
        carry,
        inMemory: s.inMemory,
        concurrency: s.concurrency,
      };
    });
}

type PositionOf = (op: "copy" | "delete", path: string) => Position;

const positionOf =
  (rounds: Rounds, deletesLast: boolean): PositionOf =>
  (op, path) =>
    op === "delete" && deletesLast ? LAST : rounds.positionOf(path);

/** Every write starts after every write of an earlier position has settled. */
function assertBarriers(events: WriteEvent[], at: PositionOf): void {
  const ended: { p: Position; path: string; op: string }[] = [];
  const started: { p: Position; path: string; op: string }[] = [];
  for (const e of events) {
    const p = at(e.op, e.path);
    if (e.at === "end") {
      ended.push({ p, path: e.path, op: e.op });
      continue;
    }
    for (const s of started) {
      if (comparePositions(s.p, p) >= 0) continue;
      const done = ended.some((x) => x.path === s.path && x.op === s.op);
      assert.ok(
        done,
        `${e.op} ${e.path} started before ${s.op} ${s.path} of an earlier round settled`,
      );
    }
    started.push({ p, path: e.path, op: e.op });
  }
}

/** With deletes last, no delete starts before every copy has settled. */
function assertDeletesLast(events: WriteEvent[]): void {
  const firstDelete = events.findIndex((e) => e.op === "delete" && e.at === "start");
  if (firstDelete < 0) return;
  const lastCopy = events.findLastIndex((e) => e.op === "copy");
  assert.ok(lastCopy < firstDelete, `a delete started before a copy settled`);
}

/**
 * The earliest position that failed (a write of this run that failed, or a carried failure
 * this run did not write after all) stops every later position: none of their writes start.
 */
function assertStops(
  events: WriteEvent[],
  carry: FailedPath[],
  at: PositionOf,
): Position | undefined {
  let first: Position | undefined;
  const fail = (p: Position) => {
    if (!first || comparePositions(p, first) < 0) first = p;
  };
  for (const e of events) if (e.at === "end" && !e.ok) fail(at(e.op, e.path));
  const written = new Set(events.filter((e) => e.at === "end" && e.ok).map((e) => e.path));
  for (const c of carry) if (!written.has(c.path)) fail(at(c.op ?? "copy", c.path));
  if (!first) return undefined;
  for (const e of events)
    if (e.at === "start")
      assert.ok(
        comparePositions(at(e.op, e.path), first) <= 0,
        `${e.op} ${e.path} ran after an earlier round failed`,
      );
  return first;
}

/** The rank the Delta protocol gives a file, read from its name alone. */
function deltaRank(path: string): { table: string; rank: bigint[] } | undefined {
  const m = /^(?:(.*)\/)?_delta_log\/(.*)$/su.exec(path);
  if (!m) return undefined;
  const table = m[1] ?? "";
  const name = m[2]!;
  const v = (re: RegExp) => re.exec(name)?.[1];
  let x: string | undefined;
  if (name === "_last_checkpoint") return { table, rank: [3n] };
  if (name.startsWith("_sidecars/")) return { table, rank: [0n] };
  if ((x = v(/^(\d+)\.json$/) ?? v(/^_staged_commits\/(\d+)\.[^/]+\.json$/)))
    return { table, rank: [1n, BigInt(x), 0n] };
  if ((x = v(/^(\d+)\.checkpoint\..*$/) ?? v(/^(\d+)\.crc$/) ?? v(/^\d+\.(\d+)\.compacted\.json$/)))
    return { table, rank: [1n, BigInt(x), 1n] };
  return { table, rank: [2n] };
}

const lessRank = (a: bigint[], b: bigint[]) => {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! < b[i]!;
  return false;
};

/**
 * Data files before every log entry; in each table, `<N>.json` in ascending N, each
 * checkpoint, checksum and compaction after the commit of its version, then `_last_checkpoint`.
 */
function assertDeltaOrder(events: WriteEvent[]): void {
  const copies = events.filter((e) => e.op === "copy");
  const endOf = new Map(
    copies.filter((e) => e.at === "end").map((e) => [e.path, copies.indexOf(e)]),
  );
  const starts = copies.filter((e) => e.at === "start");
  for (const b of starts) {
    const rb = deltaRank(b.path);
    if (!rb || rb.rank[0] === 0n) continue;
    const bAt = copies.indexOf(b);
    for (const a of starts) {
      if (/(^|\/)_SUCCESS$/.test(a.path)) continue;
      const ra = deltaRank(a.path);
      const before = ra
        ? ra.table === rb.table && (ra.rank[0] === 0n || lessRank(ra.rank, rb.rank))
        : true; // a data file
      if (!before) continue;
      const aEnd = endOf.get(a.path);
      assert.ok(aEnd !== undefined && aEnd < bAt, `${b.path} was written before ${a.path} settled`);
    }
  }
}

async function runScenario(s: Scenario, rounds: Rounds, deletesLast: boolean) {
  const stubs = new RecordingStubs(s.failing, s.gone);
  const spill = spillDir();
  const outcome = await stubs.run(s.tasks, {
    rounds,
    deletesLast,
    carry: s.carry,
    concurrency: s.concurrency,
    deferredInMemory: s.inMemory,
    spillDirectory: spill,
  });
  assert.deepEqual(readdirSync(spill), [], "the spilled tasks' files are gone");
  return { stubs, outcome };
}

function assertAll(
  s: Scenario,
  rounds: Rounds,
  deletesLast: boolean,
  events: WriteEvent[],
  outcome: { status: string; unfinished: FailedPath[] | undefined },
) {
  const at = positionOf(rounds, deletesLast);
  assertBarriers(events, at);
  if (deletesLast) assertDeletesLast(events);
  const stop = assertStops(events, s.carry, at);
  assert.equal(outcome.status, stop ? "FAILURE" : "SUCCESS");
  if (!stop) {
    // Nothing failed: every task was carried out.
    const ran = new Set(events.filter((e) => e.at === "start").map((e) => e.path));
    for (const t of s.tasks) assert.ok(ran.has(t.path), `${t.op} ${t.path} never ran`);
  } else if (outcome.unfinished) {
    // What a stopped round left undone is in the ledger's failed list, for the next export.
    const undone = new Set(outcome.unfinished.map((f) => f.path));
    for (const t of s.tasks) {
      const op = t.op === "delete" ? "delete" : "copy";
      if (comparePositions(at(op, t.path), stop) > 0)
        assert.ok(undone.has(t.path), `${t.path} is neither done nor listed as undone`);
    }
  }
}

describe("export rounds and deletes-last ordering (properties)", () => {
  it("delta: any set of log files is written in version order, data first, deletes last", async () => {
    const rounds = new Rounds(roundPresets.delta.rules);
    await fc.assert(
      fc.asyncProperty(scenario(deltaPaths, false), async (s) => {
        const { stubs, outcome } = await runScenario(s, rounds, true);
        assertAll(s, rounds, true, stubs.events, outcome);
        assertDeltaOrder(stubs.events);
      }),
      { numRuns: RUNS },
    );
  });

  it("delta: a failure or a carried failure stops every later version", async () => {
    const rounds = new Rounds(roundPresets.delta.rules);
    await fc.assert(
      fc.asyncProperty(scenario(deltaPaths, true), async (s) => {
        const { stubs, outcome } = await runScenario(s, rounds, true);
        assertAll(s, rounds, true, stubs.events, outcome);
        assertDeltaOrder(stubs.events);
      }),
      { numRuns: RUNS },
    );
  });

  it("any round function: rounds are barriers, and a failed round stops the later ones", async () => {
    const position: fc.Arbitrary<number | RoundPosition> = fc.oneof(
      fc.integer({ min: 0, max: 3 }),
      fc
        .record({
          round: fc.integer({ min: 0, max: 3 }),
          version: fc.option(fc.bigInt({ min: 0n, max: 5n }), { nil: undefined }),
          step: fc.option(fc.integer({ min: 0, max: 2 }), { nil: undefined }),
        })
        .map((p) => ({ ...p })),
    );
    const paths = fc.uniqueArray(
      fc
        .tuple(dir, fc.constantFrom("x", "_SUCCESS", "9", "10", "ü\u{1F600}"))
        .map(([d, n]) => under(d, n)),
      { maxLength: 14 },
    );
    await fc.assert(
      fc.asyncProperty(
        scenario(paths, true),
        fc.func(position),
        fc.boolean(),
        async (s, f, deletesLast) => {
          const rounds = new Rounds(f as RoundFunction);
          const { stubs, outcome } = await runScenario(s, rounds, deletesLast);
          assertAll(s, rounds, deletesLast, stubs.events, outcome);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

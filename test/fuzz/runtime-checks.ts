import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import type { DaemonStatus } from "../../src/daemon/daemon.ts";
import { laneKey, partitionOf } from "../../src/kafka/client.ts";
import { sleep } from "../helpers/crash.ts";
import { concurrentWriters, exportIntervals } from "../helpers/group.ts";
import type { Stack } from "../helpers/stack.ts";
import { Judge, newestSuccess } from "./checks.ts";
import type { Difference, ForeignKeys, ProgressWatch } from "./checks.ts";
import type { Fleet } from "./fleet.ts";
import { Observed } from "./oracle.ts";
import type { Snapshot } from "./oracle.ts";
import { isForeign } from "./paths.ts";
import { FuzzFailure } from "./referee.ts";
import type { KafkaSide } from "./runtime-kafka.ts";
import type { LaneRecord, OffsetWatch } from "./runtime-offsets.ts";
import type { BranchModel, RuntimeWorld } from "./runtime-world.ts";
import { short } from "./world.ts";

/**
 * The runtime fuzz's invariants, from lakeFS, S3 and Kafka directly:
 * - every lane's mirror keeps the SUCCESS rule of checks.ts (so nothing writes into a lane but
 *   its own exports, whichever daemon runs them), and foreign keys are never touched;
 * - the offset rule (runtime-offsets.ts), watched all along;
 * - at a settle: each branch that exists has a SUCCESS for its HEAD over a mirror equal to it
 *   (but in the repository lakeFS refuses, if one is), a deleted branch's lane has ended on
 *   every daemon, the group has committed every partition to its end (when no repository
 *   fails), no two daemons wrote one destination at once, nothing lies in the bucket outside
 *   the lanes' prefixes but foreign keys, and no lane keeps the records of a split export's
 *   work items (its owner removes them once the run has ended).
 */

/** A lane's destination prefix in the bucket. */
export function lanePrefix(b: BranchModel): string {
  return `${b.repo}/${b.name}/`;
}

interface LaneView {
  observed: Observed;
  judge: Judge;
}

export interface RuntimeRefereeParts {
  stack: Stack;
  bucket: string;
  world: RuntimeWorld;
  fleet: Fleet;
  kafka: KafkaSide;
  offsets: OffsetWatch;
  foreign: ForeignKeys;
  watch: ProgressWatch;
}

export class RuntimeReferee {
  readonly #p: RuntimeRefereeParts;
  readonly #views = new Map<string, LaneView>();
  readonly #root: Observed;

  constructor(parts: RuntimeRefereeParts) {
    this.#p = parts;
    this.#root = new Observed(parts.stack, parts.bucket, "");
  }

  #view(b: BranchModel): LaneView {
    let v = this.#views.get(b.key);
    if (!v) {
      const repo = this.#p.world.repo(b.repo);
      const observed = new Observed(this.#p.stack, this.#p.bucket, lanePrefix(b));
      v = { observed, judge: new Judge(repo.expected, observed, b) };
      this.#views.set(b.key, v);
    }
    return v;
  }

  /** Each lane's ledger at its destination (the offset rule's evidence). */
  readonly ledgers = async (): Promise<Map<string, LaneRecord | undefined>> => {
    const lanes = this.#p.world.mirroredBranches();
    const read = await Promise.all(
      lanes.map(async (b) => {
        try {
          const res = await this.#p.stack.s3.send(
            new GetObjectCommand({
              Bucket: this.#p.bucket,
              Key: `${lanePrefix(b)}_lakefs_mirror/ledger.json`,
            }),
          );
          const v = JSON.parse(await res.Body!.transformToString()) as LaneRecord;
          return [b.key, { base: v.base, lastSuccess: v.lastSuccess }] as const;
        } catch (err) {
          if ((err as { name?: string }).name === "NoSuchKey") return [b.key, undefined] as const;
          throw err;
        }
      }),
    );
    return new Map(read);
  };

  /** Keys under the lane's work records (`_lakefs_mirror/work/<run>/<item>.json`). */
  async #workRecords(b: BranchModel): Promise<string[]> {
    const res = await this.#p.stack.s3.send(
      new ListObjectsV2Command({
        Bucket: this.#p.bucket,
        Prefix: `${lanePrefix(b)}_lakefs_mirror/work/`,
        MaxKeys: 5,
      }),
    );
    return (res.Contents ?? []).map((o) => o.Key!.slice(lanePrefix(b).length));
  }

  offsets(): void {
    const v = this.#p.offsets.violations;
    if (v.length)
      throw new FuzzFailure(
        "offset committed before its export",
        `${v.length} messages were committed past before their lane exported their commit`,
        v.slice(0, 20),
      );
  }

  async foreign(): Promise<void> {
    const empty: Snapshot = {
      at: Date.now(),
      mirrored: new Map(),
      foreign: new Map(),
      status: new Map(),
      newestWrite: 0,
    };
    const lost = await this.#p.foreign.lost(empty, this.#root);
    if (lost.length)
      throw new FuzzFailure("foreign key deleted", `${lost.length} foreign keys changed`, lost);
  }

  /** What holds at any moment: offsets, foreign keys, every lane's SUCCESS rule, progress. */
  async check(): Promise<void> {
    this.offsets();
    await this.foreign();
    let newestWrite = 0;
    for (const b of this.#p.world.mirroredBranches()) {
      const { observed, judge } = this.#view(b);
      let s = await observed.snapshot();
      newestWrite = Math.max(newestWrite, s.newestWrite);
      let r = await judge.successRule(s, []);
      if (!r.differences.length) continue;
      // A difference must still be there a moment later, so that no check races a write.
      await sleep(1500);
      s = await observed.snapshot();
      r = await judge.successRule(s, []);
      if (r.differences.length)
        throw new FuzzFailure(
          "mirror differs under SUCCESS",
          `${b.key}: the newest SUCCESS ${r.newest!.key} is over a mirror in the state of none ` +
            `of the commits an export may be writing (${r.allowed.map(short).join(", ")})`,
          formatDiffs(r.differences),
        );
    }
    await this.progress(newestWrite);
    this.offsets();
  }

  async progress(newestWrite: number): Promise<void> {
    const { fleet, watch } = this.#p;
    for (const slot of fleet.running()) {
      const status = await fleet.status(slot);
      if (!status) continue;
      const stuck = watch.observe(slot.index, status, newestWrite, Date.now());
      if (stuck.length) throw new FuzzFailure("lane stuck exporting", stuck[0]!, stuck.slice(1));
    }
  }

  /**
   * Within `boundMs`: every existing branch of every repository but `failing` at HEAD under a
   * SUCCESS, every deleted one's lane ended, and (with no repository failing) every partition
   * committed to its end. Returns how long it took.
   */
  async converge(failing: string | undefined, boundMs: number): Promise<number> {
    const { world, fleet } = this.#p;
    const t0 = Date.now();
    for (;;) {
      this.offsets();
      await this.foreign();
      const statuses = await Promise.all(
        fleet.running().map(async (s) => [s.index, await fleet.status(s)] as const),
      );
      const behind: string[] = [];
      const diffs: Difference[] = [];
      for (const b of world.mirroredBranches()) {
        if (b.repo === failing) continue;
        if (b.head === null) {
          for (const [i, st] of statuses) {
            const lane = st?.lanes.find((l) => l.repository === b.repo && l.branch === b.name);
            if (lane)
              behind.push(`${b.key} is deleted, but daemon ${i} has its lane (${lane.state})`);
          }
          continue;
        }
        const { observed, judge } = this.#view(b);
        const s = await observed.snapshot();
        const newest = newestSuccess(s, []);
        if (newest?.commit !== b.head) {
          behind.push(`${b.key}: newest SUCCESS ${newest?.key ?? "none"}, HEAD ${short(b.head)}`);
          continue;
        }
        const d = await judge.strict(s, b.head);
        if (d.length) {
          behind.push(`${b.key}: SUCCESS for HEAD over ${d.length} differing keys`);
          diffs.push(...d.map((x) => ({ ...x, key: `${b.key}: ${x.key}` })));
        }
        const records = await this.#workRecords(b);
        if (records.length)
          behind.push(`${b.key}: current, but keeps work records: ${records.join(", ")}`);
      }
      if (!behind.length) behind.push(...this.#reported(statuses, failing));
      if (!failing) behind.push(...(await this.#uncommitted()));
      if (!behind.length) break;
      if (Date.now() - t0 > boundMs)
        throw new FuzzFailure(
          "did not converge",
          `${Math.round(boundMs / 1000)} s into the settle, ${behind.length} things are not current`,
          [...behind, ...formatDiffs(diffs), ...describeStatuses(statuses)],
        );
      await sleep(1000);
    }
    const took = Date.now() - t0;
    this.oneWriter();
    await sleep(1500);
    for (const b of world.mirroredBranches()) {
      if (b.repo === failing || b.head === null) continue;
      const { observed, judge } = this.#view(b);
      const d = await judge.strict(await observed.snapshot(), b.head);
      if (d.length)
        throw new FuzzFailure(
          "mirror changed after converging",
          `${b.key}: keys changed after the mirror equalled ${short(b.head)}`,
          formatDiffs(d),
        );
    }
    await this.strays();
    return took;
  }

  /**
   * What the daemons' /status says, against the model once the mirrors are current: the group
   * holds every partition once; each daemon reports only lanes it owns (README, "Scaling out"),
   * each at HEAD, idle, with no lag; and (no repository failing) no partition paused or waiting.
   */
  #reported(
    statuses: readonly (readonly [number, DaemonStatus | undefined])[],
    failing: string | undefined,
  ): string[] {
    const { world, kafka } = this.#p;
    const count = kafka.partitions;
    const out: string[] = [];
    const holders = new Map<number, number[]>();
    for (const [i, st] of statuses) {
      if (!st) {
        out.push(`daemon ${i} does not answer /status`);
        continue;
      }
      if (st.kafka !== "running") out.push(`daemon ${i}: kafka ${st.kafka}`);
      const held = new Set(st.ownership.partitions ?? []);
      for (const p of held) holders.set(p, [...(holders.get(p) ?? []), i]);
      for (const l of st.lanes) {
        if (l.repository === failing) continue;
        const p = partitionOf(laneKey(l.repository, l.branch), count);
        if (!held.has(p))
          out.push(
            `daemon ${i} reports lane ${l.repository}/${l.branch} (partition ${p} of ${count}), holding [${[...held].join(",")}]`,
          );
        const b = world.repos.find((r) => r.name === l.repository)?.branches.get(l.branch);
        if (
          b?.head &&
          (l.state !== "idle" ||
            l.lastExportedCommit !== b.head ||
            l.commitsBehind !== 0 ||
            l.lagSeconds !== 0)
        )
          out.push(
            `daemon ${i} reports ${b.key} ${l.state} at ${short(l.lastExportedCommit)}, ` +
              `${l.commitsBehind} commits and ${l.lagSeconds} s behind; HEAD ${short(b.head)}`,
          );
      }
      if (!failing)
        for (const k of st.kafkaPartitions)
          if (k.paused || k.uncommitted > 0)
            out.push(
              `daemon ${i}: partition ${k.partition}${k.paused ? " paused," : ""} ${k.uncommitted} uncommitted`,
            );
    }
    if (statuses.length === this.#p.fleet.slots.length)
      for (let p = 0; p < count; p++) {
        const by = holders.get(p) ?? [];
        if (by.length !== 1) out.push(`partition ${p} of ${count} is held by [${by.join(",")}]`);
      }
    return out;
  }

  /** Partitions the group has not committed to their end, described. */
  async #uncommitted(): Promise<string[]> {
    const { kafka } = this.#p;
    if (!kafka.broker.running) return ["the broker is down"];
    try {
      const [committed, ends] = [await kafka.committed(), await kafka.ends()];
      const out: string[] = [];
      for (const [p, end] of ends) {
        const c = committed.get(p) ?? 0n;
        if (end > 0n && c < end) out.push(`partition ${p} committed at ${c} of ${end}`);
      }
      return out;
    } catch (err) {
      return [`the group's offsets cannot be read: ${(err as Error).message}`];
    }
  }

  /** Two daemons never wrote one destination at once (from their "export finished" lines). */
  oneWriter(): void {
    const intervals = this.#p.fleet.outputs().flatMap((o) => exportIntervals(o.name, o.text));
    const pairs = concurrentWriters(intervals);
    if (!pairs.length) return;
    const iso = (t: number) => new Date(t).toISOString().slice(11, 23);
    throw new FuzzFailure(
      "two daemons wrote at once",
      `${pairs.length} pairs of exports by different daemons overlap in time at one destination`,
      pairs.map(
        ([a, b]) =>
          `${a.destination}: ${a.daemon} ${iso(a.start)}–${iso(a.end)} (epoch ${a.leaseEpoch}) and ` +
          `${b.daemon} ${iso(b.start)}–${iso(b.end)} (epoch ${b.leaseEpoch})`,
      ),
    );
  }

  /** Every key of the bucket is under a lane's prefix or foreign. */
  async strays(): Promise<void> {
    const { stack, bucket, world } = this.#p;
    const prefixes = world.mirroredBranches().map(lanePrefix);
    const strays: string[] = [];
    let token: string | undefined;
    do {
      const res = await stack.s3.send(
        new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }),
      );
      for (const o of res.Contents ?? []) {
        const key = o.Key ?? "";
        if (!isForeign(key) && !prefixes.some((p) => key.startsWith(p))) strays.push(key);
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    if (strays.length)
      throw new FuzzFailure(
        "key outside every lane",
        `${strays.length} keys in the bucket belong to no lane and are not foreign`,
        strays.slice(0, 30).map((k) => JSON.stringify(k)),
      );
  }
}

function describeStatuses(statuses: readonly (readonly [number, DaemonStatus | undefined])[]) {
  return statuses.map(([i, s]) =>
    s
      ? `daemon ${i}: kafka ${s.kafka}, ownership ${JSON.stringify(s.ownership)}, failing ${JSON.stringify(s.failingRepositories)}, partitions ${JSON.stringify(s.kafkaPartitions)}, lanes ${JSON.stringify(s.lanes.map((l) => [l.repository.slice(0, 14), l.branch, l.state, short(l.lastExportedCommit), short(l.headCommit), l.lastError?.slice(0, 120) ?? null]))}`
      : `daemon ${i}: no answer`,
  );
}

function formatDiffs(diffs: Difference[]): string[] {
  const shown = diffs
    .slice(0, 30)
    .map((d) => `${JSON.stringify(d.key)}: expected ${d.expected}; actual ${d.actual}`);
  if (diffs.length > 30) shown.push(`… and ${diffs.length - 30} more keys`);
  return shown;
}

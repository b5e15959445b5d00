import { PutObjectCommand } from "@aws-sdk/client-s3";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Prng, sleep } from "../helpers/crash.ts";
import type { Fault } from "../helpers/fault-injecting-proxy.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";
import { ForeignKeys, Judge, ProgressWatch, newestSuccess } from "./checks.ts";
import type { CliRecord } from "./checks.ts";
import { Faults } from "./faults.ts";
import { Fleet } from "./fleet.ts";
import { Expected, Observed } from "./oracle.ts";
import { FuzzFailure, Referee } from "./referee.ts";
import type { FuzzReport, OpRecord } from "./report.ts";
import { opNames } from "./options.ts";
import type { FaultMode, FuzzOptions, OpName } from "./options.ts";
import { PathSpace, foreignName } from "./paths.ts";
import { LIVE, World, short } from "./world.ts";
import type { Moved } from "./world.ts";

/**
 * A model-based fuzz of lakefs-mirror on the real stack. A seeded PRNG picks a history of
 * operations (lakeFS changes of every kind, foreign keys under the prefix, CLI exports to the
 * same prefix, faults in front of S3 and lakeFS, kill -9 and SIGSTOP of daemons); after every
 * one the invariants of checks.ts are judged from lakeFS and S3 directly, and at every settle
 * (faults off, every daemon up) the lane must converge to HEAD within a bound. The operations
 * are the same for the same seed; their timing against the daemons is not (real processes on a
 * real stack), so a replay meets the same history, not always the same interleaving.
 */

const PREFIX = "mirror/";
export type { FuzzReport } from "./report.ts";

const none: Record<Fault, number> = {
  slowdown: 0,
  reset: 0,
  cut: 0,
  stall: 0,
  stallHeaders: 0,
  stallBody: 0,
  stallUpload: 0,
};

export async function runFuzz(o: FuzzOptions, log: (line: string) => void): Promise<FuzzReport> {
  const stack = await connectStack();
  const run = new Run(o, stack, log);
  try {
    return await run.main();
  } finally {
    await run.close();
    await stack.close();
  }
}

class Run {
  readonly #o: FuzzOptions;
  readonly #stack: Stack;
  readonly #log: (line: string) => void;
  readonly #rng: Prng;
  readonly #started = Date.now();
  readonly #runDir = mkdtempSync(join(tmpdir(), "lakefs-mirror-fuzz-"));
  readonly #oplog: OpRecord[] = [];
  readonly #cliRuns: CliRecord[] = [];
  readonly #cli: FuzzReport["cli"] = {};
  readonly #foreign = new ForeignKeys();
  readonly #settles: number[] = [];
  readonly #resumeAt = new Map<number, number>();
  readonly #restartAt = new Map<number, { step: number; wipe: boolean }>();
  readonly #paths = new PathSpace();
  readonly #picked: Record<string, number> = {};
  #step = 0;
  #foreignCount = 0;
  #bucket = "";
  #world!: World;
  #observed!: Observed;
  #referee!: Referee;
  #fleet: Fleet | undefined;
  #faults: Faults | undefined;
  readonly #watch: ProgressWatch;

  constructor(o: FuzzOptions, stack: Stack, log: (line: string) => void) {
    this.#o = o;
    this.#stack = stack;
    this.#log = log;
    this.#rng = new Prng(o.seed);
    this.#watch = new ProgressWatch(o.stallSeconds * 1000);
  }

  async main(): Promise<FuzzReport> {
    let failure: FuzzReport["failure"];
    let harnessError: string | undefined;
    try {
      await this.#setup();
      await this.#prologue();
      for (this.#step = 1; this.#step <= this.#o.steps; this.#step++) {
        await this.#due();
        const op = this.#pick();
        this.#picked[op] = (this.#picked[op] ?? 0) + 1;
        await this.#perform(op);
        // The daemons get a moment with the new state before the check (and the next step).
        await this.#wait(this.#rng.int(200, 1500), false);
        await this.#referee.check();
        if (this.#step % this.#o.settleEvery === 0 || this.#step === this.#o.steps)
          await this.#settle();
      }
      this.#step = this.#o.steps;
    } catch (err) {
      if (err instanceof FuzzFailure)
        failure = { kind: err.kind, step: this.#step, message: err.message, details: err.details };
      else harnessError = err instanceof Error ? (err.stack ?? err.message) : String(err);
    }
    return this.#report(failure, harnessError);
  }

  async close(): Promise<void> {
    await this.#fleet?.close();
    await this.#faults?.close();
  }

  async #setup(): Promise<void> {
    const rng = this.#rng;
    const repo = await createRepo(this.#stack, "fuzz");
    this.#bucket = await createBucket(this.#stack, "fuzz");
    const env = this.#stack.env;
    const faults = await Faults.start(
      rng,
      env.AWS_ENDPOINT_URL,
      env.LAKEFS_ENDPOINT,
      `/${this.#bucket}/${PREFIX}`,
    );
    this.#faults = faults;
    const proxied: Stack = {
      ...this.#stack,
      env: { ...env, LAKEFS_ENDPOINT: faults.lakefs.url, AWS_ENDPOINT_URL: faults.s3.url },
    };
    const expected = new Expected(this.#stack, repo);
    this.#observed = new Observed(this.#stack, this.#bucket, PREFIX);
    this.#world = new World(this.#stack, repo, expected, this.#paths);
    const judge = new Judge(expected, this.#observed, this.#world);
    this.#fleet = new Fleet(
      {
        proxied,
        repo,
        destination: `s3://${this.#bucket}/${PREFIX}`,
        branch: LIVE,
        runDir: this.#runDir,
        ttlSeconds: this.#o.ttlSeconds,
        productTimeouts: this.#o.productTimeouts,
      },
      this.#o.daemons,
    );
    this.#referee = new Referee({
      observed: this.#observed,
      judge,
      foreign: this.#foreign,
      watch: this.#watch,
      fleet: this.#fleet,
      cliRuns: this.#cliRuns,
    });
    this.#note(
      "setup",
      `repository ${repo}, destination s3://${this.#bucket}/${PREFIX}, logs in ${this.#runDir}`,
    );
  }

  /**
   * The first commit and foreign keys before any daemon sees the prefix (so its lane finds it
   * foreign), sometimes CLI exports before the daemons start, then the daemons.
   */
  async #prologue(): Promise<void> {
    const rng = this.#rng;
    this.#note("commit", (await this.#world.setup(rng, this.#o.frames, 30)).detail);
    await this.#writeForeign(rng.int(3, 8), rng.next() < 0.7);
    if (this.#o.weights.cli > 0 && rng.next() < 0.4) {
      for (let r = rng.int(1, 2); r > 0; r--) {
        await this.#runCli(rng.next() < 0.5 ? "commit" : "branch");
        await this.#lakefs(() => this.#world.change(rng, rng.int(3, 8), false));
      }
      await this.#runCli("branch");
    }
    const start = rng.pick<FaultMode>(["off", "issue", "storm", "throttle"]);
    if (this.#o.faults > 0) this.#setFaults(this.#o.startFaults ?? start);
    for (const s of this.#fleet!.slots) {
      await this.#fleet!.start(s.index, false);
      this.#note("start", `daemon ${s.index}`);
    }
    await this.#fleet!.notify("post-commit", this.#world.head);
    await this.#referee.check();
  }

  #pick(): OpName {
    const w = this.#o.weights;
    const total = opNames.reduce((n, k) => n + w[k], 0);
    if (total === 0) return "wait";
    let x = this.#rng.next() * total;
    for (const k of opNames) {
      x -= w[k];
      if (x < 0) return k;
    }
    return "wait";
  }

  async #perform(op: OpName): Promise<void> {
    const rng = this.#rng;
    const fleet = this.#fleet!;
    const world = this.#world;
    switch (op) {
      case "change":
        return this.#lakefs(() => world.change(rng, rng.int(1, 6), rng.next() < 0.05));
      case "burst":
        return this.#lakefs(() => world.burst(rng));
      case "revert":
        return this.#lakefs(() => world.revert(rng));
      case "reset":
        return this.#lakefs(() => world.reset(rng));
      case "merge":
        return this.#lakefs(() => world.merge(rng));
      case "branch":
        if (world.head === null) return this.#lakefs(() => world.recreateBranch(rng));
        return this.#moved("branch", await world.deleteBranch());
      case "foreign":
        return this.#writeForeign(rng.int(1, 3), rng.next() < 0.5);
      case "cli":
        return this.#runCli(
          rng.pick(["branch", "branch", "commit", "commit", "diff", "diff", "diff", "sync"]),
        );
      case "faults":
        if (this.#o.faults === 0) return this.#wait(rng.int(300, 3000));
        this.#setFaults(
          rng.pick<FaultMode>(["off", "off", "light", "issue", "issue", "storm", "throttle"]),
        );
        return;
      case "kill": {
        const up = fleet.slots.filter((s) => s.state !== "dead");
        if (!up.length) return this.#wait(rng.int(300, 3000));
        const slot = rng.pick(up);
        const wipe = rng.next() < 0.3;
        const after = rng.int(1, 4);
        await fleet.kill(slot.index);
        this.#watch.forget(slot.index);
        this.#restartAt.set(slot.index, { step: this.#step + after, wipe });
        this.#note(
          "kill -9",
          `daemon ${slot.index}; restart in ${after} steps${wipe ? " with an empty checkpoint store" : ""}`,
        );
        return;
      }
      case "pause": {
        const up = fleet.running();
        if (!up.length) return this.#wait(rng.int(300, 3000));
        const slot = rng.pick(up);
        const after = rng.int(1, 3);
        const outlast = rng.next() < 0.5;
        fleet.pause(slot.index);
        this.#watch.forget(slot.index);
        this.#resumeAt.set(slot.index, this.#step + after);
        this.#note(
          "SIGSTOP",
          `daemon ${slot.index}; SIGCONT in ${after} steps${outlast ? ", after its lease TTL" : ""}`,
        );
        if (outlast) await this.#wait((this.#o.ttlSeconds + 1) * 1000);
        return;
      }
      case "wait":
        return this.#wait(rng.int(300, 3000));
    }
  }

  /** Restarts and SIGCONTs that are due. */
  async #due(): Promise<void> {
    for (const [i, at] of [...this.#resumeAt]) {
      if (at > this.#step) continue;
      this.#resumeAt.delete(i);
      this.#fleet!.resume(i);
      this.#watch.forget(i);
      this.#note("SIGCONT", `daemon ${i}`);
    }
    for (const [i, r] of [...this.#restartAt]) {
      if (r.step > this.#step) continue;
      this.#restartAt.delete(i);
      await this.#fleet!.start(i, r.wipe);
      this.#note("start", `daemon ${i}${r.wipe ? " (empty checkpoint store)" : ""}`);
    }
  }

  /** A lakeFS operation on `live` (re-creating it first if it was deleted), then its webhook. */
  async #lakefs(fn: () => Promise<Moved>): Promise<void> {
    if (this.#world.head === null) {
      this.#moved("branch", await this.#world.recreateBranch(this.#rng));
      return;
    }
    this.#moved("lakefs", await fn());
  }

  #moved(op: string, m: Moved): void {
    this.#note(op, m.detail);
    // lakeFS's hooks are fire-and-forget: sometimes one never arrives, and the reconciler
    // is all that notices.
    if (m.event && this.#rng.next() < 0.85) void this.#fleet?.notify(m.event, this.#world.head);
  }

  async #writeForeign(n: number, late: boolean): Promise<void> {
    const names: string[] = [];
    for (let i = 0; i < n; i++) {
      const key = foreignName(this.#rng, ++this.#foreignCount, late, this.#paths);
      const body = this.#rng.bytes(this.#rng.int(1, 100));
      const res = await this.#stack.s3.send(
        new PutObjectCommand({ Bucket: this.#bucket, Key: PREFIX + key, Body: body }),
      );
      this.#foreign.written.set(key, {
        etag: (res.ETag ?? "").replaceAll('"', ""),
        size: body.length,
        step: this.#step,
      });
      names.push(JSON.stringify(key));
    }
    this.#note("foreign", `wrote ${names.join(", ")}`);
  }

  #setFaults(mode: FaultMode): void {
    this.#faults!.set(mode, this.#o.faults);
    this.#note("faults", mode);
  }

  async #runCli(mode: CliRecord["mode"]): Promise<void> {
    const rng = this.#rng;
    const world = this.#world;
    if (world.head === null) mode = "commit";
    const older = rng.pick(world.history.slice(-8));
    const useHead = rng.next() < 0.5;
    let args: string[];
    let target = world.head ?? older;
    let prev: string | undefined;
    if (mode === "commit") {
      target = useHead ? (world.head ?? older) : older;
      args = [`--commit_id=${target}`];
    } else if (mode === "diff") {
      // What a user would pass: the commit of the newest SUCCESS, or now and then another.
      const newest = newestSuccess(await this.#observed.snapshot(), this.#cliRuns);
      prev = rng.next() < 0.8 ? (newest?.commit ?? older) : older;
      args = [`--branch=${LIVE}`, `--prev_commit_id=${prev}`];
    } else {
      args = [`--branch=${LIVE}`, ...(mode === "sync" ? ["--sync"] : [])];
    }
    const start = Date.now();
    const r = await this.#fleet!.cli(args, this.#o.cliTimeoutSeconds * 1000);
    const end = Date.now();
    this.#cliRuns.push({
      step: this.#step,
      mode,
      target,
      prev,
      start,
      end,
      statusKey: r.statusKey,
    });
    const stats = (this.#cli[mode] ??= { runs: 0, success: 0, failure: 0, other: 0 });
    stats.runs++;
    if (r.status === "SUCCESS") stats.success++;
    else if (r.status === "FAILURE") stats.failure++;
    else stats.other++;
    const outcome = r.timedOut
      ? "HUNG"
      : `exit ${r.code}${r.statusKey ? `, ${r.statusKey}` : ", no status file"}`;
    this.#note(
      "cli",
      `export ${args.join(" ")} (${mode} to ${short(target)}): ${outcome}, ${r.durationMs} ms`,
    );
    if (r.timedOut) {
      throw new FuzzFailure(
        "CLI export hung",
        `lakefs-mirror export ${args.join(" ")} did not end within ${this.#o.cliTimeoutSeconds} s`,
        r.output.trimEnd().split("\n").slice(-15),
      );
    }
    if (!r.status)
      this.#note(
        "cli",
        `no status line; output: ${r.output
          .trim()
          .split("\n")
          .filter((l) => l.startsWith("{") || l.startsWith("lakefs-mirror"))
          .slice(-2)
          .join(" | ")
          .slice(0, 600)}`,
      );
  }

  async #wait(ms: number, noted = true): Promise<void> {
    if (noted) this.#note("wait", `${ms} ms`);
    const until = Date.now() + ms;
    while (Date.now() < until) {
      await sleep(Math.min(1000, until - Date.now()));
      await this.#referee.progress(await this.#observed.snapshot());
    }
  }

  /** Faults off, every daemon up: the newest SUCCESS must name HEAD over a mirror equal to it. */
  async #settle(): Promise<void> {
    const fleet = this.#fleet!;
    this.#setFaults("off");
    for (const s of fleet.slots) {
      this.#resumeAt.delete(s.index);
      this.#restartAt.delete(s.index);
      if (s.state === "paused") fleet.resume(s.index);
      if (s.state === "dead") await fleet.start(s.index, false);
      this.#watch.forget(s.index);
    }
    if (this.#world.head === null)
      this.#moved("branch", await this.#world.recreateBranch(this.#rng));
    const head = this.#world.head!;
    this.#note("settle", `every daemon running, no faults; waiting for ${short(head)}`);
    const took = await this.#referee.converge(head, this.#o.convergeSeconds * 1000);
    this.#settles.push(took);
    this.#note("converged", `${short(head)} in ${took} ms`);
  }

  #note(op: string, detail: string): void {
    const rec = { step: this.#step, at: Date.now() - this.#started, op, detail };
    this.#oplog.push(rec);
    this.#log(`[${(rec.at / 1000).toFixed(1)}s] step ${rec.step} ${op}: ${detail}`);
  }

  async #report(
    failure: FuzzReport["failure"],
    harnessError: string | undefined,
  ): Promise<FuzzReport> {
    let lost: string[] = failure?.kind === "foreign key deleted" ? failure.details : [];
    if (!failure && !harnessError)
      lost = await this.#foreign.lost(await this.#observed.snapshot(), this.#observed);
    return {
      seed: this.#o.seed,
      stepsDone: this.#step,
      durationMs: Date.now() - this.#started,
      runDir: this.#runDir,
      ops: this.#picked,
      faults: this.#faults?.injected() ?? { s3: none, lakefs: none },
      daemons: this.#fleet?.counts ?? { starts: 0, kills: 0, pauses: 0, wipes: 0, cliRuns: 0 },
      foreign: {
        written: this.#foreign.written.size,
        kept: this.#foreign.written.size - lost.length,
        lost,
      },
      cli: this.#cli,
      settles: this.#settles,
      failure: failure && {
        ...failure,
        details: [...failure.details, ...(this.#fleet ? ["", this.#fleet.tails()] : [])],
      },
      harnessError,
      oplog: this.#oplog,
    };
  }
}

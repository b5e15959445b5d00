import { PutObjectCommand } from "@aws-sdk/client-s3";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Prng, sleep } from "../helpers/crash.ts";
import { startScriptedProxy } from "../helpers/scripted-proxy.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";
import { ForeignKeys, ProgressWatch } from "./checks.ts";
import { Fleet } from "./fleet.ts";
import { FuzzFailure } from "./referee.ts";
import type { OpRecord } from "./report.ts";
import { RuntimeReferee } from "./runtime-checks.ts";
import { Deliveries } from "./runtime-events.ts";
import { KafkaSide } from "./runtime-kafka.ts";
import { OffsetWatch } from "./runtime-offsets.ts";
import { runtimeOps } from "./runtime-options.ts";
import type { RuntimeOp, RuntimeOptions } from "./runtime-options.ts";
import type { RuntimeReport } from "./runtime-report.ts";
import { GLOBS, LIVE, RuntimeWorld } from "./runtime-world.ts";
import type { Change } from "./runtime-world.ts";

/**
 * A model-based fuzz of the daemon's runtime on the real stack: several repositories mirrored
 * by branch globs, daemons in a Kafka consumer group on a private broker, lakeFS events that
 * are dropped, duplicated, delayed past newer ones and sent to any daemon or straight to the
 * topic; branches created and deleted, broker restarts, partitions added, one repository that
 * lakeFS refuses for a while, daemons killed. After every step the invariants of
 * runtime-checks.ts hold, the offset rule of runtime-offsets.ts all along, and at every settle
 * each lane converges. As with the export fuzz, a seed replays the same history, not always
 * the same interleaving with the daemons.
 */

export async function runRuntimeFuzz(
  o: RuntimeOptions,
  log: (line: string) => void,
): Promise<RuntimeReport> {
  const stack = await connectStack();
  const run = new RuntimeRun(o, stack, log);
  try {
    return await run.main();
  } finally {
    await run.close();
    await stack.close();
  }
}

class RuntimeRun {
  readonly #o: RuntimeOptions;
  readonly #stack: Stack;
  readonly #log: (line: string) => void;
  readonly #rng: Prng;
  readonly #started = Date.now();
  readonly #runDir = mkdtempSync(join(tmpdir(), "lakefs-mirror-rfuzz-"));
  readonly #oplog: OpRecord[] = [];
  readonly #picked: Record<string, number> = {};
  readonly #settles: number[] = [];
  readonly #restartAt = new Map<number, { step: number; wipe: boolean }>();
  readonly #foreign = new ForeignKeys();
  readonly #world: RuntimeWorld;
  #step = 0;
  #bucket = "";
  #failing: string | undefined;
  #healAt: number | undefined;
  #kafkaUpAt: number | undefined;
  #foreignCount = 0;
  #repoFailures = 0;
  #proxy: Awaited<ReturnType<typeof startScriptedProxy>> | undefined;
  #kafka: KafkaSide | undefined;
  #fleet: Fleet | undefined;
  #events: Deliveries | undefined;
  #offsets: OffsetWatch | undefined;
  #referee!: RuntimeReferee;

  constructor(o: RuntimeOptions, stack: Stack, log: (line: string) => void) {
    this.#o = o;
    this.#stack = stack;
    this.#log = log;
    this.#rng = new Prng(o.seed);
    this.#world = new RuntimeWorld(stack);
  }

  async main(): Promise<RuntimeReport> {
    let failure: RuntimeReport["failure"];
    let harnessError: string | undefined;
    try {
      await this.#setup();
      for (this.#step = 1; this.#step <= this.#o.steps; this.#step++) {
        await this.#due();
        const op = this.#pick();
        this.#picked[op] = (this.#picked[op] ?? 0) + 1;
        await this.#perform(op);
        await this.#wait(this.#rng.int(200, 1500), false);
        await this.#referee.check();
        if (this.#step % this.#o.settleEvery === 0 || this.#step === this.#o.steps)
          await this.#settle(this.#step === this.#o.steps);
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
    await this.#offsets?.stop();
    await this.#events?.drain();
    await this.#fleet?.close();
    await this.#kafka?.close();
    await this.#proxy?.close();
  }

  async #setup(): Promise<void> {
    const o = this.#o;
    const rng = this.#rng;
    const env = this.#stack.env;
    this.#bucket = await createBucket(this.#stack, "rfuzz");
    this.#proxy = await startScriptedProxy(env.LAKEFS_ENDPOINT, (_method, path) => {
      const failing = this.#failing;
      if (!failing) return undefined;
      const at = `/api/v1/repositories/${failing}`;
      if (path !== at && !path.startsWith(`${at}/`) && !path.startsWith(`${at}?`)) return undefined;
      return { refuse: { status: 403, body: JSON.stringify({ message: "forbidden (injected)" }) } };
    });
    const kafka = await KafkaSide.start({ partitions: o.partitions });
    this.#kafka = kafka;
    for (let i = 0; i < o.repos; i++) {
      const repo = await createRepo(this.#stack, `rfuzz${i}`);
      this.#note("repository", (await this.#world.addRepo(rng, repo, o.frames, 6)).detail);
    }
    this.#fleet = new Fleet(
      {
        proxied: { ...this.#stack, env: { ...env, LAKEFS_ENDPOINT: this.#proxy.url } },
        repo: this.#world.repos[0]!.name,
        destination: `s3://${this.#bucket}/`,
        branch: LIVE,
        runDir: this.#runDir,
        ttlSeconds: o.ttlSeconds,
        productTimeouts: false,
        mirrors: this.#world.repos.map((r) => ({
          repository: r.name,
          branches: GLOBS,
          destination: `s3://${this.#bucket}/${r.name}/{branch}/`,
        })),
        extra: {
          reconcile: { intervalSeconds: o.reconcileSeconds },
          webhook: { token: env.LAKEFSACTION_MIRROR_TOKEN, forwardToKafka: true },
          kafka: kafka.daemonSettings(o),
          // Every lane's first export (a repository's first commit holds frames + 6 objects)
          // is split, in items of a few objects that workers cut further and hand on. Diffs of
          // a few objects run whole, in the lane's owner.
          ...(o.work
            ? {
                work: {
                  splitAbove: 12,
                  itemObjects: 5,
                  initialItems: 3,
                  itemTimeoutSeconds: 10,
                  pollMs: 200,
                  leaseViewMs: 1000,
                },
              }
            : {}),
        },
      },
      o.daemons,
    );
    this.#events = new Deliveries(rng, o, this.#fleet, kafka, (op, d) => this.#note(op, d));
    const watch = new ProgressWatch(o.stallSeconds * 1000);
    this.#referee = new RuntimeReferee({
      stack: this.#stack,
      bucket: this.#bucket,
      world: this.#world,
      fleet: this.#fleet,
      kafka,
      offsets: (this.#offsets = new OffsetWatch(kafka, this.#world, () => this.#referee.ledgers())),
      foreign: this.#foreign,
      watch,
    });
    this.#note(
      "setup",
      `bucket ${this.#bucket}, broker ${kafka.brokers}, topic ${kafka.topic} (${o.partitions} partitions), ` +
        `maxUncommittedPerPartition ${o.maxUncommitted}, ` +
        `work topic ${o.work ? kafka.workTopic : "none"}, logs in ${this.#runDir}`,
    );
    await this.#writeForeign(rng.int(2, 4));
    this.#offsets.start();
    await Promise.all(this.#fleet.slots.map((s) => this.#fleet!.start(s.index, false)));
    this.#note("start", `${o.daemons} daemons`);
    this.#events.emit(
      this.#world.repos.map((r) => ({
        detail: "",
        repo: r.name,
        branch: LIVE,
        event: { type: "post-commit", commit: r.branch(LIVE).head },
      })),
      0,
    );
  }

  #pick(): RuntimeOp {
    const w = this.#o.weights;
    const total = runtimeOps.reduce((n, k) => n + w[k], 0);
    if (total === 0) return "wait";
    let x = this.#rng.next() * total;
    for (const k of runtimeOps) {
      x -= w[k];
      if (x < 0) return k;
    }
    return "wait";
  }

  async #perform(op: RuntimeOp): Promise<void> {
    const rng = this.#rng;
    const world = this.#world;
    const fleet = this.#fleet!;
    const kafka = this.#kafka!;
    const repo = rng.pick(world.repos);
    switch (op) {
      case "commit": {
        const changes: Change[] = [];
        for (let n = rng.int(1, 3); n > 0; n--) {
          const r = rng.pick(world.repos);
          changes.push(await world.commit(rng, r, rng.pick(r.live()), rng.int(1, 4)));
        }
        return this.#changed(changes);
      }
      case "burst": {
        const b = rng.pick(repo.live().filter((x) => x.mirrored));
        const changes: Change[] = [];
        for (let n = rng.int(2, 4); n > 0; n--) changes.push(await world.commit(rng, repo, b, 1));
        return this.#changed(changes, true);
      }
      case "create": {
        const name = world.freeName(rng, repo, rng.next() < 0.8);
        if (!name) return this.#wait(rng.int(300, 2000));
        return this.#changed([await world.createBranch(rng, repo, name)]);
      }
      case "recreate": {
        // Deleted and created again at once (perhaps from another commit), a commit on it, and
        // the events in any order: the lane of the new branch is another life of the same lane.
        const features = repo.live().filter((x) => x.mirrored && x.name !== LIVE);
        if (!features.length) return this.#wait(rng.int(300, 2000));
        const b = rng.pick(features);
        const changes = [
          await world.deleteBranch(repo, b),
          await world.createBranch(rng, repo, b.name),
        ];
        if (rng.next() < 0.6) changes.push(await world.commit(rng, repo, b, rng.int(1, 3)));
        return this.#changed(changes, true);
      }
      case "delete": {
        const gone = repo.live().filter((b) => b.name !== LIVE);
        if (!gone.length) return this.#wait(rng.int(300, 2000));
        return this.#changed([await world.deleteBranch(repo, rng.pick(gone))]);
      }
      case "foreign":
        return this.#writeForeign(rng.int(1, 2));
      case "restart": {
        if (!kafka.broker.running) return this.#wait(rng.int(300, 2000));
        const hard = rng.next() < 0.4;
        const steps = rng.pick([0, 0, 1, 2]);
        const downMs = rng.int(500, 6000);
        await kafka.halt(hard);
        this.#note(
          "broker",
          `${hard ? "killed" : "stopped"}; up again ${steps ? `in ${steps} steps` : `in ${downMs} ms`}`,
        );
        if (steps) {
          this.#kafkaUpAt = this.#step + steps;
          return;
        }
        await this.#wait(downMs, false);
        return this.#brokerUp();
      }
      case "partitions": {
        if (kafka.partitions >= this.#o.maxPartitions || !kafka.broker.running)
          return this.#wait(rng.int(300, 2000));
        const from = kafka.partitions;
        const to = await kafka.addPartitions(rng.int(1, Math.min(2, this.#o.maxPartitions - from)));
        this.#note("partitions", `${from} -> ${to}`);
        return;
      }
      case "fail": {
        if (this.#failing) return this.#heal();
        this.#failing = repo.name;
        this.#healAt = this.#step + rng.int(3, 8);
        this.#repoFailures++;
        this.#note(
          "fail",
          `lakeFS refuses ${repo.name} (403) to the daemons until step ${this.#healAt}`,
        );
        return;
      }
      case "kill": {
        const up = fleet.slots.filter((s) => s.state !== "dead");
        if (!up.length) return this.#wait(rng.int(300, 2000));
        const slot = rng.pick(up);
        const wipe = rng.next() < 0.3;
        const after = rng.int(1, 3);
        await fleet.kill(slot.index);
        this.#restartAt.set(slot.index, { step: this.#step + after, wipe });
        this.#note(
          "kill -9",
          `daemon ${slot.index}; restart in ${after} steps${wipe ? " with an empty checkpoint store" : ""}`,
        );
        return;
      }
      case "wait":
        return this.#wait(rng.int(500, 4000));
    }
  }

  #heal(): void {
    this.#note("heal", `lakeFS answers for ${this.#failing} again`);
    this.#failing = undefined;
    this.#healAt = undefined;
  }

  #changed(changes: Change[], shuffle = false): void {
    for (const c of changes) this.#note("lakefs", c.detail);
    this.#events!.emit(changes, this.#step, shuffle);
  }

  async #brokerUp(): Promise<void> {
    this.#kafkaUpAt = undefined;
    const t0 = Date.now();
    await this.#kafka!.resume();
    this.#note("broker", `up again (${Date.now() - t0} ms to start)`);
  }

  /** Restarts, broker starts and late events that are due. */
  async #due(): Promise<void> {
    for (const [i, r] of [...this.#restartAt]) {
      if (r.step > this.#step) continue;
      this.#restartAt.delete(i);
      await this.#fleet!.start(i, r.wipe);
      this.#note("start", `daemon ${i}${r.wipe ? " (empty checkpoint store)" : ""}`);
    }
    if (this.#kafkaUpAt !== undefined && this.#kafkaUpAt <= this.#step) await this.#brokerUp();
    if (this.#healAt !== undefined && this.#healAt <= this.#step) this.#heal();
    this.#events!.due(this.#step);
  }

  async #writeForeign(n: number): Promise<void> {
    const rng = this.#rng;
    const names: string[] = [];
    for (let i = 0; i < n; i++) {
      const key = this.#world.foreignKey(rng, ++this.#foreignCount);
      const body = rng.bytes(rng.int(1, 60));
      const res = await this.#stack.s3.send(
        new PutObjectCommand({ Bucket: this.#bucket, Key: key, Body: body }),
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

  async #wait(ms: number, noted = true): Promise<void> {
    if (noted) this.#note("wait", `${ms} ms`);
    const until = Date.now() + ms;
    while (Date.now() < until) {
      await sleep(Math.min(500, until - Date.now()));
      this.#referee.offsets();
    }
  }

  /** Every daemon and the broker up, late events sent; then every healthy lane converges. */
  async #settle(last: boolean): Promise<void> {
    const fleet = this.#fleet!;
    if (!this.#kafka!.broker.running) await this.#brokerUp();
    for (const s of fleet.slots) {
      this.#restartAt.delete(s.index);
      if (s.state === "dead") await fleet.start(s.index, false);
    }
    // The refused repository may stay refused: the others must converge all the same.
    if (this.#failing && (last || this.#rng.next() < 0.3)) this.#heal();
    this.#events!.due(undefined);
    this.#note(
      "settle",
      `every daemon and the broker up${this.#failing ? `; ${this.#failing} still refused` : ""}`,
    );
    const took = await this.#referee.converge(this.#failing, this.#o.convergeSeconds * 1000);
    this.#settles.push(took);
    this.#note("converged", `in ${took} ms`);
  }

  #note(op: string, detail: string): void {
    const rec = { step: this.#step, at: Date.now() - this.#started, op, detail };
    this.#oplog.push(rec);
    this.#log(`[${(rec.at / 1000).toFixed(1)}s] step ${rec.step} ${op}: ${detail}`);
  }

  #report(failure: RuntimeReport["failure"], harnessError: string | undefined): RuntimeReport {
    const k = this.#kafka;
    return {
      seed: this.#o.seed,
      stepsDone: this.#step,
      durationMs: Date.now() - this.#started,
      runDir: this.#runDir,
      ops: this.#picked,
      events: this.#events?.counts,
      kafka: k && { ...k.counts, partitions: k.partitions, observed: k.observed },
      offsets: this.#offsets?.counts,
      daemons: this.#fleet?.counts,
      repoFailures: this.#repoFailures,
      refused: this.#proxy?.refused() ?? 0,
      foreignKeys: this.#foreign.written.size,
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

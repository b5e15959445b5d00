import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { MirrorSpec } from "../../src/config.ts";
import type { DaemonStatus } from "../../src/daemon/daemon.ts";
import { daemonAddress } from "../helpers/crash.ts";
import { commitEvent, daemonEnv, postWebhook, spawnDaemon } from "../helpers/daemon.ts";
import type { DaemonProcess } from "../helpers/daemon.ts";
import type { Stack } from "../helpers/stack.ts";

/**
 * The system under test: `lakefs-mirror run` daemons as child processes, sharing one lane
 * through its lease, each with its own checkpoint store (kept across a kill -9, or wiped as a
 * lost disk would be), and `lakefs-mirror export` runs. Both reach lakeFS and S3 only through
 * the fault-injecting proxies, whose URLs `proxied` carries.
 */

const MiB = 1024 * 1024;

/** Every child this process started and has not seen exit: none outlives it. */
const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});
function adopt(c: ChildProcess): void {
  children.add(c);
  c.once("exit", () => children.delete(c));
}

const entry = fileURLToPath(new URL("../../src/cli/bin.ts", import.meta.url));

export interface FleetOptions {
  /** The stack with LAKEFS_ENDPOINT and AWS_ENDPOINT_URL pointing at the proxies. */
  proxied: Stack;
  repo: string;
  /** s3://bucket/prefix/ */
  destination: string;
  branch: string;
  runDir: string;
  ttlSeconds: number;
  productTimeouts: boolean;
  /** The daemons' mirrors; default: `repo`'s `branch` to `destination`. */
  mirrors?: MirrorSpec[];
  /** Top-level config sections over the fleet's own (`kafka`, `reconcile`, `webhook`…). */
  extra?: Record<string, unknown>;
}

export type SlotState = "dead" | "running" | "paused";

export interface Slot {
  index: number;
  state: SlotState;
  proc: DaemonProcess | undefined;
  url: string | undefined;
  /** Bumped by every start: the run's log files and wiped stores are told apart by it. */
  generation: number;
  checkpoint: string;
}

export interface CliRun {
  args: string[];
  code: number | null;
  timedOut: boolean;
  durationMs: number;
  /** The status file it wrote, relative to the destination root. */
  statusKey: string | undefined;
  status: string | undefined;
  output: string;
}

export class Fleet {
  readonly slots: Slot[] = [];
  readonly counts = { starts: 0, kills: 0, pauses: 0, wipes: 0, cliRuns: 0 };
  readonly #o: FleetOptions;
  /** Every daemon process started, for their logs. */
  readonly #started: { name: string; proc: DaemonProcess }[] = [];
  readonly #config: string;
  readonly #cliConfig: string;

  constructor(o: FleetOptions, daemons: number) {
    this.#o = o;
    mkdirSync(o.runDir, { recursive: true });
    const settings = this.#settings();
    this.#config = join(o.runDir, "daemon.json");
    this.#cliConfig = join(o.runDir, "cli.json");
    writeFileSync(this.#cliConfig, JSON.stringify(settings, null, 2));
    for (let i = 0; i < daemons; i++) {
      this.slots.push({
        index: i,
        state: "dead",
        proc: undefined,
        url: undefined,
        generation: 0,
        checkpoint: join(o.runDir, `d${i}-checkpoint`),
      });
    }
  }

  /** Short windows everywhere, so that a fault costs seconds (unless productTimeouts). */
  #settings(): Record<string, unknown> {
    const o = this.#o;
    return {
      reconcile: { intervalSeconds: 1 },
      scheduler: { maxParallelLanes: 2, retryBaseSeconds: 1, retryMaxSeconds: 2 },
      lease: { enabled: true, ttlSeconds: o.ttlSeconds },
      retry: { retries: 4, minTimeoutMs: 20, maxTimeoutMs: 200, maxRetryTimeMs: 5000 },
      export: {
        concurrency: 8,
        multipartThresholdBytes: 5 * MiB,
        multipartPartSizeBytes: 5 * MiB,
        copyMultipartThresholdBytes: 5 * MiB,
        copyPartSizeBytes: 5 * MiB,
      },
      shutdown: { graceSeconds: 2 },
      ...(o.productTimeouts
        ? {}
        : {
            s3: { idleTimeoutMs: 2000, connectTimeoutMs: 1000, maxAttempts: 2 },
            lakefs: { connectTimeoutMs: 1000, headersTimeoutMs: 3000, bodyTimeoutMs: 3000 },
          }),
    };
  }

  #writeDaemonConfig(slot: Slot): string {
    const file = `${this.#config}.${slot.index}`;
    const o = this.#o;
    writeFileSync(
      file,
      JSON.stringify(
        {
          ...this.#settings(),
          mirrors: o.mirrors ?? [
            { repository: o.repo, branches: [o.branch], destination: o.destination },
          ],
          server: { host: "127.0.0.1", port: 0 },
          webhook: { token: o.proxied.env.LAKEFSACTION_MIRROR_TOKEN },
          checkpoint: { path: slot.checkpoint },
          ...o.extra,
        },
        null,
        2,
      ),
    );
    return file;
  }

  async start(i: number, wipe: boolean): Promise<void> {
    const slot = this.slots[i]!;
    if (slot.state !== "dead") throw new Error(`daemon ${i} is ${slot.state}`);
    if (wipe) {
      // A lost disk: the daemon starts with an empty checkpoint store (and a new lease owner).
      rmSync(slot.checkpoint, { recursive: true, force: true });
      this.counts.wipes++;
    }
    slot.generation++;
    slot.proc = spawnDaemon(this.#o.proxied, this.#writeDaemonConfig(slot));
    adopt(slot.proc.child);
    this.#started.push({ name: `daemon ${i} (start ${slot.generation})`, proc: slot.proc });
    slot.state = "running";
    this.counts.starts++;
    slot.url = await daemonAddress(slot.proc, 60_000);
  }

  async kill(i: number): Promise<void> {
    const slot = this.slots[i]!;
    if (slot.state === "dead" || !slot.proc) return;
    slot.proc.child.kill("SIGKILL");
    await slot.proc.exited;
    this.#saveLog(slot);
    slot.state = "dead";
    slot.url = undefined;
    this.counts.kills++;
  }

  pause(i: number): void {
    const slot = this.slots[i]!;
    if (slot.state !== "running") return;
    slot.proc!.child.kill("SIGSTOP");
    slot.state = "paused";
    this.counts.pauses++;
  }

  resume(i: number): void {
    const slot = this.slots[i]!;
    if (slot.state !== "paused") return;
    slot.proc!.child.kill("SIGCONT");
    slot.state = "running";
  }

  running(): Slot[] {
    return this.slots.filter((s) => s.state === "running");
  }

  /** A lakeFS action's webhook call, to every running daemon (as one action per daemon would). */
  async notify(eventType: string, commit: string | null): Promise<void> {
    const event = commitEvent(this.#o.repo, this.#o.branch, commit ?? "", eventType);
    if (!commit) delete (event as Partial<typeof event>).commit_id;
    await Promise.all(this.running().map((s) => this.post(s.index, event)));
  }

  /**
   * One webhook call to daemon `i`; its HTTP status, or undefined when it does not answer in
   * time (as a hook that timed out: lakeFS moves on) or is not running.
   */
  async post(i: number, event: unknown, timeoutMs = 3000): Promise<number | undefined> {
    const s = this.slots[i]!;
    if (s.state !== "running" || !s.url) return undefined;
    const auth = { authorization: `Bearer ${this.#o.proxied.env.LAKEFSACTION_MIRROR_TOKEN}` };
    const res = await Promise.race([
      postWebhook(s.url, event, auth).catch(() => undefined),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), timeoutMs).unref()),
    ]);
    await res?.body?.cancel().catch(() => undefined);
    return res?.status;
  }

  /** A running daemon's /status, or undefined when it does not answer within a few seconds. */
  async status(slot: Slot): Promise<DaemonStatus | undefined> {
    if (slot.state !== "running" || !slot.url) return undefined;
    try {
      const res = await fetch(`${slot.url}/status`, { signal: AbortSignal.timeout(3000) });
      return res.ok ? ((await res.json()) as DaemonStatus) : undefined;
    } catch {
      return undefined;
    }
  }

  /** `lakefs-mirror export <repo> <destination> …args`, through the proxies, killed at `timeoutMs`. */
  async cli(args: string[], timeoutMs: number): Promise<CliRun> {
    this.counts.cliRuns++;
    const started = Date.now();
    const all = ["export", this.#o.repo, this.#o.destination, ...args, "--config", this.#cliConfig];
    const child = spawn(process.execPath, ["--import", "tsx", entry, ...all], {
      env: { ...daemonEnv(this.#o.proxied), LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    adopt(child);
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
    clearTimeout(timer);
    writeFileSync(join(this.#o.runDir, `cli-${this.counts.cliRuns}.log`), output);
    let statusKey: string | undefined;
    let status: string | undefined;
    const prefix = new URL(this.#o.destination.replace(/^s3:/, "http:")).pathname.slice(1);
    for (const line of output.split("\n")) {
      if (!line.startsWith("{") || !line.includes("export finished")) continue;
      try {
        const v = JSON.parse(line) as { statusKey?: string; status?: string };
        if (v.statusKey) statusKey = decodeURIComponent(v.statusKey).slice(prefix.length);
        status = v.status;
      } catch {
        // Not a log line.
      }
    }
    return { args, code, timedOut, durationMs: Date.now() - started, statusKey, status, output };
  }

  #saveLog(slot: Slot): void {
    if (!slot.proc) return;
    writeFileSync(
      join(this.#o.runDir, `d${slot.index}-${slot.generation}.log`),
      slot.proc.output(),
    );
  }

  /** The output of every daemon process so far. */
  outputs(): { name: string; text: string }[] {
    return this.#started.map((s) => ({ name: s.name, text: s.proc.output() }));
  }

  /** Log tails of every daemon, for a failure report. */
  tails(lines = 25): string {
    return this.slots
      .filter((s) => s.proc)
      .map((s) => {
        const out = s
          .proc!.output()
          .trimEnd()
          .split("\n")
          .slice(-lines)
          .map((l) => (l.length > 500 ? `${l.slice(0, 500)}…` : l))
          .join("\n");
        return `--- daemon ${s.index} (${s.state}, start ${s.generation}) ---\n${out}`;
      })
      .join("\n");
  }

  /** Kills every daemon this fleet started (they are ours alone) and keeps their logs. */
  async close(): Promise<void> {
    for (const s of this.slots) {
      if (s.state === "paused") s.proc!.child.kill("SIGCONT");
      if (s.state !== "dead" && s.proc) {
        s.proc.child.kill("SIGKILL");
        await s.proc.exited;
        this.#saveLog(s);
        s.state = "dead";
      }
    }
  }
}

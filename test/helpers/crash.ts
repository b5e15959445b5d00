import { execFile, spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { TaskPool } from "../../src/export/pool.ts";
import type { DaemonProcess } from "./daemon.ts";
import { gatewayPut, listKeys, statusKeys } from "./mirror.ts";
import type { SeedObject } from "./mirror.ts";
import type { Stack } from "./stack.ts";

/** A seeded PRNG (mulberry32): the same seed gives the same choices, so a failure can be replayed. */
export class Prng {
  readonly seed: number;
  #state: number;

  constructor(seed: number) {
    this.seed = seed;
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** A whole number in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(this.next() * 256);
    return out;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError("pick from an empty list");
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** `n` distinct items, in random order. */
  sample<T>(items: readonly T[], n: number): T[] {
    const copy = [...items];
    for (let i = copy.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [copy[i], copy[j]] = [copy[j]!, copy[i]!];
    }
    return copy.slice(0, n);
  }
}

/** The seed from `envVar` when set (to replay a run), else a fresh one. */
export function seedFrom(envVar: string): number {
  const given = process.env[envVar];
  if (given !== undefined && given !== "") {
    const n = Number(given);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${envVar} must be a whole number`);
    return n;
  }
  return randomInt(2 ** 31);
}

/**
 * Writes `puts` and removes `deletes` on a branch, `concurrency` requests at a time, then
 * commits; returns the commit ID. Objects go through the gateway or the API as each says.
 */
export async function commitConcurrently(
  stack: Stack,
  repo: string,
  branch: string,
  puts: SeedObject[],
  deletes: string[],
  message: string,
  concurrency = 16,
): Promise<string> {
  const errors: unknown[] = [];
  const pool = new TaskPool(concurrency);
  const guarded = (fn: () => Promise<void>) => () =>
    fn().catch((err: unknown) => {
      errors.push(err);
    });
  for (const o of puts) {
    await pool.submit(
      guarded(async () => {
        if (o.via === "api") {
          await stack.lakefs.uploadObject(repo, branch, o.path, o.content, {
            ...(o.contentType ? { contentType: o.contentType } : {}),
            ...(o.metadata ? { metadata: o.metadata } : {}),
          });
        } else {
          await gatewayPut(stack, repo, branch, o);
        }
      }),
    );
  }
  for (const p of deletes) {
    await pool.submit(guarded(() => stack.lakefs.deleteObject(repo, branch, p)));
  }
  await pool.drain();
  if (errors.length > 0) {
    throw new AggregateError(errors, `${errors.length} writes to ${repo}/${branch} failed`);
  }
  return (await stack.lakefs.commit(repo, branch, { message })).id;
}

/** The mirrored objects at a destination: every key but status files and `_lakefs_mirror/`. */
export async function mirroredKeys(
  stack: Stack,
  bucket: string,
  prefix = "",
): Promise<Map<string, number>> {
  const keys = await listKeys(stack, bucket, prefix);
  for (const k of statusKeys(keys.keys())) keys.delete(k);
  for (const k of [...keys.keys()]) if (k.startsWith("_lakefs_mirror/")) keys.delete(k);
  return keys;
}

/** The root's status files, newest first (the ISO time in the name orders them). */
export function statusFilesNewestFirst(keys: Iterable<string>) {
  return statusKeys(keys)
    .map((key) => {
      const m = /^EXPORT_(.+)_(\d{4}-\d\d-\d\dT[\d:.]+Z)_(SUCCESS|FAILURE)$/.exec(key);
      if (!m) throw new Error(`not a status file: ${key}`);
      return { key, commitId: m[1]!, at: m[2]!, status: m[3]! };
    })
    .sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
}

/** The daemon's address, or an error with its output if it exits before reporting one. */
export async function daemonAddress(proc: DaemonProcess, timeoutMs = 30_000): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      proc.url,
      proc.exited.then((code) => {
        throw new Error(`the daemon exited (${code}) before starting:\n${proc.output()}`);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the daemon did not start in ${timeoutMs} ms:\n${proc.output()}`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The last `n` lines of a daemon's output, for failure messages. */
export function tail(output: string, n = 40): string {
  return output.trimEnd().split("\n").slice(-n).join("\n");
}

const lakefsScript = fileURLToPath(new URL("../stack/lakefs", import.meta.url));

/** Stops or starts the stack's lakeFS alone (test/stack/lakefs); `start` waits until it is healthy. */
export async function lakefsServer(action: "stop" | "start"): Promise<void> {
  await promisify(execFile)(lakefsScript, [action], { timeout: 120_000 });
}

/**
 * Takes the lock test/stack/up holds while it checks and (re)starts the stack, and keeps it
 * until the returned function is called. While lakeFS is stopped on purpose, an `up` run by
 * another test file would find the stack unhealthy and rebuild all of it from scratch; holding
 * the lock makes such a run wait until lakeFS is back. The lock goes with this process.
 */
export async function holdStackLock(timeoutMs = 120_000): Promise<() => Promise<void>> {
  const stackDir =
    process.env.LAKEFS_MIRROR_STACK_DIR ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "lakefs-mirror", "stack");
  const holder = spawn(
    "flock",
    [
      "--timeout",
      String(Math.ceil(timeoutMs / 1000)),
      join(stackDir, ".lock"),
      "sh",
      "-c",
      "echo locked; exec cat >/dev/null",
    ],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  const exited = new Promise<number | null>((r) => holder.on("exit", (code) => r(code)));
  await new Promise<void>((resolve, reject) => {
    let out = "";
    holder.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("locked")) resolve();
    });
    void exited.then((code) => reject(new Error(`flock on ${stackDir}/.lock exited (${code})`)));
  });
  return async () => {
    holder.stdin.end();
    await exited;
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

import { randomInt } from "node:crypto";

/** What one runtime fuzz run does and how big it is. Every field has an environment variable. */
export interface RuntimeOptions {
  /** Seed of the PRNG that picks every operation, name, byte and delivery decision. */
  seed: number;
  /** Operations per run (settles come on top). */
  steps: number;
  /** Daemons in the consumer group. */
  daemons: number;
  /** Mirrored repositories (each with `live` and `feat-*` lanes). */
  repos: number;
  /** The topic's partitions at the start, and the most partition changes may grow it to. */
  partitions: number;
  maxPartitions: number;
  /** Numbered objects in each repository's first commit (their metadata is sampled). */
  frames: number;
  /** Relative weights of the operations (0 leaves one out). */
  weights: Record<RuntimeOp, number>;
  /** Of the events lakeFS would send: dropped, sent twice, held back until after newer ones. */
  drop: number;
  duplicate: number;
  late: number;
  /** A settle (Kafka up, every daemon up, late events delivered) after this many steps. */
  settleEvery: number;
  /** At a settle, every lane of every healthy repository must be at HEAD within this. */
  convergeSeconds: number;
  /** A lane "exporting" this long without any sign of progress is stuck. */
  stallSeconds: number;
  ttlSeconds: number;
  /** The daemons' reconcile.intervalSeconds: long enough that events do most of the work. */
  reconcileSeconds: number;
  sessionTimeoutMs: number;
  /** kafka.maxUncommittedPerPartition; small values pause partitions behind a failing lane. */
  maxUncommitted: number;
  /**
   * The group shares big exports over a work topic (kafka.workTopic): every first export of a
   * lane (a repository's first commit holds `frames` + 6 objects) is split into work items.
   */
  work: boolean;
}

export const runtimeOps = [
  "commit",
  "burst",
  "create",
  "delete",
  "recreate",
  "foreign",
  "restart",
  "partitions",
  "fail",
  "kill",
  "wait",
] as const;
export type RuntimeOp = (typeof runtimeOps)[number];

export const defaultRuntimeWeights: Record<RuntimeOp, number> = {
  commit: 10,
  burst: 2,
  create: 3,
  delete: 2,
  recreate: 2,
  foreign: 1,
  restart: 1,
  partitions: 1,
  fail: 1,
  kill: 1,
  wait: 2,
};

type Env = Record<string, string | undefined>;

function whole(env: Env, name: string, fallback: number, min = 0): number {
  const text = env[name];
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`${name} must be a whole number >= ${min}, got "${text}"`);
  return n;
}

function share(env: Env, name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0 || n > 1)
    throw new Error(`${name} must be a number in 0..1, got "${text}"`);
  return n;
}

/** `commit=5,kill=0`: weights for the named operations; the others keep their defaults. */
export function parseRuntimeWeights(text: string | undefined): Record<RuntimeOp, number> {
  const weights = { ...defaultRuntimeWeights };
  if (!text) return weights;
  for (const part of text.split(",")) {
    const m = /^\s*([a-z]+)\s*[=:]\s*(\d+)\s*$/.exec(part);
    if (!m) throw new Error(`FUZZ_OPS takes name=weight,… (got "${part}")`);
    const name = m[1] as RuntimeOp;
    if (!runtimeOps.includes(name))
      throw new Error(`FUZZ_OPS: unknown operation "${m[1]}" (known: ${runtimeOps.join(", ")})`);
    weights[name] = Number(m[2]);
  }
  return weights;
}

/** The options from FUZZ_* variables; `base` supplies what the variables leave unset. */
export function runtimeOptionsFromEnv(
  env: Env,
  base: Partial<RuntimeOptions> = {},
): RuntimeOptions {
  const seed = whole(env, "FUZZ_SEED", base.seed ?? randomInt(2 ** 31));
  const o: RuntimeOptions = {
    seed,
    steps: whole(env, "FUZZ_STEPS", base.steps ?? 30, 1),
    daemons: whole(env, "FUZZ_DAEMONS", base.daemons ?? 2, 1),
    repos: whole(env, "FUZZ_REPOS", base.repos ?? 3, 2),
    partitions: whole(env, "FUZZ_PARTITIONS", base.partitions ?? 3, 1),
    maxPartitions: whole(env, "FUZZ_MAX_PARTITIONS", base.maxPartitions ?? 8, 1),
    frames: whole(env, "FUZZ_FRAMES", base.frames ?? 20),
    weights: env.FUZZ_OPS
      ? parseRuntimeWeights(env.FUZZ_OPS)
      : (base.weights ?? { ...defaultRuntimeWeights }),
    drop: share(env, "FUZZ_DROP", base.drop ?? 0.15),
    duplicate: share(env, "FUZZ_DUPLICATE", base.duplicate ?? 0.15),
    late: share(env, "FUZZ_LATE", base.late ?? 0.2),
    settleEvery: whole(env, "FUZZ_SETTLE_EVERY", base.settleEvery ?? 8, 1),
    convergeSeconds: whole(env, "FUZZ_CONVERGE_SECONDS", base.convergeSeconds ?? 90, 1),
    stallSeconds: whole(env, "FUZZ_STALL_SECONDS", base.stallSeconds ?? 60, 1),
    ttlSeconds: whole(env, "FUZZ_TTL", base.ttlSeconds ?? 8, 1),
    reconcileSeconds: whole(env, "FUZZ_RECONCILE_SECONDS", base.reconcileSeconds ?? 5),
    sessionTimeoutMs: whole(env, "FUZZ_SESSION_MS", base.sessionTimeoutMs ?? 6000, 1),
    // Drawn from the seed unless given, so that some runs pause partitions often.
    maxUncommitted: whole(
      env,
      "FUZZ_MAX_UNCOMMITTED",
      base.maxUncommitted ?? [3, 6, 20, 1000][seed % 4]!,
      1,
    ),
    work: (env.FUZZ_WORK ?? (base.work === false ? "0" : "1")) !== "0",
  };
  if (o.maxPartitions < o.partitions) o.maxPartitions = o.partitions;
  return o;
}

/** The command that runs this very fuzz again. */
export function runtimeReplayCommand(o: RuntimeOptions): string {
  const ops = Object.entries(o.weights)
    .filter(([k, v]) => defaultRuntimeWeights[k as RuntimeOp] !== v)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  return [
    `FUZZ_SEED=${o.seed}`,
    `FUZZ_STEPS=${o.steps}`,
    `FUZZ_DAEMONS=${o.daemons}`,
    `FUZZ_REPOS=${o.repos}`,
    `FUZZ_PARTITIONS=${o.partitions}`,
    `FUZZ_MAX_PARTITIONS=${o.maxPartitions}`,
    `FUZZ_FRAMES=${o.frames}`,
    `FUZZ_DROP=${o.drop}`,
    `FUZZ_DUPLICATE=${o.duplicate}`,
    `FUZZ_LATE=${o.late}`,
    `FUZZ_SETTLE_EVERY=${o.settleEvery}`,
    `FUZZ_TTL=${o.ttlSeconds}`,
    `FUZZ_RECONCILE_SECONDS=${o.reconcileSeconds}`,
    `FUZZ_SESSION_MS=${o.sessionTimeoutMs}`,
    `FUZZ_MAX_UNCOMMITTED=${o.maxUncommitted}`,
    `FUZZ_WORK=${o.work ? 1 : 0}`,
    ...(ops ? [`FUZZ_OPS=${ops}`] : []),
    "FUZZ_RUNS=1",
    "npm run fuzz:runtime",
  ].join(" ");
}

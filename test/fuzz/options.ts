import { randomInt } from "node:crypto";

/** What one fuzz run does and how big it is. Every field has an environment variable. */
export interface FuzzOptions {
  /** Seed of the PRNG that picks every operation, path, byte and fault decision. */
  seed: number;
  /** Operations per run (settles come on top). */
  steps: number;
  /** Daemons sharing the lane through its lease. */
  daemons: number;
  /** Multiplies the fault rates; 0: no faults injected at all. */
  faults: number;
  /**
   * Non-padded numbered objects `frames/1` … `frames/<n>` in the first commit; 0: none. From
   * about 1,130 on, more than a listing page (1,000) sorts between `frames/` and `frames/9`.
   */
  frames: number;
  /** Relative weights of the operations (0 leaves one out). */
  weights: Record<OpName, number>;
  /** A settle (faults off, every daemon up) after this many steps, then a convergence check. */
  settleEvery: number;
  /** Once faults stop, the mirror must equal HEAD under a SUCCESS for it within this. */
  convergeSeconds: number;
  /** A lane "exporting" this long without any sign of progress is stuck. */
  stallSeconds: number;
  /** A CLI export that runs longer than this is hung. */
  cliTimeoutSeconds: number;
  /** Lease TTL of the daemons. */
  ttlSeconds: number;
  /** true: the daemons keep the product's default request timeouts instead of short ones. */
  productTimeouts: boolean;
  /** The fault mode while the daemons start (their lane's first export); random when unset. */
  startFaults: FaultMode | undefined;
}

export const faultModes = ["off", "light", "issue", "storm", "throttle"] as const;
export type FaultMode = (typeof faultModes)[number];

export const opNames = [
  "change",
  "burst",
  "revert",
  "reset",
  "merge",
  "branch",
  "foreign",
  "cli",
  "faults",
  "kill",
  "pause",
  "wait",
] as const;
export type OpName = (typeof opNames)[number];

export const defaultWeights: Record<OpName, number> = {
  change: 10,
  burst: 2,
  revert: 2,
  reset: 2,
  merge: 2,
  branch: 1,
  foreign: 2,
  cli: 2,
  faults: 3,
  kill: 2,
  pause: 2,
  wait: 4,
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

function decimal(env: Env, name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number >= 0, got "${text}"`);
  return n;
}

/** `change=5,cli=0`: weights for the named operations; the others keep their defaults. */
export function parseWeights(text: string | undefined): Record<OpName, number> {
  const weights = { ...defaultWeights };
  if (!text) return weights;
  for (const part of text.split(",")) {
    const m = /^\s*([a-z]+)\s*[=:]\s*(\d+)\s*$/.exec(part);
    if (!m) throw new Error(`FUZZ_OPS takes name=weight,… (got "${part}")`);
    const name = m[1] as OpName;
    if (!opNames.includes(name))
      throw new Error(`FUZZ_OPS: unknown operation "${m[1]}" (known: ${opNames.join(", ")})`);
    weights[name] = Number(m[2]);
  }
  return weights;
}

function startFaults(text: string | undefined): FaultMode | undefined {
  if (!text) return undefined;
  if (!(faultModes as readonly string[]).includes(text))
    throw new Error(`FUZZ_START_FAULTS must be one of ${faultModes.join(", ")}, got "${text}"`);
  return text as FaultMode;
}

/** The options from FUZZ_* variables; `base` supplies what the variables leave unset. */
export function optionsFromEnv(env: Env, base: Partial<FuzzOptions> = {}): FuzzOptions {
  const o: FuzzOptions = {
    seed: whole(env, "FUZZ_SEED", base.seed ?? randomInt(2 ** 31)),
    steps: whole(env, "FUZZ_STEPS", base.steps ?? 40, 1),
    daemons: whole(env, "FUZZ_DAEMONS", base.daemons ?? 2, 1),
    faults: decimal(env, "FUZZ_FAULTS", base.faults ?? 1),
    frames: whole(env, "FUZZ_FRAMES", base.frames ?? 1200),
    weights: env.FUZZ_OPS ? parseWeights(env.FUZZ_OPS) : (base.weights ?? { ...defaultWeights }),
    settleEvery: whole(env, "FUZZ_SETTLE_EVERY", base.settleEvery ?? 8, 1),
    convergeSeconds: whole(env, "FUZZ_CONVERGE_SECONDS", base.convergeSeconds ?? 90, 1),
    stallSeconds: whole(env, "FUZZ_STALL_SECONDS", base.stallSeconds ?? 60, 1),
    cliTimeoutSeconds: whole(env, "FUZZ_CLI_TIMEOUT", base.cliTimeoutSeconds ?? 90, 1),
    ttlSeconds: whole(env, "FUZZ_TTL", base.ttlSeconds ?? 10, 1),
    productTimeouts: env.FUZZ_PRODUCT_TIMEOUTS
      ? env.FUZZ_PRODUCT_TIMEOUTS === "1"
      : (base.productTimeouts ?? false),
    startFaults: startFaults(env.FUZZ_START_FAULTS) ?? base.startFaults,
  };
  if (o.frames === 0) o.weights.burst = 0;
  return o;
}

/** The command that runs this very fuzz again. */
export function replayCommand(o: FuzzOptions): string {
  const ops = Object.entries(o.weights)
    .filter(([k, v]) => defaultWeights[k as OpName] !== v)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  return [
    `FUZZ_SEED=${o.seed}`,
    `FUZZ_STEPS=${o.steps}`,
    `FUZZ_DAEMONS=${o.daemons}`,
    `FUZZ_FAULTS=${o.faults}`,
    `FUZZ_FRAMES=${o.frames}`,
    `FUZZ_SETTLE_EVERY=${o.settleEvery}`,
    `FUZZ_TTL=${o.ttlSeconds}`,
    ...(ops ? [`FUZZ_OPS=${ops}`] : []),
    ...(o.productTimeouts ? ["FUZZ_PRODUCT_TIMEOUTS=1"] : []),
    ...(o.startFaults ? [`FUZZ_START_FAULTS=${o.startFaults}`] : []),
    "FUZZ_RUNS=1",
    "npm run fuzz",
  ].join(" ");
}

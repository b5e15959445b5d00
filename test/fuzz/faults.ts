import { startFaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
import type { Fault, FaultInjectingProxy, FaultRates } from "../helpers/fault-injecting-proxy.ts";
import type { Prng } from "../helpers/crash.ts";
import type { FaultMode } from "./options.ts";

/**
 * The fault-injecting proxies every daemon and CLI run reaches S3 and lakeFS through, and the
 * fault modes the fuzz switches between. S3 rates of each mode (lakeFS gets half): "issue" is
 * the rate set of the design's target, a "storm" an outage of both, and "throttle" S3 slowing
 * down the object writes under the prefix alone (S3 throttles per prefix), while lakeFS, the
 * lease, the ledger and the status files pass.
 */
const modes: Record<FaultMode, FaultRates> = {
  off: {},
  light: { slowdown: 0.05, reset: 0.01, cut: 0.01, stall: 0.005 },
  issue: { slowdown: 0.15, reset: 0.04, cut: 0.03, stall: 0.02 },
  storm: { slowdown: 0.6, reset: 0.1 },
  throttle: { slowdown: 0.95 },
};

export class Faults {
  readonly s3: FaultInjectingProxy;
  readonly lakefs: FaultInjectingProxy;
  readonly #state: { mode: FaultMode };

  private constructor(
    s3: FaultInjectingProxy,
    lakefs: FaultInjectingProxy,
    state: { mode: FaultMode },
  ) {
    this.s3 = s3;
    this.lakefs = lakefs;
    this.#state = state;
  }

  /** Proxies in front of `s3Url` and `lakefsUrl`; `prefix` is `/<bucket>/<prefix>` in S3 paths. */
  static async start(rng: Prng, s3Url: string, lakefsUrl: string, prefix: string) {
    const state: { mode: FaultMode } = { mode: "off" };
    const throttled = () => state.mode === "throttle";
    const objectWrite = (method: string, url: string) => {
      const path = url.split("?")[0]!;
      return (
        (method === "PUT" || method === "POST") &&
        path.startsWith(prefix) &&
        !path.startsWith(`${prefix}_lakefs_mirror/`) &&
        !path.startsWith(`${prefix}EXPORT_`)
      );
    };
    const s3 = await startFaultInjectingProxy(s3Url, {
      flavor: "s3",
      seed: rng.int(1, 2 ** 30),
      eligible: (method, url) => !throttled() || objectWrite(method, url),
    });
    const lakefs = await startFaultInjectingProxy(lakefsUrl, {
      flavor: "lakefs",
      seed: rng.int(1, 2 ** 30),
      eligible: () => !throttled(),
    });
    return new Faults(s3, lakefs, state);
  }

  get mode(): FaultMode {
    return this.#state.mode;
  }

  /** Switches to `mode`, its rates multiplied by `scale` (at most 95 %). */
  set(mode: FaultMode, scale: number): void {
    this.#state.mode = mode;
    const scaled = (f: number): FaultRates =>
      Object.fromEntries(Object.entries(modes[mode]).map(([k, v]) => [k, Math.min(0.95, v * f)]));
    this.s3.setRates(scaled(scale));
    this.lakefs.setRates(scaled(scale / 2));
  }

  injected(): { s3: Record<Fault, number>; lakefs: Record<Fault, number> } {
    return { s3: this.s3.injected(), lakefs: this.lakefs.injected() };
  }

  async close(): Promise<void> {
    await this.s3.close();
    await this.lakefs.close();
  }
}

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runRuntimeFuzz } from "../fuzz/runtime.ts";
import { defaultRuntimeWeights, runtimeOptionsFromEnv } from "../fuzz/runtime-options.ts";
import { describeRuntimeReport } from "../fuzz/runtime-report.ts";

/**
 * A short run of the runtime fuzz (test/fuzz/runtime.ts): a fresh seed each time, printed, so
 * that a failure can be replayed with `npm run fuzz:runtime` and the printed command.
 */
describe("runtime fuzz", () => {
  it("a short history of lost, doubled and late events, broker restarts, new partitions, branches by glob, a refused repository and kills keeps every offset behind its export and converges", async () => {
    // The runtime's own operations weigh more than in a long run, so that a short one meets them.
    const weights = { ...defaultRuntimeWeights, restart: 2, partitions: 2, fail: 3 };
    const o = runtimeOptionsFromEnv(process.env, { steps: 14, repos: 2, settleEvery: 7, weights });
    console.log(`seed=${o.seed}`);
    const report = await runRuntimeFuzz(o, (line) => console.log(line));
    const text = describeRuntimeReport(o, report);
    console.log(text);
    assert.equal(report.harnessError, undefined, text);
    assert.equal(report.failure, undefined, text);
    assert.equal(report.stepsDone, o.steps);
    assert.ok(report.settles.length >= 2, "the run settled twice");
  });
});

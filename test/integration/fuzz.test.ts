import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runFuzz } from "../fuzz/fuzz.ts";
import { optionsFromEnv } from "../fuzz/options.ts";
import { describeReport } from "../fuzz/report.ts";

/**
 * A short run of the model-based fuzz (test/fuzz/): a fresh seed each time, printed, so that a
 * failure can be replayed with `npm run fuzz` and the printed command. Longer runs: npm run fuzz.
 */
describe("model-based fuzz", () => {
  it("a short random history with faults, kills and pauses keeps every SUCCESS true, every foreign key, and converges", async () => {
    const o = optionsFromEnv(process.env, { steps: 12, daemons: 2, settleEvery: 6 });
    console.log(`seed=${o.seed}`);
    const report = await runFuzz(o, (line) => console.log(line));
    const text = describeReport(o, report);
    console.log(text);
    assert.equal(report.harnessError, undefined, text);
    assert.equal(report.failure, undefined, text);
    assert.equal(report.stepsDone, o.steps);
    assert.ok(report.settles.length >= 2, "the run settled twice");
  });
});

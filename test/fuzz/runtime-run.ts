// `npm run fuzz:runtime`: model-based fuzz runs of the daemon's runtime on the real stack (see
// runtime.ts). FUZZ_SEED replays a run; FUZZ_RUNS, FUZZ_STEPS, FUZZ_REPOS, FUZZ_OPS and the
// others in runtime-options.ts size it.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runRuntimeFuzz } from "./runtime.ts";
import { runtimeOptionsFromEnv } from "./runtime-options.ts";
import { describeRuntimeReport } from "./runtime-report.ts";

// Ctrl-C: exit through process.exit, whose handlers kill the daemons this run started.
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => process.exit(130));

async function main(): Promise<number> {
  const first = runtimeOptionsFromEnv(process.env);
  const runs = Number(process.env.FUZZ_RUNS ?? "1");
  if (!Number.isInteger(runs) || runs < 1) throw new Error("FUZZ_RUNS must be a whole number >= 1");
  let failed = 0;
  for (let i = 0; i < runs; i++) {
    const seed = (first.seed + i) % 2 ** 31;
    const o = runtimeOptionsFromEnv({ ...process.env, FUZZ_SEED: String(seed) });
    console.log(`seed=${o.seed}`);
    const report = await runRuntimeFuzz(o, (line) => console.log(line));
    const text = describeRuntimeReport(o, report);
    console.log(`\n${text}\n`);
    writeFileSync(
      join(report.runDir, "report.json"),
      JSON.stringify({ options: o, ...report }, null, 2),
    );
    if (report.failure || report.harnessError) failed++;
  }
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main();

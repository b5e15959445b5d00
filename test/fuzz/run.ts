// `npm run fuzz`: model-based fuzz runs of lakefs-mirror on the real stack (see fuzz.ts).
// FUZZ_SEED replays a run; FUZZ_RUNS, FUZZ_STEPS, FUZZ_DAEMONS, FUZZ_FAULTS, FUZZ_FRAMES,
// FUZZ_OPS and the others in options.ts size it.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runFuzz } from "./fuzz.ts";
import { optionsFromEnv } from "./options.ts";
import { describeReport } from "./report.ts";

// Ctrl-C: exit through process.exit, whose handlers kill the daemons this run started.
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => process.exit(130));

async function main(): Promise<number> {
  const first = optionsFromEnv(process.env);
  const runs = Number(process.env.FUZZ_RUNS ?? "1");
  if (!Number.isInteger(runs) || runs < 1) throw new Error("FUZZ_RUNS must be a whole number >= 1");
  let failed = 0;
  for (let i = 0; i < runs; i++) {
    const o = { ...first, seed: (first.seed + i) % 2 ** 31 };
    console.log(`seed=${o.seed}`);
    const report = await runFuzz(o, (line) => console.log(line));
    const text = describeReport(o, report);
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

#!/usr/bin/env -S node --max-semi-space-size=16 --heap-growing-percent=30
// The flags: exports allocate many short-lived objects (pages of entries, a request per
// object). Node 24 lets each young-generation semi-space grow far beyond 16 MB, and V8 lets the
// old generation grow to several times what is live before it collects; both show as resident
// memory without making exports faster. Measured on Node 24: a 10,000-object --sync run peaks at
// about 260 MB without the first, 177 MB with it; a 20,000-object export at 216 MB without the
// second, 161 MB with it, in the same wall time. `node dist/cli/bin.js` skips this line, and
// NODE_OPTIONS refuses the second flag: pass both on node's command line (the Dockerfile does).
// The process entry: the only module that touches signals, exit codes and process.env.
import { setMaxListeners } from "node:events";
import module from "node:module";
import process from "node:process";
import { main } from "./main.ts";

// V8's code cache on disk (Node 22.1 and later; NODE_DISABLE_COMPILE_CACHE=1 turns it off): a
// one-off command loads the AWS SDK and undici from compiled code instead of compiling them
// again, about a third of its start-up. The commands themselves are imported after this line.
(module as { enableCompileCache?: () => unknown }).enableCompileCache?.();

const controller = new AbortController();
// Every in-flight request of a command listens on this one signal.
setMaxListeners(0, controller.signal);
let signals = 0;
const onSignal = (name: NodeJS.Signals) => {
  signals++;
  // The first signal lets the running command stop cleanly; a second one forces the exit.
  if (signals > 1) process.exit(130);
  process.stderr.write(`lakefs-mirror: ${name} received, stopping (send it again to force)\n`);
  controller.abort(new Error(name));
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

process.exitCode = await main(process.argv.slice(2), {
  env: process.env,
  stdout: process.stdout,
  stderr: process.stderr,
  signal: controller.signal,
});
// The command is done: whatever a dependency left behind (a Kafka client still retrying a
// connection) must not keep the process alive until a SIGKILL. Output has a second to drain.
setTimeout(() => process.exit(), 1000).unref();

// npm run demo: the local stack, the daemon as lakeFS's sidecar, a repository with the mirror's
// lakeFS action, a few commits, and the mirror catching up, shown by the daemon's own log lines.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { S3Destination } from "../src/s3/destination.ts";
import { verifyMirror } from "../src/verify/verify.ts";
import { lakefsGateway } from "../src/s3/gateway.ts";
import { actionFor, waitForExported } from "../test/helpers/daemon.ts";
import { connectStack, createBucket, createRepo } from "../test/helpers/stack.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const say = (s: string) => process.stdout.write(`\n== ${s}\n`);

say("starting the local stack (the first run builds lakeFS and MinIO: several minutes)");
const stack = await connectStack();
const repo = await createRepo(stack, "demo");
const bucket = await createBucket(stack, "demo-mirror");
const destination = `s3://${bucket}/{repository}/{branch}/`;

const dir = mkdtempSync(join(tmpdir(), "lakefs-mirror-demo-"));
const configFile = join(dir, "config.json");
writeFileSync(
  configFile,
  JSON.stringify(
    {
      mirrors: [{ repository: repo, branches: ["main"], destination }],
      server: { host: "127.0.0.1", port: 0 },
      webhook: { token: stack.env.LAKEFSACTION_MIRROR_TOKEN },
      checkpoint: { path: join(dir, "checkpoint") },
      reconcile: { intervalSeconds: 10 },
    },
    null,
    2,
  ),
);

say(`starting lakefs-mirror run --config ${configFile}`);
const { KAFKA_BROKERS: _unused, ...env } = { ...process.env, ...stack.env };
const daemon = spawn(
  process.execPath,
  [join(root, "dist/cli/bin.js"), "run", "--config", configFile],
  {
    env,
    stdio: ["ignore", "pipe", "inherit"],
  },
);
const url = await new Promise<string>((resolve, reject) => {
  let buffered = "";
  daemon.on("exit", (code) => reject(new Error(`the daemon exited with ${code}`)));
  daemon.stdout.on("data", (d: Buffer) => {
    buffered += d.toString();
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      process.stdout.write(`daemon | ${line}\n`);
      const m = /"address":"([^"]+)".*daemon started/.exec(line);
      if (m?.[1]) resolve(m[1]);
    }
  });
});

say(`installing the mirror's lakeFS action in ${repo}/main (_lakefs_actions/lakefs-mirror.yaml)`);
const action = actionFor(url);
await stack.lakefs.uploadObject(repo, "main", "_lakefs_actions/lakefs-mirror.yaml", action, {
  contentType: "application/yaml",
});
let head = (await stack.lakefs.commit(repo, "main", { message: "add the lakefs-mirror action" }))
  .id;
await waitForExported(url, repo, "main", head);

const rounds: [string, Record<string, string>, string[]][] = [
  [
    "daily sales, day 1",
    {
      "sales/date=2026-11-22/part-0000.csv": "id,amount\n1,10\n",
      "sales/date=2026-11-22/_SUCCESS": "",
    },
    [],
  ],
  [
    "daily sales, day 2, and a scratch file",
    {
      "sales/date=2026-11-23/part-0000.csv": "id,amount\n2,20\n",
      "sales/date=2026-11-23/_SUCCESS": "",
      "scratch/notes.txt": "temporary",
    },
    [],
  ],
  [
    "correct day 1, drop the scratch file",
    { "sales/date=2026-11-22/part-0000.csv": "id,amount\n1,11\n" },
    ["scratch/notes.txt"],
  ],
];
for (const [message, files, deletes] of rounds) {
  say(`commit: ${message}`);
  for (const [path, content] of Object.entries(files)) {
    await stack.lakefs.uploadObject(repo, "main", path, content, { contentType: "text/csv" });
  }
  for (const path of deletes) await stack.lakefs.deleteObject(repo, "main", path);
  const started = Date.now();
  head = (await stack.lakefs.commit(repo, "main", { message })).id;
  await waitForExported(url, repo, "main", head);
  process.stdout.write(
    `mirrored ${head.slice(0, 12)} in ${Date.now() - started} ms after the commit\n`,
  );
}

say(`lakefs-mirror status --url ${url}   (a table on a terminal, JSON otherwise)`);
const statusExit = await new Promise<number | null>((resolve) => {
  const cli = spawn(process.execPath, [join(root, "dist/cli/bin.js"), "status", "--url", url], {
    env,
    stdio: "inherit",
  });
  cli.on("exit", resolve);
});
process.stdout.write(`(exit status ${statusExit}: 0 means every lane is current)\n`);

say(`the lane's lag as Prometheus scrapes it from ${url}/metrics`);
const metrics = await (await fetch(`${url}/metrics`)).text();
process.stdout.write(
  metrics
    .split("\n")
    .filter((l) => /^lakefs_mirror_(lane_|exports_total|ready)/.test(l))
    .join("\n") + "\n",
);
const result = await verifyMirror({
  lakefs: stack.lakefs,
  repository: repo,
  ref: head,
  destination: new S3Destination(stack.s3, { bucket, prefix: `${repo}/main/` }),
  gateway: lakefsGateway(stack.gateway),
});
say(
  `verify: ${result.compared} objects compared, ${result.differences.length} differences; the mirror is at ` +
    `s3://${bucket}/${repo}/main/ on ${stack.env.AWS_ENDPOINT_URL}`,
);

daemon.kill("SIGTERM");
await new Promise((r) => daemon.on("exit", r));
await stack.close();
say(
  'done. The stack keeps running for a look around (eval "$(test/stack/up)"); test/stack/down stops it.',
);
process.exitCode = result.differences.length === 0 ? 0 : 1;

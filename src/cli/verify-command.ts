import { parseArgs } from "node:util";
import { loadConfig } from "../config.ts";
import { UsageError } from "../errors.ts";
import { createLogger } from "../logger.ts";
import { parseLocation } from "../destination/schemes.ts";
import { verifyMirror } from "../verify/verify.ts";
import { createClients, exporterSettings } from "../clients.ts";
import type { CliIo } from "./main.ts";

export async function verifyCommand(argv: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        config: { type: "string" },
        "no-metadata": { type: "boolean" },
        rounds: { type: "string" },
        "iceberg-rewrite": { type: "boolean" },
        "no-iceberg-rewrite": { type: "boolean" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 3)
    throw new UsageError("verify takes <repository> <commit-or-branch> <s3://bucket/prefix/>");
  const [repository = "", ref = "", uri = ""] = positionals;
  parseLocation(uri);
  if (values["iceberg-rewrite"] && values["no-iceberg-rewrite"])
    throw new UsageError("give either --iceberg-rewrite or --no-iceberg-rewrite, not both");
  const config = loadConfig({
    env: io.env,
    file: values.config,
    overrides: {
      "export.rounds": values.rounds,
      "export.icebergRewrite": values["iceberg-rewrite"]
        ? true
        : values["no-iceberg-rewrite"]
          ? false
          : undefined,
    },
  });
  // As the export decides: the key, else on with the iceberg rounds.
  const settings = exporterSettings(config);
  const rewrite = settings.icebergRewrite ?? settings.rounds === "iceberg";
  const logger = createLogger(config.log.level);
  const clients = createClients(config, logger);
  try {
    const destination = clients.destination(uri);
    const result = await verifyMirror({
      lakefs: clients.lakefs,
      repository,
      ref,
      destination,
      concurrency: config.export.concurrency,
      gateway: values["no-metadata"] ? undefined : clients.gateway,
      icebergRewrite: rewrite ? { gatewayHosts: settings.gatewayHosts } : undefined,
      ...(io.signal ? { signal: io.signal } : {}),
    });
    for (const d of result.differences) {
      io.stdout.write(`${d.kind}\t${JSON.stringify(d.path)}${d.detail ? `\t${d.detail}` : ""}\n`);
    }
    const equal = result.differences.length === 0;
    const line = {
      repository,
      commitId: result.commitId,
      destination: destination.uri,
      compared: result.compared,
      differences: result.differences.length,
      equal,
    };
    if (equal) logger.info(line, "mirror equals the commit");
    else logger.error(line, "mirror differs from the commit");
    return equal ? 0 : 1;
  } finally {
    await clients.close();
  }
}

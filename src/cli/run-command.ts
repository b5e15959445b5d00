import { parseArgs } from "node:util";
import { loadConfig, redactedConfig } from "../config.ts";
import { UsageError } from "../errors.ts";
import { Daemon } from "../daemon/daemon.ts";
import { createLogger } from "../logger.ts";
import type { CliIo } from "./main.ts";

/** `lakefs-mirror run`: the daemon, until SIGTERM/SIGINT. */
export async function runCommand(argv: string[], io: CliIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: "string" },
        "forward-webhooks-to-kafka": { type: "boolean" },
        "print-config": { type: "boolean" },
      },
      strict: true,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const config = loadConfig({
    env: io.env,
    file: values.config,
    overrides: { "webhook.forwardToKafka": values["forward-webhooks-to-kafka"] ? true : undefined },
  });
  if (values["print-config"]) {
    io.stdout.write(JSON.stringify(redactedConfig(config), null, 2) + "\n");
    return 0;
  }
  const logger = createLogger(config.log.level);
  const daemon = new Daemon(config, logger);
  try {
    await daemon.start();
  } catch (err) {
    await daemon.close();
    throw err;
  }
  await new Promise<void>((resolve) => {
    if (io.signal?.aborted) resolve();
    io.signal?.addEventListener("abort", () => resolve(), { once: true });
  });
  logger.info(
    { graceSeconds: config.shutdown.graceSeconds },
    "stopping: intake closed, draining running exports",
  );
  await daemon.close();
  return 0;
}

import { parseArgs } from "node:util";
import { loadConfig, redactedConfig } from "../config.ts";
import type { Config } from "../config.ts";
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
        sidecar: { type: "boolean" },
      },
      strict: true,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  let config: Readonly<Config> | undefined;
  let daemon: Daemon | undefined;
  // Until the configuration names its level: the same variable, when it names a level pino knows.
  const levels = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];
  let logger = createLogger(levels.includes(io.env.LOG_LEVEL ?? "") ? io.env.LOG_LEVEL! : "info");
  try {
    config = loadConfig({
      env: io.env,
      file: values.config,
      overrides: {
        "webhook.forwardToKafka": values["forward-webhooks-to-kafka"] ? true : undefined,
      },
    });
    if (values["print-config"]) {
      io.stdout.write(JSON.stringify(redactedConfig(config), null, 2) + "\n");
      return 0;
    }
    logger = createLogger(config.log.level);
    daemon = new Daemon(config, logger);
    await daemon.start();
  } catch (err) {
    await daemon?.close();
    // Beside lakeFS, a daemon that cannot start must not crash-loop its pod out of service.
    if (!values.sidecar) throw err;
    const { serveStartFailure } = await import("./start-failure.ts");
    await serveStartFailure({ err, config, env: io.env, logger, signal: io.signal });
    return 1;
  }
  const failure = await new Promise<Error | undefined>((resolve) => {
    if (io.signal?.aborted) resolve(undefined);
    io.signal?.addEventListener("abort", () => resolve(undefined), { once: true });
    void daemon.failed.then(resolve);
  });
  if (failure) {
    logger.fatal({ err: failure }, "stopping: the configuration cannot work");
    await daemon.close();
    if (!values.sidecar) throw failure;
    const { serveStartFailure } = await import("./start-failure.ts");
    await serveStartFailure({ err: failure, config, env: io.env, logger, signal: io.signal });
    return 1;
  }
  logger.info(
    { graceSeconds: config.shutdown.graceSeconds },
    "stopping: intake closed, draining running exports",
  );
  await daemon.close();
  return 0;
}

import type { Logger } from "pino";
import type { Config } from "../config.ts";
import { HttpServer } from "../daemon/http-server.ts";
import { Metrics } from "../daemon/metrics.ts";
import { INTERNAL_ERROR_CODE, MirrorError, errorMessage } from "../errors.ts";

/**
 * `run --sidecar` after the daemon could not start (a bad configuration key, a checkpoint store
 * another process holds): the process stays up instead of exiting, so that a container beside
 * lakeFS never crash-loops. Kubernetes counts a pod Ready only while every one of its containers
 * is, and a container that keeps exiting is not: a sidecar that exits takes lakeFS's API and
 * gateway out of their Service. Instead it answers /healthz (so its liveness probe passes),
 * /readyz with 503 and the reason, /status with the reason, /metrics with lakefs_mirror_ready 0
 * (which the LakefsMirrorNotReady alert watches), and webhooks with 503, until SIGTERM.
 *
 * Where it listens: the configuration's server section when the configuration loaded, else
 * the same environment variables the configuration reads (LAKEFS_MIRROR_HOST, _PORT,
 * _STATUS_TOKEN), else the defaults.
 */
export async function serveStartFailure(options: {
  err: unknown;
  config: Readonly<Config> | undefined;
  env: NodeJS.ProcessEnv;
  logger: Logger;
  signal: AbortSignal | undefined;
}): Promise<void> {
  const { err, config, env, logger, signal } = options;
  const code = err instanceof MirrorError ? err.code : INTERNAL_ERROR_CODE;
  const reason = errorMessage(err);
  const port = Number(env.LAKEFS_MIRROR_PORT);
  const server = config?.server ?? {
    host: env.LAKEFS_MIRROR_HOST || "127.0.0.1",
    port: Number.isInteger(port) && port > 0 && port < 65536 ? port : 8081,
    bodyLimitBytes: 1024 * 1024,
    statusToken: env.LAKEFS_MIRROR_STATUS_TOKEN ?? "",
  };
  const metrics = new Metrics();
  metrics.ready(false);
  const http = new HttpServer({
    ...server,
    token: undefined,
    statusToken: server.statusToken || undefined,
    metrics,
    logger,
    onEvent: () => Promise.reject(new Error(`lakefs-mirror did not start: ${reason}`)),
    status: () => ({ state: "failed to start", error: reason, code, lanes: [] }),
    ready: () => false,
    parts: () => ({ error: reason }),
  });
  await http.start();
  logger.fatal(
    { err, code, address: http.address },
    "lakefs-mirror could not start; staying up as a sidecar (not ready) until stopped",
  );
  await new Promise<void>((resolve) => {
    if (!signal || signal.aborted) return resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
  await http.close();
}

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { ChildProcess } from "node:child_process";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { freePort } from "./ports.ts";

const stackDir = fileURLToPath(new URL("../stack/", import.meta.url));

/** The stack's Kafka JVM command line (test/stack/lib.sh's kafka_java) running `args`. */
const withKafkaJava = 'source "$1/lib.sh"; kafka_java; shift;';

export interface PrivateBroker {
  /** `host:port` of the broker. */
  brokers: string;
  /** Whether the broker process runs (between halt() and resume() it does not). */
  readonly running: boolean;
  /**
   * Stops the broker process and keeps its data and ports, as a broker restart does:
   * `hard` kills it (SIGKILL, so the next start recovers its logs), else a clean shutdown.
   */
  halt(options?: { hard?: boolean }): Promise<void>;
  /** Starts the halted broker again on the same ports with the same data; waits until ready. */
  resume(): Promise<void>;
  /** Stops the broker and removes its data; idempotent. */
  stop(): Promise<void>;
}

/**
 * A single-node KRaft broker of the test's own, for broker settings the stack's shared broker
 * must keep (topic auto-creation, for one) and for restarts the shared broker must never see:
 * the stack's jars, its own directory and loopback ports, stopped by stop(). Its shell wrapper
 * stops it when the test process goes away (its stdin closes), so no broker outlives a killed
 * test.
 */
export async function startPrivateBroker(
  settings: Record<string, string>,
  timeoutMs = 120_000,
): Promise<PrivateBroker> {
  const dir = mkdtempSync(join(tmpdir(), "lakefs-mirror-broker-"));
  const [port, controller] = [await freePort(), await freePort()];
  const properties = join(dir, "broker.properties");
  const lines = {
    "process.roles": "broker,controller",
    "node.id": "1",
    listeners: `PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller}`,
    "advertised.listeners": `PLAINTEXT://127.0.0.1:${port}`,
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "controller.listener.names": "CONTROLLER",
    "controller.quorum.bootstrap.servers": `127.0.0.1:${controller}`,
    "inter.broker.listener.name": "PLAINTEXT",
    "log.dirs": join(dir, "data"),
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    ...settings,
  };
  writeFileSync(
    properties,
    Object.entries(lines)
      .map(([k, v]) => `${k}=${v}`)
      .join("\n") + "\n",
  );
  const run = promisify(execFile);
  const java = (args: string[]) =>
    run(
      "bash",
      ["-c", `${withKafkaJava} exec "\${KAFKA_JAVA[@]}" "$@"`, "java", stackDir, ...args],
      {
        timeout: timeoutMs,
      },
    );
  // A cluster id as `kafka-storage random-uuid` makes one: 16 random bytes, base64url, never
  // starting with "-" (the tool's argument parser would read such an id as an option).
  let id = randomBytes(16).toString("base64url");
  while (id.startsWith("-")) id = randomBytes(16).toString("base64url");
  await java([
    "kafka.tools.StorageTool",
    "format",
    `--cluster-id=${id}`,
    "-c",
    properties,
    "--standalone",
  ]);

  // C1 only and the serial collector: a broker of one test starts in about half the time on
  // a loaded 2-core machine, and a restart is what some tests wait for.
  const script = [
    withKafkaJava,
    `"\${KAFKA_JAVA[@]}" -Xmx256m -XX:-UseG1GC -XX:+UseSerialGC -XX:TieredStopAtLevel=1 kafka.Kafka "$1" >"$2" 2>&1 </dev/null &`,
    "broker=$!",
    "read -r _ || true",
    "kill -TERM $broker 2>/dev/null",
    "wait $broker",
  ].join("\n");
  let starts = 0;
  let current: { child: ChildProcess; exited: Promise<void> } | undefined;

  /** Ends the running wrapper (and its broker): TERM through its stdin, or SIGKILL to its group. */
  const end = async (hard: boolean) => {
    const c = current;
    current = undefined;
    if (!c) return;
    const kill = () => {
      try {
        if (c.child.pid) process.kill(-c.child.pid, "SIGKILL");
      } catch {
        // Gone already.
      }
    };
    if (hard) kill();
    else c.child.stdin?.end();
    const killed = setTimeout(kill, 30_000);
    await c.exited;
    clearTimeout(killed);
  };

  const launch = async () => {
    const log = join(dir, `broker-${++starts}.log`);
    const child: ChildProcess = spawn("bash", ["-c", script, "broker", stackDir, properties, log], {
      stdio: ["pipe", "ignore", "ignore"],
      detached: true,
    });
    current = { child, exited: new Promise<void>((r) => child.once("exit", () => r())) };
    const deadline = Date.now() + timeoutMs;
    while (!(existsSync(log) && readFileSync(log, "utf8").includes("Kafka Server started"))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        const text = existsSync(log) ? readFileSync(log, "utf8").slice(-2000) : "";
        await end(true);
        throw new Error(`the private broker did not start:\n${text}`);
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  };

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await end(false);
      rmSync(dir, { recursive: true, force: true });
    })());
  try {
    await launch();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    brokers: `127.0.0.1:${port}`,
    get running() {
      return current !== undefined;
    },
    halt: async ({ hard = false } = {}) => {
      if (stopping) throw new Error("the private broker is stopped");
      await end(hard);
    },
    resume: async () => {
      if (stopping) throw new Error("the private broker is stopped");
      if (!current) await launch();
    },
    stop,
  };
}

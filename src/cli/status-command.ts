import { parseArgs } from "node:util";
import type { DaemonStatus, LaneStatus } from "../daemon/daemon.ts";
import { UsageError } from "../errors.ts";
import type { CliIo } from "./main.ts";

const DEFAULT_URL = "http://127.0.0.1:8081";

/** Why a lane is not current, or undefined when it is. */
function problem(lane: LaneStatus, maxLagSeconds: number): string | undefined {
  if (lane.state === "backoff") return "failing";
  if (lane.stalled) return "no progress";
  if (lane.failingPaths > 0) return `${lane.failingPaths} failing path(s)`;
  if (lane.commitsBehind > 0 && lane.lagSeconds > maxLagSeconds)
    return `behind by ${lane.commitsBehind} commit(s)`;
  return undefined;
}

function ago(seconds: number): string {
  if (seconds <= 0) return "0s";
  const s = Math.round(seconds);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/**
 * `lakefs-mirror status`: a running daemon's lanes, as a table on a terminal and as JSON
 * otherwise. Exit status 0 when every lane is current, 1 when one is failing or behind by more
 * than `--max-lag` seconds (or the daemon cannot be asked), so it fits a cron job or a probe.
 */
export async function statusCommand(argv: string[], io: CliIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        url: { type: "string", default: DEFAULT_URL },
        "max-lag": { type: "string", default: "0" },
        json: { type: "boolean" },
        token: { type: "string" },
      },
      strict: true,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const maxLag = Number(values["max-lag"]);
  if (!Number.isFinite(maxLag) || maxLag < 0)
    throw new UsageError(`--max-lag takes seconds, got "${values["max-lag"]}"`);
  const url = `${values.url.replace(/\/+$/, "")}/status`;
  // The daemon's server.statusToken, when it sets one.
  const token = values.token ?? io.env.LAKEFS_MIRROR_STATUS_TOKEN;
  let status: DaemonStatus;
  try {
    const res = await fetch(url, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.any([AbortSignal.timeout(10_000), ...(io.signal ? [io.signal] : [])]),
    });
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
    status = (await res.json()) as DaemonStatus;
  } catch (err) {
    io.stderr.write(`lakefs-mirror status: cannot read ${url}: ${(err as Error).message}\n`);
    return 1;
  }
  const lanes = status.lanes.map((l) => ({ ...l, problem: problem(l, maxLag) ?? null }));
  const bad = lanes.filter((l) => l.problem !== null);
  if (values.json || io.stdout.isTTY !== true) {
    io.stdout.write(JSON.stringify({ ...status, lanes, ok: bad.length === 0 }, null, 2) + "\n");
  } else {
    const rows = [
      ["LANE", "DESTINATION", "LAST EXPORTED", "BEHIND", "LAG", "STATE", "LAST ERROR"],
      ...lanes.map((l) => [
        `${l.repository}/${l.branch}`,
        l.destination,
        l.lastExportedCommit?.slice(0, 12) ?? "-",
        String(l.commitsBehind),
        ago(l.lagSeconds),
        l.problem ? `${l.state} (${l.problem})` : l.state,
        (l.lastError ?? "").slice(0, 80),
      ]),
    ];
    io.stdout.write(
      `daemon ${status.owner}, kafka ${status.kafka}, ${lanes.length} lane(s), ${bad.length} not current\n` +
        table(rows) +
        "\n",
    );
  }
  return bad.length === 0 ? 0 : 1;
}

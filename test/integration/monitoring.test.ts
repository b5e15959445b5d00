import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { parse } from "yaml";
import { commitEvent, postWebhook, startDaemon, waitForExported } from "../helpers/daemon.ts";
import { commitObjects } from "../helpers/mirror.ts";
import { checkQuery, parseExposition } from "../helpers/prometheus.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../..", import.meta.url));
const rulesDir = `${root}deploy/prometheus`;
const read = (path: string) => readFileSync(`${root}${path}`, "utf8");

interface Rule {
  alert: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** Prometheus's own promtool, built into the stack's cache by test/stack/install. */
async function promtool(): Promise<string> {
  const where = await run("bash", ["-c", `source "${root}test/stack/lib.sh" && promtool_bin`]);
  const path = where.stdout.trim();
  if (!existsSync(path)) await run(`${root}test/stack/install`, [], { timeout: 30 * 60_000 });
  return path;
}

describe("monitoring: alert rules and dashboard", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await stack.close();
  });

  it("the alert rules pass promtool's check and their unit tests fire and stay quiet as designed", async () => {
    const tool = await promtool();
    const checked = await run(tool, ["check", "rules", "lakefs-mirror-rules.yaml"], {
      cwd: rulesDir,
    });
    const rules = (
      parse(read("deploy/prometheus/lakefs-mirror-rules.yaml")) as {
        groups: { rules: Rule[] }[];
      }
    ).groups.flatMap((g) => g.rules);
    assert.ok(rules.length >= 9, `only ${rules.length} rules`);
    assert.match(checked.stdout, new RegExp(`SUCCESS: ${rules.length} rules found`));
    const tested = await run(tool, ["test", "rules", "tests.yaml"], { cwd: rulesDir });
    assert.match(tested.stdout, /SUCCESS/);
    // Every alert has a unit test, a summary, a description and a runbook section.
    const tests = read("deploy/prometheus/tests.yaml");
    const readme = read("README.md");
    for (const r of rules) {
      assert.match(tests, new RegExp(`alertname: ${r.alert}\\b`), `${r.alert} has no test`);
      assert.ok(r.annotations?.summary && r.annotations.description, `${r.alert} lacks text`);
      const anchor = r.annotations.runbook_url?.split("#")[1] ?? "";
      assert.match(
        readme,
        new RegExp(`^#### Runbook: ${r.alert}$`, "m"),
        `README has no runbook for ${r.alert}`,
      );
      assert.equal(anchor, `runbook-${r.alert.toLowerCase()}`);
    }
  });

  it("the PrometheusRule carries exactly the rules of the rules file", () => {
    const rules = parse(read("deploy/prometheus/lakefs-mirror-rules.yaml")) as { groups: unknown };
    const crd = parse(read("deploy/prometheus/lakefs-mirror-prometheusrule.yaml")) as {
      kind: string;
      spec: { groups: unknown };
    };
    assert.equal(crd.kind, "PrometheusRule");
    assert.deepEqual(crd.spec.groups, rules.groups);
  });

  it("every dashboard query and alert names series and labels a running daemon exposes", async () => {
    const repo = await createRepo(stack, "metrics");
    const bucket = await createBucket(stack);
    const { daemon, url } = await startDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/` }],
    });
    try {
      const head = await commitObjects(stack, repo, "main", [{ path: "a.txt", content: "a" }]);
      const res = await postWebhook(url, commitEvent(repo, "main", head), {
        authorization: `Bearer ${stack.env.LAKEFSACTION_MIRROR_TOKEN}`,
      });
      assert.equal(res.status, 202);
      await waitForExported(url, repo, "main", head);
      const exposition = parseExposition(await (await fetch(`${url}/metrics`)).text());

      const dashboard = JSON.parse(read("deploy/grafana/lakefs-mirror-dashboard.json")) as {
        panels: { title: string; targets: { expr: string; legendFormat?: string }[] }[];
      };
      const problems: string[] = [];
      let queries = 0;
      for (const panel of dashboard.panels) {
        assert.ok(panel.targets.length > 0, `${panel.title} has no query`);
        for (const t of panel.targets) {
          queries++;
          problems.push(...checkQuery(t.expr, exposition, t.legendFormat));
        }
      }
      const rules = (
        parse(read("deploy/prometheus/lakefs-mirror-rules.yaml")) as {
          groups: { rules: Rule[] }[];
        }
      ).groups.flatMap((g) => g.rules);
      for (const r of rules) problems.push(...checkQuery(r.expr, exposition));
      assert.deepEqual(problems, []);
      assert.ok(queries >= 12, `only ${queries} dashboard queries`);
      // And the check can fail: a renamed series or a label nobody sets is caught.
      assert.notDeepEqual(checkQuery("rate(lakefs_mirror_export_total[5m])", exposition), []);
      assert.notDeepEqual(
        checkQuery("sum by (bucket) (lakefs_mirror_lane_lag_seconds)", exposition),
        [],
      );
    } finally {
      await daemon.close();
    }
  });
});

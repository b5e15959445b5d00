import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { parse, parseAllDocuments, stringify } from "yaml";
import { handledEvents } from "../../src/daemon/intake.ts";

/**
 * The deploy files as a cluster sees them. Two layers:
 *
 * - Kubernetes's own code, in the stack's manifest checker (test/manifests, built by
 *   test/stack/install): every document decoded strictly into its k8s.io/api type, and every pod
 *   template evaluated against the Restricted Pod Security Standard by the pod-security-admission
 *   library that the API server runs.
 * - The properties no schema knows: requests and limits on every container, secrets only from
 *   Secrets, a sidecar that cannot make lakeFS's pod unready (by the kubelet's rule, a pod is
 *   Ready only when every container is; a container without readiness and startup probes is
 *   ready while it runs), and the real daemon staying up when it cannot start.
 */

const run = promisify(execFile);
const root = fileURLToPath(new URL("../..", import.meta.url));
const entry = `${root}src/cli/bin.ts`;
const manifests = ["deploy/kubernetes.yaml", "deploy/kubernetes-group.yaml"];

/** The parts of the manifests these tests read, as Kubernetes's API names them. */
interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: unknown } }[];
  resources?: Partial<Record<"requests" | "limits", Partial<Record<"cpu" | "memory", string>>>>;
  readinessProbe?: unknown;
  startupProbe?: unknown;
  livenessProbe?: { httpGet: { path: string } };
  securityContext?: Record<string, unknown>;
  imagePullPolice?: string;
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes: { name: string; persistentVolumeClaim?: unknown }[];
  securityContext?: unknown;
}
interface Doc {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  spec: {
    strategy?: { type: string; rollingUpdate?: { maxUnavailable?: number | string } };
    template: { spec: PodSpec };
    ports?: { port: number }[];
  };
  on?: Record<string, unknown>;
}
interface Checked {
  file: string;
  kind: string;
  name: string;
  problems: string[];
}

function docs(path: string): Doc[] {
  return parseAllDocuments(readFileSync(`${root}${path}`, "utf8"))
    .map((d) => d.toJS() as Doc | null)
    .filter((d): d is Doc => d !== null);
}

function workloads(path: string): Doc[] {
  return docs(path).filter((d) => d.kind === "Deployment" || d.kind === "StatefulSet");
}

async function manifestCheck(): Promise<string> {
  const where = await run("bash", [
    "-c",
    `source "${root}test/stack/lib.sh" && manifest_check_bin`,
  ]);
  const path = where.stdout.trim();
  if (!existsSync(path)) await run(`${root}test/stack/install`, [], { timeout: 30 * 60_000 });
  return path;
}

async function check(files: string[]): Promise<{ code: number; results: Checked[] }> {
  const tool = await manifestCheck();
  const out = await run(tool, files, { cwd: root }).then(
    (r) => ({ code: 0, stdout: r.stdout }),
    (err: { code: number; stdout: string }) => ({ code: err.code, stdout: err.stdout }),
  );
  const results = out.stdout
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Checked);
  return { code: out.code, results };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("deploy manifests", () => {
  it("pass Kubernetes's strict decoding and the Restricted Pod Security Standard", async () => {
    const { code, results } = await check(manifests);
    assert.deepEqual(
      results.filter((r) => r.problems.length > 0),
      [],
      "no document has a problem",
    );
    assert.equal(code, 0);
    // Both workloads were evaluated, not skipped.
    assert.deepEqual(
      results.filter((r) => r.kind === "Deployment" || r.kind === "StatefulSet").map((r) => r.name),
      ["lakefs", "lakefs-mirror"],
    );
  });

  it("the checker refuses a pod that breaks the Restricted standard and a misspelt field", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lakefs-mirror-manifests-"));
    const deployment = workloads("deploy/kubernetes.yaml")[0]!;
    const loose = structuredClone(deployment);
    delete loose.spec.template.spec.securityContext;
    loose.spec.template.spec.containers[1]!.securityContext!.allowPrivilegeEscalation = true;
    const misspelt = structuredClone(deployment);
    misspelt.spec.template.spec.containers[1]!.imagePullPolice = "Always";
    writeFileSync(join(dir, "loose.yaml"), stringify(loose));
    writeFileSync(join(dir, "misspelt.yaml"), stringify(misspelt));
    const { code, results } = await check([join(dir, "loose.yaml"), join(dir, "misspelt.yaml")]);
    assert.equal(code, 1);
    const [a, b] = results;
    assert.ok(
      a?.problems.some((p) => /restricted\): seccompProfile/.test(p)),
      a?.problems.join("\n"),
    );
    assert.ok(a?.problems.some((p) => /runAsNonRoot/.test(p)));
    assert.ok(a?.problems.some((p) => /allowPrivilegeEscalation/.test(p)));
    assert.ok(
      b?.problems.some((p) => /strict decoding: .*imagePullPolice/.test(p)),
      b?.problems.join("\n"),
    );
  });

  it("every container has CPU and memory requests and limits, and secrets come from Secrets", () => {
    for (const file of manifests) {
      for (const w of workloads(file)) {
        for (const c of w.spec.template.spec.containers) {
          const where = `${file} ${w.metadata.name}/${c.name}`;
          for (const kind of ["requests", "limits"] as const)
            for (const r of ["cpu", "memory"] as const)
              assert.ok(c.resources?.[kind]?.[r], `${where} has no ${kind}.${r}`);
          for (const e of c.env ?? []) {
            if (/TOKEN|SECRET|PASSWORD|KEY_ID/.test(e.name)) {
              assert.equal(e.value, undefined, `${where} sets ${e.name} inline`);
              assert.ok(e.valueFrom?.secretKeyRef, `${where} reads ${e.name} from a Secret`);
            }
          }
        }
      }
    }
  });

  it("the sidecar cannot make lakeFS's pod unready, and lakeFS rolls out without an outage", () => {
    const [deployment] = workloads("deploy/kubernetes.yaml");
    const pod = deployment!.spec.template.spec;
    const mirror = pod.containers.find((c) => c.name === "lakefs-mirror")!;
    const lakefs = pod.containers.find((c) => c.name === "lakefs")!;
    // The kubelet's rule (pkg/kubelet/status/generate.go): ContainersReady needs every container
    // and every restartable init container ready, and a container without readiness and
    // startup probes is ready while it runs. So the mirror may only run or not: --sidecar keeps
    // it running when it cannot start (next test).
    assert.equal(mirror.readinessProbe, undefined, "no readiness probe on the sidecar");
    assert.equal(mirror.startupProbe, undefined, "no startup probe on the sidecar");
    assert.ok(mirror.args?.includes("--sidecar"));
    assert.deepEqual(pod.initContainers ?? [], [], "no init container can hold lakeFS back");
    assert.ok(lakefs.readinessProbe, "lakeFS keeps its own readiness probe");
    // No volume that only one pod can mount: the new pod starts before the old one stops.
    assert.equal(deployment!.spec.strategy?.type, "RollingUpdate");
    assert.equal(deployment!.spec.strategy.rollingUpdate?.maxUnavailable, 0);
    for (const v of pod.volumes) assert.equal(v.persistentVolumeClaim, undefined, v.name);
    // The Service routes to lakeFS only.
    const service = docs("deploy/kubernetes.yaml").find((d) => d.kind === "Service")!;
    assert.deepEqual(
      service.spec.ports?.map((p) => p.port),
      [8000],
    );
  });

  it("a daemon listening beyond loopback guards /status and /metrics with a token", () => {
    for (const file of manifests) {
      const config = docs(file).find((d) => d.kind === "ConfigMap")!;
      const server = (JSON.parse(config.data!["config.json"]!) as { server: { host: string } })
        .server;
      if (server.host === "127.0.0.1") continue;
      for (const w of workloads(file)) {
        const c = w.spec.template.spec.containers.find((x) => x.image.startsWith("lakefs-mirror"))!;
        const env = (c.env ?? []).map((e) => e.name);
        assert.ok(
          env.includes("LAKEFS_MIRROR_STATUS_TOKEN"),
          `${file}: ${server.host} without a status token`,
        );
      }
    }
  });

  it("the lakeFS action subscribes to every event the daemon handles", () => {
    const action = parse(readFileSync(`${root}deploy/lakefs-action.yaml`, "utf8")) as Doc;
    assert.deepEqual(Object.keys(action.on ?? {}).sort(), [...handledEvents].sort());
  });

  it("a sidecar that cannot start stays up: its liveness probe passes, /readyz and the metrics say why", async (t) => {
    const [deployment] = workloads("deploy/kubernetes.yaml");
    const mirror = deployment!.spec.template.spec.containers.find(
      (c) => c.name === "lakefs-mirror",
    )!;
    const liveness = mirror.livenessProbe!.httpGet.path;
    const dir = mkdtempSync(join(tmpdir(), "lakefs-mirror-sidecar-"));
    const config = join(dir, "config.json");
    // A misspelt key: the daemon refuses the configuration.
    writeFileSync(
      config,
      JSON.stringify({ server: { host: "127.0.0.1" }, reconcile: { interval: 5 } }),
    );
    const port = await freePort();
    const statusToken = "sidecar-status-token";
    const env = {
      ...process.env,
      LAKEFS_MIRROR_PORT: String(port),
      LAKEFS_MIRROR_STATUS_TOKEN: statusToken,
      LOG_LEVEL: "silent",
    };

    // Without --sidecar the process refuses to start (exit 2): in a pod, a crash loop.
    const plain = await run(
      process.execPath,
      ["--import", "tsx", entry, "run", "--config", config],
      {
        env,
      },
    ).then(
      () => 0,
      (err: { code: number }) => err.code,
    );
    assert.equal(plain, 2);

    const child = spawn(
      process.execPath,
      ["--import", "tsx", entry, "run", "--sidecar", "--config", config],
      { env, stdio: ["ignore", "ignore", "pipe"] },
    );
    let exited: number | null | undefined;
    child.on("exit", (code) => (exited = code));
    t.after(() => {
      if (exited === undefined) child.kill("SIGKILL");
    });
    const base = `http://127.0.0.1:${port}`;
    const live = await until("the liveness path", async () => {
      const res = await fetch(`${base}${liveness}`);
      return res.status === 200 ? res.status : undefined;
    });
    assert.equal(live, 200);
    const ready = await fetch(`${base}/readyz`);
    assert.equal(ready.status, 503);
    assert.match(await ready.text(), /interval/, "the reason names the bad key");
    assert.equal((await fetch(`${base}/metrics`)).status, 401);
    const metrics = await fetch(`${base}/metrics`, {
      headers: { authorization: `Bearer ${statusToken}` },
    });
    assert.match(await metrics.text(), /^lakefs_mirror_ready 0$/m);
    const hook = await fetch(`${base}/webhooks/lakefs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ event_type: "post-commit", repository_id: "r", branch_id: "main" }),
    });
    assert.equal(hook.status, 503, "a webhook is refused, so lakeFS logs the failed hook");
    // Still running after a while: no crash loop.
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(exited, undefined);
    child.kill("SIGTERM");
    await until("the process to stop", () =>
      Promise.resolve(exited === undefined ? undefined : exited),
    );
    assert.equal(exited, 1);
  });
});

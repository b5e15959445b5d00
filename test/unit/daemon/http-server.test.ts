import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pino from "pino";
import { HttpServer } from "../../../src/daemon/http-server.ts";
import { Metrics } from "../../../src/daemon/metrics.ts";
import type { HookEvent } from "../../../src/lakefs/types.ts";

const token = "s3cret-token";
const event = {
  event_type: "post-commit",
  repository_id: "repo",
  branch_id: "main",
  commit_id: "c1",
};

async function serve(
  onEvent: (e: HookEvent) => Promise<{ result: "accepted" | "ignored"; lanes: number }>,
  statusToken?: string,
) {
  let ready = true;
  const server = new HttpServer({
    host: "127.0.0.1",
    port: 0,
    bodyLimitBytes: 1024,
    token,
    statusToken,
    metrics: new Metrics(),
    logger: pino({ level: "silent" }),
    onEvent,
    status: () => ({ lanes: [] }),
    ready: () => ready,
    parts: () => ({ kafka: "connecting" }),
  });
  await server.start();
  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(`${server.address}/webhooks/lakefs`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}`, ...headers },
      body,
    });
  return { server, post, setReady: (r: boolean) => (ready = r) };
}

describe("HTTP server", () => {
  it("answers each webhook with the status code a sender can act on", async () => {
    const received: HookEvent[] = [];
    const { server, post } = await serve((e) => {
      received.push(e);
      return Promise.resolve({ result: e.branch_id === "main" ? "accepted" : "ignored", lanes: 1 });
    });
    try {
      const json = JSON.stringify(event);
      const codes = [
        (await post(json)).status,
        (await post(JSON.stringify({ ...event, branch_id: "other" }))).status,
        (await post(json, { authorization: "Bearer wrong" })).status,
        (await post(json, { authorization: "" })).status,
        (await post("{not json")).status,
        (await post(JSON.stringify({ event_type: 7 }))).status,
        (await post(json, { "content-type": "text/plain" })).status,
        (await post(JSON.stringify({ ...event, commit_message: "x".repeat(2000) }))).status,
        (await fetch(`${server.address}/webhooks/lakefs`)).status,
        (await fetch(`${server.address}/nowhere`)).status,
      ];
      assert.deepEqual(codes, [202, 200, 401, 401, 400, 400, 415, 413, 405, 404]);
      assert.deepEqual(
        received.map((e) => e.branch_id),
        ["main", "other"],
        "only valid, authenticated events reach the intake",
      );
    } finally {
      await server.close();
    }
  });

  it("answers 503 when the event cannot be recorded, and once intake stopped", async () => {
    const { server, post } = await serve(() => Promise.reject(new Error("disk full")));
    try {
      const failed = await post(JSON.stringify(event));
      assert.equal(failed.status, 503);
      assert.match(((await failed.json()) as { error: string }).error, /disk full/);
      server.stopIntake();
      assert.equal((await post(JSON.stringify(event))).status, 503);
      assert.equal((await fetch(`${server.address}/healthz`)).status, 200, "still alive");
    } finally {
      await server.close();
    }
  });

  it("reports readiness with the Kafka state, and closes once for concurrent callers", async () => {
    const { server, setReady } = await serve(() =>
      Promise.resolve({ result: "accepted" as const, lanes: 1 }),
    );
    const ready = await fetch(`${server.address}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: "ready", kafka: "connecting" });
    setReady(false);
    assert.equal((await fetch(`${server.address}/readyz`)).status, 503);
    assert.deepEqual(await (await fetch(`${server.address}/status`)).json(), { lanes: [] });
    await Promise.all([server.close(), server.close()]);
    await assert.rejects(server.start(), { code: "LM_CLOSED" });
  });

  it("asks for the status token on /status and /metrics, never on health and readiness", async () => {
    const statusToken = "status-s3cret";
    const { server } = await serve(
      () => Promise.resolve({ result: "accepted" as const, lanes: 1 }),
      statusToken,
    );
    try {
      const get = (path: string, authorization?: string) =>
        fetch(`${server.address}${path}`, authorization ? { headers: { authorization } } : {});
      const codes: Record<string, number[]> = {};
      for (const path of ["/status", "/metrics", "/healthz", "/readyz"]) {
        codes[path] = [
          (await get(path)).status,
          (await get(path, "Bearer wrong")).status,
          (await get(path, `Bearer ${token}`)).status,
          (await get(path, `Bearer ${statusToken}`)).status,
        ];
      }
      assert.deepEqual(codes, {
        // The webhook token is not the status token.
        "/status": [401, 401, 401, 200],
        "/metrics": [401, 401, 401, 200],
        "/healthz": [200, 200, 200, 200],
        "/readyz": [200, 200, 200, 200],
      });
      assert.match(
        await (await get("/metrics", `Bearer ${statusToken}`)).text(),
        /lakefs_mirror_ready/,
      );
    } finally {
      await server.close();
    }
  });
});

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { laneStatus, startDaemon, waitFor, waitForExported } from "../helpers/daemon.ts";
import { commitObjects, readKey } from "../helpers/mirror.ts";
import { startScriptedProxy } from "../helpers/scripted-proxy.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

/** The reconciler on the real stack: lanes caught up without any event. */
describe("reconciler", () => {
  let stack: Stack;
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    await stack.close();
  });

  it("one repository that lakeFS refuses does not starve the others: a commit without a webhook is still caught up", async (t) => {
    const a = await createRepo(stack, "starve-a");
    const b = await createRepo(stack, "starve-b");
    const bucket = await createBucket(stack, "starve");
    await commitObjects(stack, a, "main", [{ path: "a.txt", content: "a" }], [], "a1");
    await commitObjects(stack, b, "main", [{ path: "b.txt", content: "b1" }], [], "b1");
    // lakeFS refuses a's branch listing, as for credentials that lost access to it.
    const branchesOfA = new RegExp(`^/api/v1/repositories/${a}/branches(\\?|$)`);
    const proxy = await startScriptedProxy(stack.env.LAKEFS_ENDPOINT, (method, path) =>
      method === "GET" && branchesOfA.test(path)
        ? { refuse: { status: 403, body: JSON.stringify({ message: "insufficient permissions" }) } }
        : undefined,
    );
    t.after(() => proxy.close());
    // Repository a is listed first in the configuration: before the fix its refusal ended
    // every pass before b was looked at.
    const { daemon, url } = await startDaemon(stack, {
      mirrors: [
        { repository: a, branches: ["main"], destination: `s3://${bucket}/a/` },
        { repository: b, branches: ["main"], destination: `s3://${bucket}/b/` },
      ],
      reconcileIntervalSeconds: 1,
      env: { LAKEFS_ENDPOINT: proxy.url },
    });
    t.after(() => daemon.close());
    const first = await waitFor("b's lane", async () =>
      (await laneStatus(url)).find((l) => l.repository === b && l.lastSuccessCommit),
    );
    // A commit on b whose webhook never arrives.
    const b2 = await commitObjects(stack, b, "main", [{ path: "b.txt", content: "b2" }], [], "b2");
    assert.notEqual(first.lastSuccessCommit, b2);
    await waitForExported(url, b, "main", b2, 30_000);
    assert.equal((await readKey(stack, bucket, "b/b.txt")).toString(), "b2");
    assert.ok(proxy.refused() >= 2, `lakeFS refused a's listing ${proxy.refused()} times`);

    // The refusal is visible: in /status, in the metric, and a's lane is not ended for it.
    const status = (await (await fetch(`${url}/status`)).json()) as {
      failingRepositories: Record<string, string>;
    };
    assert.match(status.failingRepositories[a] ?? "", /403/);
    assert.equal(status.failingRepositories[b], undefined);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(
      metrics,
      new RegExp(`^lakefs_mirror_repository_up\\{repository="${a}"\\} 0$`, "m"),
    );
    assert.match(
      metrics,
      new RegExp(`^lakefs_mirror_repository_up\\{repository="${b}"\\} 1$`, "m"),
    );

    // Access comes back: a is caught up too, and marked up again.
    proxy.setScript(() => undefined);
    const a1 = (await stack.lakefs.getBranch(a, "main")).commit_id;
    await waitForExported(url, a, "main", a1, 30_000);
    await waitFor("a marked up", async () =>
      /repository_up\{repository="[^"]*starve-a[^"]*"\} 1/.test(
        await (await fetch(`${url}/metrics`)).text(),
      ),
    );
  });
});

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { GcsDestination } from "../../src/gcs/destination.ts";
import type { GcsHttp } from "../../src/gcs/http.ts";
import { runCli } from "../helpers/cli.ts";
import { createGcsBucket, gcsEndpoint, gcsHttp } from "../helpers/gcs.ts";
import { commitObjects } from "../helpers/mirror.ts";
import { connectStack, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const MiB = 1024 * 1024;

/** Metadata as boto3 sends it through the gateway: names with dashes, a value RFC 2047-encoded. */
const META = { "my-key": "v1 v2", owner: "team a", city: "=?utf-8?q?Z=C3=BCrich?=" };

describe("export to Google Cloud Storage (fake-gcs-server) with the CLI", () => {
  let stack: Stack;
  let endpoint: string;
  let http: GcsHttp;
  before(async () => {
    stack = await connectStack();
    endpoint = await gcsEndpoint();
    http = gcsHttp(endpoint);
  });
  after(async () => {
    await http.close();
    await stack.close();
  });

  const cli = (args: string[]) =>
    // A small threshold and part size, so the large object goes as a resumable upload in chunks.
    runCli(stack, [...args, "--multipart-threshold=5242880", "--part-size=5242880"], {
      GCS_ENDPOINT: endpoint,
    });

  it("exports a branch whole, verifies it, and a diff export deletes a removed key", async () => {
    const bucket = await createGcsBucket(endpoint, "export");
    const repo = await createRepo(stack, "gcs");
    const big = randomBytes(11 * MiB + 3);
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "data/a.csv", content: "x,y\n1,2\n", contentType: "text/csv", metadata: META },
      { path: "emoji 😀/ü+%.bin", content: "bytes", metadata: { "a.b_c": "d" } },
      { path: "big/part-0.parquet", content: big, contentType: "application/octet-stream" },
      { path: "tables/_SUCCESS", content: "" },
    ]);
    const uri = `gs://${bucket}/mirror/`;
    const whole = await cli(["export", repo, uri, "--branch=main"]);
    assert.equal(whole.code, 0, whole.stdout + whole.stderr);

    const dest = new GcsDestination(http, { bucket, prefix: "mirror/" });
    const head = await dest.head("data/a.csv");
    assert.equal(head?.contentType, "text/csv");
    assert.deepEqual(head.metadata, META);
    assert.equal((await dest.head("emoji 😀/ü+%.bin"))?.metadata["a.b_c"], "d");
    assert.equal((await dest.head("big/part-0.parquet"))?.size, big.length);
    const root = (await collect(dest.list())).filter((p) => p.startsWith("EXPORT_"));
    assert.equal(root.length, 1);
    assert.match(root[0]!, new RegExp(`^EXPORT_${c1}_.*_SUCCESS$`));

    const verified = await runCli(stack, ["verify", repo, "main", uri], { GCS_ENDPOINT: endpoint });
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);

    await commitObjects(stack, repo, "main", [{ path: "new.txt", content: "n" }], ["data/a.csv"]);
    const diff = await cli(["export", repo, uri, "--branch=main", `--prev_commit_id=${c1}`]);
    assert.equal(diff.code, 0, diff.stdout + diff.stderr);
    assert.equal(await dest.head("data/a.csv"), undefined);
    assert.equal(await dest.getText("new.txt"), "n");
    const again = await runCli(stack, ["verify", repo, "main", uri], { GCS_ENDPOINT: endpoint });
    assert.equal(again.code, 0, again.stdout + again.stderr);

    // verify sees a difference when there is one.
    await dest.putText("stray.txt", "not from lakeFS");
    const extra = await runCli(stack, ["verify", repo, "main", uri], { GCS_ENDPOINT: endpoint });
    assert.equal(extra.code, 1, extra.stdout + extra.stderr);
    assert.match(extra.stdout + extra.stderr, /stray\.txt/);
  });
});

async function collect(pages: AsyncIterable<{ path: string }[]>): Promise<string[]> {
  const out: string[] = [];
  for await (const page of pages) out.push(...page.map((o) => o.path));
  return out;
}

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { AzureAccount } from "../../src/azure/account.ts";
import { AzureDestination } from "../../src/azure/destination.ts";
import { GcsDestination } from "../../src/gcs/destination.ts";
import type { GcsHttp } from "../../src/gcs/http.ts";
import { azuriteAccount, azuriteEnv, createContainer } from "../helpers/azurite.ts";
import type { AzuriteEnv } from "../helpers/azurite.ts";
import { cliSummary, runCli } from "../helpers/cli.ts";
import { createGcsBucket, gcsEndpoint, gcsHttp } from "../helpers/gcs.ts";
import { commitObjects } from "../helpers/mirror.ts";
import { startPrivateLakefs } from "../helpers/private-lakefs.ts";
import type { PrivateLakefs } from "../helpers/private-lakefs.ts";
import { connectStack, uniqueName } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const MiB = 1024 * 1024;

/** Metadata as boto3 sends it through the gateway: a name with a dash, an RFC 2047 value. */
const META = { "my-key": "v1 v2", city: "=?utf-8?q?Z=C3=BCrich?=" };

/**
 * lakeFS keeping its repository in the destination's own store, so that the export copies
 * inside that store (server-side) instead of streaming the bytes through lakeFS. The copy mode
 * `server-side` makes an export that would have to stream fail, so a SUCCESS here says every
 * object was copied inside the store.
 */
describe("lakeFS on fake-gcs-server: the export copies inside GCS", () => {
  let base: Stack;
  let lakefs: PrivateLakefs;
  let endpoint: string;
  let http: GcsHttp;
  before(async () => {
    base = await connectStack();
    endpoint = await gcsEndpoint();
    http = gcsHttp(endpoint);
    // lakeFS's GCS client reads STORAGE_EMULATOR_HOST (the JSON API at <host>/storage/v1).
    lakefs = await startPrivateLakefs(base, "blockstore: { type: gs }", {
      STORAGE_EMULATOR_HOST: base.env.STORAGE_EMULATOR_HOST,
    });
  });
  after(async () => {
    await lakefs?.stop();
    await http?.close();
    await base?.close();
  });

  const cli = (args: string[]) =>
    runCli(lakefs.stack, [...args, "--multipart-threshold=5242880", "--part-size=5242880"], {
      GCS_ENDPOINT: endpoint,
    });

  it("exports with --copy-mode=server-side: rewrite from the repository's bucket, metadata kept, verify clean", async () => {
    const stack = lakefs.stack;
    const nsBucket = await createGcsBucket(endpoint, "lakefs-ns");
    const repo = uniqueName("ongcs");
    await stack.lakefs.createRepository(repo, `gs://${nsBucket}/${repo}`);
    const big = randomBytes(6 * MiB + 11);
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "data/a.csv", content: "x,y\n1,2\n", contentType: "text/csv", metadata: META },
      { path: "big/part-0.parquet", content: big, contentType: "application/octet-stream" },
      { path: "ü 😀/b.txt", content: "b" },
    ]);
    // The objects are in fake-gcs-server, where lakeFS put them.
    const stats = await stack.lakefs.statObject(repo, "main", "data/a.csv");
    assert.ok(
      stats.physical_address.startsWith(`gs://${nsBucket}/${repo}/`),
      stats.physical_address,
    );

    const bucket = await createGcsBucket(endpoint, "mirror");
    const uri = `gs://${bucket}/mirror/`;
    const whole = await cli(["export", repo, uri, "--branch=main", "--copy-mode=server-side"]);
    assert.equal(whole.code, 0, whole.stdout + whole.stderr);
    const summary = cliSummary(whole);
    assert.equal(summary.status, "SUCCESS", whole.stdout);
    // Three objects, each copied inside the store; none of their bytes came through lakeFS.
    assert.equal(summary.serverSideCopies, 3, whole.stdout);
    assert.equal(summary.streamedCopies, 0, whole.stdout);

    const dest = new GcsDestination(http, { bucket, prefix: "mirror/" });
    const head = await dest.head("data/a.csv");
    assert.equal(head?.contentType, "text/csv");
    assert.deepEqual(head.metadata, META);
    assert.equal(await dest.getText("ü 😀/b.txt"), "b");
    const body = await dest.read("big/part-0.parquet");
    assert.ok(body, "the large object is missing");
    assert.ok(big.equals(Buffer.concat(await body.toArray())), "the large object's bytes differ");

    const verified = await runCli(stack, ["verify", repo, "main", uri], { GCS_ENDPOINT: endpoint });
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);

    // A diff export after a change and a delete, still inside the store.
    await commitObjects(stack, repo, "main", [{ path: "new.txt", content: "n" }], ["data/a.csv"]);
    const diff = await cli([
      "export",
      repo,
      uri,
      "--branch=main",
      `--prev_commit_id=${c1}`,
      "--copy-mode=server-side",
    ]);
    assert.equal(diff.code, 0, diff.stdout + diff.stderr);
    assert.equal(await dest.head("data/a.csv"), undefined);
    assert.equal(await dest.getText("new.txt"), "n");
  });

  it("an object replaced behind lakeFS (another size) is never copied under lakeFS's name: no SUCCESS with it in any copy mode (regression: rewrite copied it)", async () => {
    const stack = lakefs.stack;
    const nsBucket = await createGcsBucket(endpoint, "lakefs-ns");
    const repo = uniqueName("ongcschg");
    await stack.lakefs.createRepository(repo, `gs://${nsBucket}/${repo}`);
    await commitObjects(stack, repo, "main", [
      { path: "data/a.csv", content: "12345" },
      { path: "b.txt", content: "b" },
    ]);
    const stats = await stack.lakefs.statObject(repo, "main", "data/a.csv");
    const key = stats.physical_address.slice(`gs://${nsBucket}/`.length);
    // As an import's source rewritten in place: 10 bytes where lakeFS says 5.
    const replaced = await fetch(
      `${endpoint}/upload/storage/v1/b/${nsBucket}/o?uploadType=media&name=${encodeURIComponent(key)}`,
      { method: "POST", body: "0123456789" },
    );
    assert.equal(replaced.status, 200, await replaced.text());
    for (const mode of ["auto", "server-side"]) {
      const bucket = await createGcsBucket(endpoint, "mirror");
      const run = await cli([
        "export",
        repo,
        `gs://${bucket}/m/`,
        "--branch=main",
        `--copy-mode=${mode}`,
      ]);
      assert.equal(run.code, 1, `${mode}: ${run.stdout}${run.stderr}`);
      assert.equal(cliSummary(run).status, "FAILURE");
      const dest = new GcsDestination(http, { bucket, prefix: "m/" });
      const copied = await dest.head("data/a.csv");
      assert.ok(copied === undefined || copied.size === 5, `${mode}: ${copied?.size} bytes copied`);
    }
  });
});

describe("lakeFS on Azurite: the export copies inside the storage account", () => {
  let base: Stack;
  let lakefs: PrivateLakefs;
  let env: AzuriteEnv;
  let account: AzureAccount;
  before(async () => {
    base = await connectStack();
    env = await azuriteEnv();
    account = azuriteAccount(env);
    // lakeFS names the account by its cloud host and sends its requests to Azurite.
    lakefs = await startPrivateLakefs(
      base,
      [
        "blockstore:",
        "  type: azure",
        "  azure:",
        `    storage_account: ${env.AZURE_STORAGE_ACCOUNT}`,
        `    storage_access_key: ${env.AZURE_STORAGE_KEY}`,
        `    test_endpoint_url: ${env.AZURITE_BLOB_ENDPOINT}`,
      ].join("\n"),
    );
  });
  after(async () => {
    await lakefs?.stop();
    await base?.close();
  });

  // The mirror's URI names the account as lakeFS does; azure.endpoint sends requests to Azurite.
  const cli = (args: string[]) =>
    runCli(lakefs.stack, [...args, "--multipart-threshold=5242880", "--part-size=5242880"], {
      AZURE_BLOB_ENDPOINT: env.AZURITE_BLOB_ENDPOINT,
    });

  it("exports with --copy-mode=server-side: Put Block From URL inside the account, metadata names mapped and back, verify clean", async () => {
    const stack = lakefs.stack;
    const host = `https://${env.AZURE_STORAGE_ACCOUNT}.blob.core.windows.net`;
    const nsContainer = await createContainer(account, "lakefs-ns");
    const repo = uniqueName("onazure");
    await stack.lakefs.createRepository(repo, `${host}/${nsContainer}/${repo}`);
    const big = randomBytes(6 * MiB + 11);
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "data/a.csv", content: "x,y\n1,2\n", contentType: "text/csv", metadata: META },
      { path: "big/part-0.parquet", content: big, contentType: "application/octet-stream" },
      { path: "ü 😀/b.txt", content: "b" },
    ]);
    const stats = await stack.lakefs.statObject(repo, "main", "data/a.csv");
    assert.ok(
      stats.physical_address.startsWith(`${host}/${nsContainer}/${repo}/`),
      stats.physical_address,
    );

    const container = await createContainer(account, "mirror");
    const uri = `${host}/${container}/mirror/`;
    const whole = await cli(["export", repo, uri, "--branch=main", "--copy-mode=server-side"]);
    assert.equal(whole.code, 0, whole.stdout + whole.stderr);
    const summary = cliSummary(whole);
    assert.equal(summary.status, "SUCCESS", whole.stdout);
    // Three objects, each copied inside the store; none of their bytes came through lakeFS.
    assert.equal(summary.serverSideCopies, 3, whole.stdout);
    assert.equal(summary.streamedCopies, 0, whole.stdout);

    const dest = new AzureDestination(account, { container, prefix: "mirror/" });
    const head = await dest.head("data/a.csv");
    assert.equal(head?.contentType, "text/csv");
    assert.deepEqual(head.metadata, META);
    assert.equal(await dest.getText("ü 😀/b.txt"), "b");
    const body = await dest.read("big/part-0.parquet");
    assert.ok(body, "the large object is missing");
    assert.ok(big.equals(Buffer.concat(await body.toArray())), "the large object's bytes differ");

    const verified = await runCli(stack, ["verify", repo, "main", uri], {
      AZURE_BLOB_ENDPOINT: env.AZURITE_BLOB_ENDPOINT,
    });
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);

    await commitObjects(stack, repo, "main", [{ path: "new.txt", content: "n" }], ["data/a.csv"]);
    const diff = await cli([
      "export",
      repo,
      uri,
      "--branch=main",
      `--prev_commit_id=${c1}`,
      "--copy-mode=server-side",
    ]);
    assert.equal(diff.code, 0, diff.stdout + diff.stderr);
    assert.equal(await dest.head("data/a.csv"), undefined);
    assert.equal(await dest.getText("new.txt"), "n");
  });
});

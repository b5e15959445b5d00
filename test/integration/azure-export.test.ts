import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { BlobServiceClient, ContainerClient } from "@azure/storage-blob";
import type { AzureAccount } from "../../src/azure/account.ts";
import { AzureDestination } from "../../src/azure/destination.ts";
import { azuriteAccount, azuriteEnv, createContainer } from "../helpers/azurite.ts";
import type { AzuriteEnv } from "../helpers/azurite.ts";
import { runCli } from "../helpers/cli.ts";
import { commitObjects } from "../helpers/mirror.ts";
import { connectStack, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";
import { azureBlobService } from "../helpers/stores.ts";

const MiB = 1024 * 1024;

/**
 * Metadata as boto3 sends it through the gateway: a name with a dash (no C# identifier), a plain
 * name, values with spaces and one RFC 2047-encoded.
 */
const META = { "my-key": "v1 v2", owner: "team a", city: "=?utf-8?q?Z=C3=BCrich?=" };
const EMOJI_KEY = "emoji 😀/ü+%.bin";

describe("export to Azure Blob Storage (Azurite) with the CLI", () => {
  let stack: Stack;
  let env: AzuriteEnv;
  let account: AzureAccount;
  let service: BlobServiceClient;
  let container: string;
  before(async () => {
    stack = await connectStack();
    env = await azuriteEnv();
    account = azuriteAccount(env);
    service = azureBlobService(stack.env);
    container = await createContainer(account, "export");
  });
  after(async () => {
    await account.container(container).deleteIfExists();
    await stack.close();
  });

  const cli = (args: string[]) =>
    // A small threshold and block size, so the large object goes up as Put Block + Put Block List.
    runCli(stack, [...args, "--multipart-threshold=5242880", "--part-size=5242880"]);
  const verify = (repo: string, uri: string) => runCli(stack, ["verify", repo, "main", uri]);

  it("exports a branch whole, verifies it, and a diff export deletes a removed key", async () => {
    const repo = await createRepo(stack, "azure");
    const big = randomBytes(11 * MiB + 3);
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "data/a.csv", content: "x,y\n1,2\n", contentType: "text/csv", metadata: META },
      { path: EMOJI_KEY, content: "bytes", metadata: { "a.b_c": "d" } },
      { path: "big/part-0.parquet", content: big, contentType: "application/octet-stream" },
      { path: "tables/_SUCCESS", content: "" },
    ]);
    const uri = `${env.AZURITE_BLOB_ENDPOINT}/${container}/mirror/`;
    const whole = await cli(["export", repo, uri, "--branch=main"]);
    assert.equal(whole.code, 0, whole.stdout + whole.stderr);

    // Through the destination: Content-Type and the names as lakeFS's gateway has them.
    const dest = new AzureDestination(account, { container, prefix: "mirror/" });
    const head = await dest.head("data/a.csv");
    assert.equal(head?.contentType, "text/csv");
    assert.deepEqual(head.metadata, META);
    assert.deepEqual((await dest.head(EMOJI_KEY))?.metadata, { "a.b_c": "d" });
    assert.equal(await dest.getText(EMOJI_KEY), "bytes");
    assert.equal((await dest.head("tables/_SUCCESS"))?.size, 0);
    const root = (await collect(dest.list())).filter((p) => p.startsWith("EXPORT_"));
    assert.equal(root.length, 1, root.join(", "));
    assert.match(root[0]!, new RegExp(`^EXPORT_${c1}_.*_SUCCESS$`));

    // In Azurite itself, read without the product's code: the stored names are the mapped
    // forms the README documents (`my-key` → `lm_x_my_2dkey`); a plain name is kept as it is.
    const raw: ContainerClient = service.getContainerClient(container);
    const stored = (await raw.getBlobClient("mirror/data/a.csv").getProperties()).metadata ?? {};
    assert.deepEqual(stored, { lm_x_my_2dkey: "v1 v2", owner: "team a", city: META.city });
    // `.` is 0x2e and `_` 0x5f, each escaped as `_` and two hex digits.
    const storedEmoji = await raw.getBlobClient(`mirror/${EMOJI_KEY}`).getProperties();
    assert.deepEqual(storedEmoji.metadata, { lm_x_a_2eb_5fc: "d" });

    // The large object went up in blocks of 5 MiB (11 MiB + 3 bytes: three), its bytes whole.
    const bigBlob = raw.getBlockBlobClient("mirror/big/part-0.parquet");
    const blocks = await bigBlob.getBlockList("committed");
    assert.equal(blocks.committedBlocks?.length, 3);
    assert.ok(big.equals(await bigBlob.downloadToBuffer()), "the large object's bytes differ");

    const verified = await verify(repo, uri);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);

    await commitObjects(stack, repo, "main", [{ path: "new.txt", content: "n" }], ["data/a.csv"]);
    const diff = await cli(["export", repo, uri, "--branch=main", `--prev_commit_id=${c1}`]);
    assert.equal(diff.code, 0, diff.stdout + diff.stderr);
    assert.equal(await dest.head("data/a.csv"), undefined);
    assert.equal(await dest.getText("new.txt"), "n");
    assert.equal(await dest.getText(EMOJI_KEY), "bytes");
    const again = await verify(repo, uri);
    assert.equal(again.code, 0, again.stdout + again.stderr);

    // verify sees a difference when there is one: a blob no export wrote.
    await raw.getBlockBlobClient("mirror/stray.txt").upload("not from lakeFS", 15);
    const extra = await verify(repo, uri);
    assert.equal(extra.code, 1, extra.stdout + extra.stderr);
    assert.match(extra.stdout + extra.stderr, /stray\.txt/);
  });

  it("a lakeFS path with a backslash is refused, never written to or deleted from the blob Azure would make of it (regression: `dir\\file` overwrote someone's `dir/file`)", async () => {
    const repo = await createRepo(stack, "bslash");
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "dir\\file", content: "from lakeFS" },
      { path: "_lakefs_mirror\\ledger.json", content: '{"forged":true}' },
      { path: "ok.txt", content: "ok" },
    ]);
    const raw: ContainerClient = service.getContainerClient(container);
    const foreign = raw.getBlockBlobClient("bslash/dir/file");
    await foreign.upload("someone else's", 14);
    const uri = `${env.AZURITE_BLOB_ENDPOINT}/${container}/bslash/`;
    const run = await cli(["export", repo, uri, "--branch=main"]);
    assert.equal(run.code, 1, run.stdout + run.stderr);
    const dest = new AzureDestination(account, { container, prefix: "bslash/" });
    const status = (await collect(dest.list())).filter((p) => p.startsWith("EXPORT_"));
    assert.equal(status.length, 1);
    assert.match(status[0]!, /_FAILURE$/);
    const text = (await dest.getText(status[0]!)) ?? "";
    assert.match(text, /dir\\file/);
    assert.match(text, /_lakefs_mirror\\ledger\.json/);
    assert.equal((await foreign.downloadToBuffer()).toString(), "someone else's");
    assert.equal(await dest.head("_lakefs_mirror/ledger.json"), undefined, "no forged ledger");
    assert.equal(await dest.getText("ok.txt"), "ok");

    // A diff export that deletes the path does not delete the foreign blob either.
    await commitObjects(stack, repo, "main", [], ["dir\\file"]);
    const diff = await cli(["export", repo, uri, "--branch=main", `--prev_commit_id=${c1}`]);
    assert.equal(diff.code, 1, diff.stdout + diff.stderr);
    assert.equal((await foreign.downloadToBuffer()).toString(), "someone else's");
  });
});

async function collect(pages: AsyncIterable<{ path: string }[]>): Promise<string[]> {
  const out: string[] = [];
  for await (const page of pages) out.push(...page.map((o) => o.path));
  return out;
}

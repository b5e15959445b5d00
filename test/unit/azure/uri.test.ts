import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { azureScheme, formatAzureUri, parseAzureUri } from "../../../src/azure/uri.ts";
import { blockSizeFor, AZURE_LIMITS } from "../../../src/azure/limits.ts";
import { normalizeLocation, parseStorageAddress } from "../../../src/destination/schemes.ts";

const MiB = 1024 * 1024;

describe("Azure destination URIs", () => {
  it("reads lakeFS's https form and the Hadoop forms as one location", () => {
    const want = {
      account: "acct1",
      container: "data-lake",
      prefix: "mirror/main/",
      host: "acct1.blob.core.windows.net",
      emulator: false,
    };
    for (const uri of [
      "https://acct1.blob.core.windows.net/data-lake/mirror/main",
      "https://ACCT1.blob.core.windows.net/data-lake/mirror/main/",
      "abfss://data-lake@acct1.dfs.core.windows.net/mirror/main/",
      "wasbs://data-lake@acct1.blob.core.windows.net/mirror/main",
    ])
      assert.deepEqual(parseAzureUri(uri), want, uri);
    assert.equal(
      normalizeLocation("abfss://data-lake@acct1.dfs.core.windows.net/mirror/main"),
      "https://acct1.blob.core.windows.net/data-lake/mirror/main/",
    );
  });

  it("reads the emulator form, keeping its endpoint", () => {
    const loc = parseAzureUri("http://127.0.0.1:10000/devstoreaccount1/c01/a b/ü");
    assert.deepEqual(loc, {
      account: "devstoreaccount1",
      container: "c01",
      prefix: "a b/ü/",
      host: "127.0.0.1:10000",
      emulator: true,
    });
    assert.equal(formatAzureUri(loc), "http://127.0.0.1:10000/devstoreaccount1/c01/a b/ü/");
    assert.equal(normalizeLocation(formatAzureUri(loc)), formatAzureUri(loc));
  });

  it("names lakeFS physical addresses by account and container, keys as written", () => {
    assert.deepEqual(
      parseStorageAddress("https://acct1.blob.core.windows.net/data/ns/data/g1/a b%+ü"),
      { scheme: "azure", container: "acct1.blob.core.windows.net/data", key: "ns/data/g1/a b%+ü" },
    );
    assert.equal(
      azureScheme.parseAddress("https://acct1.blob.core.windows.net/data/dir/"),
      undefined,
    );
    assert.equal(azureScheme.parseAddress("https://acct1.blob.core.windows.net/data"), undefined);
    assert.equal(azureScheme.parseAddress("https://example.com/data/x"), undefined);
  });

  it("refuses hostile and malformed URIs, saying what is wrong", () => {
    const cases: [string, RegExp][] = [
      ["https://ab.blob.core.windows.net/c01/x", /"ab" is not a valid Azure storage account/],
      ["https://Acct_1.blob.core.windows.net/c01/x", /storage account name/],
      ["https://acct1.blob.core.windows.net/Data/x", /"Data" is not a valid Azure container/],
      ["https://acct1.blob.core.windows.net/a--b/x", /container name/],
      ["https://acct1.blob.core.windows.net/ab-/x", /container name/],
      ["https://acct1.blob.core.windows.net/", /container name/],
      ["https://acct1.blob.core.windows.net/c01/x?sv=2020&sig=abc", /SAS in azure.sasToken/],
      ["https://acct1.blob.core.windows.net/c01/x#frag", /query or fragment/],
      ["https://user:pw@acct1.blob.core.windows.net/c01/x", /credentials in its host/],
      ["https://acct1.blob.core.windows.net:443/c01/x", /port/],
      ["http://acct1.blob.core.windows.net/c01/x", /over https/],
      ["https://acct1.blob.core.windows.net.evil.com/c01/x", /not an Azure blob endpoint/],
      ["https://acct1.dfs.core.windows.net/c01/x", /not an Azure blob endpoint/],
      ["abfss://acct1.dfs.core.windows.net/x", /names no container: write abfss:\/\/<container>@/],
      ["abfss://c01@acct1.blob.core.windows.net/x", /not an Azure dfs endpoint/],
      ["wasbs://c01@acct1.dfs.core.windows.net/x", /not an Azure blob endpoint/],
      ["https://acct1.blob.core.windows.net/c01/a/../b", /"\." or "\.\." segment/],
      ["https://acct1.blob.core.windows.net/c01/./b", /segment/],
      ["https://acct1.blob.core.windows.net/c01/a\u0000b", /control character/],
      ["https://127.0.0.1:10000/devstoreaccount1/c01/", /emulator form is http/],
      ["http://127.0.0.1:99999/devstoreaccount1/c01/", /port 99999 is out of range/],
      ["http://127.0.0.1:10000/x/c01/", /"x" is not a valid Azure storage account/],
      ["ftp://acct1.blob.core.windows.net/c01/", /not an Azure scheme/],
    ];
    for (const [uri, message] of cases)
      assert.throws(() => parseAzureUri(uri), { code: "LM_USAGE", message }, uri);
  });
});

describe("Azure block sizes", () => {
  it("fit any storable object in 50,000 blocks of at most 4,000 MiB", () => {
    assert.equal(blockSizeFor(10 * MiB, 16 * MiB), 16 * MiB);
    assert.equal(blockSizeFor(1024 ** 4, 16 * MiB), 21 * MiB);
    for (const size of [0, 1, 5 * 1024 ** 4, 100 * 1024 ** 4, AZURE_LIMITS.maxObjectBytes]) {
      const block = blockSizeFor(size, 4 * MiB);
      assert.ok(block <= AZURE_LIMITS.maxBlockBytes, String(size));
      assert.ok(Math.ceil(size / block) <= AZURE_LIMITS.maxBlocks, String(size));
    }
  });
});

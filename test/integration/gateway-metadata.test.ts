import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import pino from "pino";
import { defaultRetryPolicy } from "../../src/retry.ts";
import { startDaemon, waitForExported } from "../helpers/daemon.ts";
import {
  assertMirrorEqual,
  commitObjects,
  headKey,
  makeExporter,
  readKey,
} from "../helpers/mirror.ts";
import type { SeedObject } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

/**
 * Decodes a header value made of RFC 2047 Q encoded-words (`=?utf-8?q?...?=`) and plain text.
 * Whitespace between two adjacent encoded-words is not part of the text (RFC 2047, 6.2), and
 * the bytes of adjacent words are joined before decoding, so a character split across words
 * would still come out whole.
 */
function decodeWordsQ(value: string): string {
  const word = /=\?([^?]+)\?[qQ]\?([^?]*)\?=/g;
  let out = "";
  let bytes: number[] = [];
  let last = 0;
  for (const m of value.matchAll(word)) {
    const between = value.slice(last, m.index);
    if (bytes.length === 0 || !/^[ \t\r\n]*$/.test(between)) {
      out += Buffer.from(bytes).toString("utf8") + between;
      bytes = [];
    }
    assert.equal(m[1]?.toLowerCase(), "utf-8", `charset of ${m[0]}`);
    const text = m[2] ?? "";
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (ch === "_") bytes.push(0x20);
      else if (ch === "=") {
        const hex = text.slice(i + 1, i + 3);
        assert.match(hex, /^[0-9A-Fa-f]{2}$/, `bad escape in ${m[0]}`);
        bytes.push(parseInt(hex, 16));
        i += 2;
      } else bytes.push(text.charCodeAt(i));
    }
    last = m.index + m[0].length;
  }
  return out + Buffer.from(bytes).toString("utf8") + value.slice(last);
}

/** How S3 clients send a non-ASCII metadata value: an RFC 2047 B encoded-word in UTF-8. */
function encodeWordB(text: string): string {
  return `=?UTF-8?B?${Buffer.from(text, "utf8").toString("base64")}?=`;
}

describe("metadata as readers of the lakeFS S3 gateway see it", () => {
  let stack: Stack;
  const closers: (() => Promise<unknown>)[] = [];
  before(async () => {
    stack = await connectStack();
  });
  after(async () => {
    for (const c of closers.reverse()) await c();
    await stack.close();
  });

  /** HEAD through the gateway at a commit, and HEAD of the mirrored key. */
  async function heads(repo: string, commit: string, bucket: string, prefix: string, path: string) {
    const gateway = await stack.gateway.send(
      new HeadObjectCommand({ Bucket: repo, Key: `${commit}/${path}` }),
    );
    const mirror = await headKey(stack, bucket, prefix + path);
    return { gateway, mirror };
  }

  it("objects written through the gateway carry the gateway's metadata and Content-Type to the mirror (daemon)", async () => {
    const repo = await createRepo(stack, "gwmeta");
    const bucket = await createBucket(stack);
    const objects: SeedObject[] = [
      {
        path: "data/table.csv",
        content: "a,b\n1,2\n",
        contentType: "text/csv",
        metadata: { foo: "bar", "Mixed-Case": "v" },
      },
      {
        path: "data/report.json",
        content: '{"ok":true}',
        contentType: "application/json; charset=utf-8",
        metadata: { "x-owner": "team a", empty: "" },
      },
      { path: "data/bare.bin", content: Buffer.from([0, 1, 2, 3]) },
    ];
    const commit = await commitObjects(stack, repo, "main", objects);
    const { daemon, url } = await startDaemon(stack, {
      mirrors: [{ repository: repo, branches: ["main"], destination: `s3://${bucket}/m/` }],
    });
    closers.push(() => daemon.close());
    await waitForExported(url, repo, "main", commit);

    for (const o of objects) {
      const { gateway, mirror } = await heads(repo, commit, bucket, "m/", o.path);
      assert.deepEqual(mirror.Metadata, gateway.Metadata, o.path);
      assert.equal(mirror.ContentType, gateway.ContentType, o.path);
      for (const name of Object.keys(mirror.Metadata ?? {}))
        assert.doesNotMatch(name, /^x-amz-meta-/i, `${o.path}: metadata name ${name}`);
    }
    // The gateway's view is not empty: the comparison above compared something.
    const first = await heads(repo, commit, bucket, "m/", "data/table.csv");
    assert.deepEqual(first.gateway.Metadata, { foo: "bar", "mixed-case": "v" });
    assert.equal(first.gateway.ContentType, "text/csv");
    await assertMirrorEqual(stack, repo, commit, bucket, "m/");
  });

  it("a non-Latin-1 value arrives byte-identical to the gateway's Q-encoded one, at once and without retries", async () => {
    const repo = await createRepo(stack, "gwutf8");
    const bucket = await createBucket(stack);
    const city = "東京 – Zürich";
    // Long enough that an encoder must split it over several encoded-words.
    const long = Array.from({ length: 6 }, (_, i) => `${i}: Zürich – 東京 – Ørsted`).join("; ");
    const commit = await commitObjects(stack, repo, "main", [
      {
        path: "cities/tokyo.txt",
        content: "東京",
        contentType: "text/plain; charset=utf-8",
        metadata: { city: encodeWordB(city), long: encodeWordB(long), plain: "ascii" },
      },
    ]);
    // The gateway stored the decoded text (lakeFS's own record of the entry says so).
    const stats = await stack.lakefs.statObject(repo, commit, "cities/tokyo.txt");
    assert.ok(Object.values(stats.metadata ?? {}).includes(city), JSON.stringify(stats.metadata));

    const warnings: string[] = [];
    const logger = pino(
      { level: "warn" },
      new Writable({
        write(chunk: Buffer, _enc, done) {
          warnings.push(chunk.toString());
          done();
        },
      }),
    );
    const started = Date.now();
    const result = await makeExporter(stack, repo, bucket, "", {
      logger,
      retry: defaultRetryPolicy,
    }).exportAllFromCommit(commit);
    const took = Date.now() - started;
    assert.equal(result.status, "SUCCESS", result.failureLines.join("\n"));
    assert.equal(result.copied, 1);
    assert.deepEqual(warnings, [], "no attempt failed");
    assert.ok(took < 5_000, `took ${took} ms`);

    const { gateway, mirror } = await heads(repo, commit, bucket, "", "cities/tokyo.txt");
    const served = gateway.Metadata ?? {};
    assert.deepEqual(Object.keys(served).sort(), ["city", "long", "plain"]);
    for (const name of ["city", "long", "plain"]) {
      assert.ok(served[name], name);
      assert.equal(mirror.Metadata?.[name], served[name], name);
    }
    // The gateway serves Q encoded-words, never the B ones sent, nor raw UTF-8.
    assert.match(served.city ?? "", /^=\?utf-8\?q\?[^?]*\?=$/i);
    assert.ok((served.long ?? "").includes("?= =?"), "the long value spans several words");
    assert.equal(decodeWordsQ(mirror.Metadata?.city ?? ""), city);
    assert.equal(decodeWordsQ(mirror.Metadata?.long ?? ""), long);
    assert.equal(mirror.Metadata?.plain, "ascii");
    assert.equal(mirror.ContentType, gateway.ContentType);
    assert.equal((await readKey(stack, bucket, "cities/tokyo.txt")).toString("utf8"), "東京");
    await assertMirrorEqual(stack, repo, commit, bucket, "");
  });

  it("metadata set through the lakeFS API is invisible to gateway readers, and so absent from the mirror", async () => {
    const repo = await createRepo(stack, "apimeta");
    const bucket = await createBucket(stack);
    const commit = await commitObjects(stack, repo, "main", [
      {
        path: "api/tagged.txt",
        content: "tagged through the API",
        contentType: "text/plain",
        metadata: { team: "x", "Review-State": "approved" },
        via: "api",
      },
      { path: "gw/tagged.txt", content: "through the gateway", metadata: { team: "y" } },
    ]);
    // lakeFS holds the API metadata on the entry.
    const stats = await stack.lakefs.statObject(repo, commit, "api/tagged.txt");
    assert.ok(Object.keys(stats.metadata ?? {}).length >= 2, JSON.stringify(stats.metadata));

    const result = await makeExporter(stack, repo, bucket, "x/").exportAllFromCommit(commit);
    assert.equal(result.status, "SUCCESS");

    const api = await heads(repo, commit, bucket, "x/", "api/tagged.txt");
    assert.deepEqual(api.gateway.Metadata, {});
    assert.deepEqual(api.mirror.Metadata, api.gateway.Metadata);
    assert.equal(api.mirror.ContentType, api.gateway.ContentType);
    assert.equal(api.gateway.ContentType, "text/plain");

    const gw = await heads(repo, commit, bucket, "x/", "gw/tagged.txt");
    assert.deepEqual(gw.gateway.Metadata, { team: "y" });
    assert.deepEqual(gw.mirror.Metadata, gw.gateway.Metadata);
    await assertMirrorEqual(stack, repo, commit, bucket, "x/");
  });
});

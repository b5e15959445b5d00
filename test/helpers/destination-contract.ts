import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import type { Destination, StorageAddress } from "../../src/destination/destination.ts";
import { normalizeLocation } from "../../src/destination/schemes.ts";
import { DestinationError, LeaseLostError } from "../../src/errors.ts";
import { compareUtf8 } from "../../src/export/order.ts";
import type { FaultRates } from "./fault-injecting-proxy.ts";

/**
 * The destination contract (src/destination/destination.ts) as tests: one suite that every
 * backend runs against its real server (MinIO for S3; Azurite and fake-gcs-server to come).
 * A backend passes by what it stores, read back through itself: nothing here knows which store
 * it talks to, and no case is skipped but by a declared capability.
 */

export interface ContractSizes {
  /** Keys per listing page, small enough that a listing of a dozen keys spans pages. */
  listPageKeys?: number;
  /** Streams at or above this size go up in parts (multipart, blocks) of `partBytes`. */
  multipartThresholdBytes?: number;
  partBytes?: number;
}

export interface ContractBackend {
  /** A destination at a fresh, empty prefix of a container that exists. */
  open(sizes?: ContractSizes): Promise<Destination>;
  /** An object written through `dest` as a lakeFS physical address in that store names it. */
  addressOf(dest: Destination, path: string): StorageAddress;
  /** A destination in a container that does not exist. */
  missingContainer(): Destination;
  /** A fresh destination reached through the fault-injecting proxy, faults at these rates. */
  withFaults(rates: FaultRates): Promise<Destination>;
  close(): Promise<void>;
}

const MiB = 1024 * 1024;
const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const utf8Order = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Keys with every kind of character lakeFS allows that stores and their clients get wrong. */
const AWKWARD_KEYS = [
  "plain.txt",
  "with space/and ümlaut ✓.csv",
  "percent%20and+plus=.bin",
  ".leading-dot",
  "deep/a/b/c/d.json",
  "emoji 😀/x",
];

/** Names S3 and the lakeFS gateway allow; a store with stricter rules maps them back and forth. */
const META = {
  contentType: "text/csv; charset=utf-8",
  metadata: { owner: "team a", "my-key": "v1 v2", "a.b_c": "=?utf-8?q?=C3=BC?=" },
};

async function readAll(body: Readable | undefined): Promise<Buffer | undefined> {
  if (!body) return undefined;
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function listAll(dest: Destination, sub = "") {
  const pages = [];
  for await (const page of dest.list(sub)) pages.push(page);
  return { pages, objects: pages.flat() };
}

/** A stream of `bytes` in 1 MiB chunks that fails with `error` once `failAt` bytes are out. */
function chunked(bytes: Buffer, failAt?: number, error = new Error("source cut")): Readable {
  let at = 0;
  return new Readable({
    read() {
      if (failAt !== undefined && at >= failAt) return this.destroy(error);
      if (at >= bytes.length) return this.push(null);
      const end = Math.min(bytes.length, at + MiB);
      this.push(bytes.subarray(at, end));
      at = end;
    },
  });
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  assert.fail("expected a rejection");
}

export function destinationContract(name: string, connect: () => Promise<ContractBackend>): void {
  describe(`destination contract: ${name}`, () => {
    let backend: ContractBackend;
    before(async () => {
      backend = await connect();
    });
    after(() => backend.close());

    it("names itself by a canonical URI, and at() is the same container at another prefix", async () => {
      const dest = await backend.open();
      assert.match(dest.uri, /^[a-z0-9]+:\/\/.+\/$/);
      assert.equal(normalizeLocation(dest.uri), dest.uri);
      assert.equal(dest.describe(), dest.uri);
      assert.equal(dest.describe("a b/ü"), `${dest.uri}a b/ü`);
      assert.equal(dest.key("x"), `${dest.prefix}x`);
      const sub = dest.at(`${dest.prefix}sub dir/`);
      assert.equal(sub.uri, `${dest.uri}sub dir/`);
      assert.deepEqual(sub.capabilities, dest.capabilities);
      await sub.putText("inner.txt", "from the sub-prefix");
      assert.equal(await dest.getText("sub dir/inner.txt"), "from the sub-prefix");
      const c = dest.capabilities;
      assert.ok(c.minPartBytes > 0 && c.minPartBytes <= c.maxPartBytes);
      assert.ok(
        c.maxParts * c.maxPartBytes >= c.maxObjectBytes,
        "parts cannot hold the largest object",
      );
      assert.ok(Number.isInteger(c.maxDeleteBatch) && c.maxDeleteBatch >= 1);
    });

    it("put, head, read and getText keep bytes, Content-Type and metadata under awkward keys", async () => {
      const dest = await backend.open();
      for (const key of AWKWARD_KEYS) {
        const body = `bytes of ${key}`;
        await dest.put(key, body, META);
        const head = await dest.head(key);
        assert.ok(head, `no head for ${key}`);
        assert.equal(head.size, Buffer.byteLength(body), key);
        assert.equal(head.contentType, META.contentType, key);
        assert.deepEqual(head.metadata, META.metadata, key);
        if (dest.capabilities.contentIdIsChecksum)
          assert.equal(head.contentId, md5(Buffer.from(body)), key);
        assert.equal(await dest.getText(key), body, key);
        assert.equal((await readAll(await dest.read(key)))?.toString(), body, key);
      }
      await dest.putText("status", "Export completed successfully!");
      assert.equal((await dest.head("status"))?.contentType, "text/plain; charset=utf-8");
      await dest.put("binary", new Uint8Array([0, 255, 10]), {
        contentType: undefined,
        metadata: {},
      });
      assert.deepEqual([...((await readAll(await dest.read("binary"))) ?? [])], [0, 255, 10]);
    });

    it("a missing key is undefined to head, read, getText and getVersioned, not an error", async () => {
      const dest = await backend.open();
      assert.equal(await dest.head("no/such key"), undefined);
      assert.equal(await dest.read("no/such key"), undefined);
      assert.equal(await dest.getText("no/such key"), undefined);
      assert.equal(await dest.getVersioned("no/such key"), undefined);
    });

    it("lists in UTF-8 byte order across page boundaries, keys that prefix each other included", async () => {
      const dest = await backend.open({ listPageKeys: 3 });
      // U+FF71 sorts before U+1F600 in UTF-8 and after it in UTF-16: a JavaScript sort gets it wrong.
      // No key is also a "directory" of another: MinIO, storing keys as files, cannot hold both
      // `a` and `a/b` (S3 can). `d-x`, `d/x`, `d0` sort by byte, not directories first.
      const keys = [
        ...["a", "a b", "a%b", "a+b", "a-b", "aa", "ab", "b", "A", "_"],
        ...["d-x", "d/x", "d/x y", "d/xx", "d0", "é", "ｱ", "😀"],
      ];
      await Promise.all(keys.map((k) => dest.put(k, k.repeat(2), META)));
      const { pages, objects } = await listAll(dest);
      const want = [...keys].sort(utf8Order);
      assert.deepEqual(
        objects.map((o) => o.path),
        want,
      );
      assert.ok(pages.length >= 5, `${pages.length} pages for ${keys.length} keys at 3 a page`);
      assert.ok(pages.every((p) => p.length <= 3));
      assert.ok(
        want.every((k, i) => i === 0 || compareUtf8(want[i - 1]!, k) < 0),
        "compareUtf8 disagrees",
      );
      for (const o of objects) {
        assert.equal(o.size, Buffer.byteLength(o.path.repeat(2)), o.path);
        assert.ok(Math.abs(o.lastModified.getTime() - Date.now()) < 10 * 60_000, o.path);
        assert.equal(o.contentId, (await dest.head(o.path))?.contentId, o.path);
      }
      // A sub-prefix is a prefix of keys, not a directory.
      assert.deepEqual(
        (await listAll(dest, "a")).objects.map((o) => o.path),
        want.filter((k) => k.startsWith("a")),
      );
      assert.deepEqual(
        (await listAll(dest, "d/")).objects.map((o) => o.path),
        ["d/x", "d/x y", "d/xx"],
      );
      assert.deepEqual((await listAll(dest, "nothing-here/")).objects, []);
    });

    it("streams an object below the part threshold and one of several parts, bytes intact", async () => {
      const dest = await backend.open({ multipartThresholdBytes: 5 * MiB, partBytes: 5 * MiB });
      for (const [path, size] of [
        ["small ü.bin", 300_000],
        ["big ü+%.bin", 12 * MiB + 17],
        ["empty", 0],
      ] as const) {
        const bytes = randomBytes(size);
        await dest.putStream(path, chunked(bytes), size, META);
        const head = await dest.head(path);
        assert.equal(head?.size, size, path);
        assert.equal(head.contentType, META.contentType, path);
        assert.deepEqual(head.metadata, META.metadata, path);
        assert.equal(sha256((await readAll(await dest.read(path)))!), sha256(bytes), path);
      }
    });

    it("a streamed upload whose body fails, ends short or is fenced leaves nothing at its key", async () => {
      const dest = await backend.open({ multipartThresholdBytes: 5 * MiB, partBytes: 5 * MiB });
      const bytes = randomBytes(12 * MiB);
      const cut = await rejection(
        dest.putStream("cut", chunked(bytes, 7 * MiB), bytes.length, META),
      );
      assert.ok(cut instanceof Error);
      const short = await rejection(
        dest.putStream("short", chunked(bytes.subarray(0, 9 * MiB)), bytes.length, META),
      );
      assert.ok(short instanceof DestinationError, String(short));
      for (const size of [2 * MiB, bytes.length]) {
        let calls = 0;
        const fence = () => {
          if (++calls > 2) throw new LeaseLostError("lease lost (test)");
        };
        const path = `fenced-${size}`;
        const err = await rejection(
          dest.putStream(path, chunked(bytes.subarray(0, size)), size, META, undefined, fence),
        );
        assert.ok(err instanceof LeaseLostError, `${path}: ${String(err)}`);
      }
      const ac = new AbortController();
      const aborted = dest.putStream("aborted", chunked(bytes), bytes.length, META, ac.signal);
      ac.abort();
      await rejection(aborted);
      for (const path of ["cut", "short", `fenced-${2 * MiB}`, `fenced-${bytes.length}`, "aborted"])
        assert.equal(await dest.head(path), undefined, `${path} appeared`);
    });

    it("deletes a batch, missing keys included, and nothing else", async () => {
      const dest = await backend.open();
      const keys = Array.from({ length: 40 }, (_, i) => `d/${i} ü+%`);
      await Promise.all(keys.map((k) => dest.putText(k, k)));
      await dest.putText("keep me", "x");
      const gone = [...keys.filter((_, i) => i % 2 === 0), "d/missing", "never/there"];
      assert.deepEqual(await dest.deleteBatch(gone), []);
      assert.deepEqual(await dest.deleteBatch(gone), [], "a second delete of the same keys");
      assert.deepEqual(await dest.deleteBatch([]), []);
      const left = (await listAll(dest)).objects.map((o) => o.path);
      assert.deepEqual(left, [...keys.filter((_, i) => i % 2 === 1), "keep me"].sort(utf8Order));
      const tooMany = Array.from(
        { length: dest.capabilities.maxDeleteBatch + 1 },
        (_, i) => `x${i}`,
      );
      await assert.rejects(dest.deleteBatch(tooMany), TypeError);
    });

    it("creates only if absent, and replaces only with the current version", async () => {
      const dest = await backend.open();
      const v1 = await dest.putConditional("lease.json", '{"n":1}', { ifAbsent: true });
      assert.equal(typeof v1, "string");
      assert.equal(
        await dest.putConditional("lease.json", '{"n":0}', { ifAbsent: true }),
        undefined,
      );
      const read = await dest.getVersioned("lease.json");
      assert.deepEqual(read?.text, '{"n":1}');
      assert.equal((await dest.head("lease.json"))?.contentType, "application/json");
      const v2 = await dest.putConditional("lease.json", '{"n":2}', { ifVersion: read.version });
      assert.ok(v2 !== undefined && v2 !== v1, "a replace with the version just read failed");
      assert.equal(
        await dest.putConditional("lease.json", '{"n":9}', { ifVersion: v1! }),
        undefined,
      );
      assert.equal(await dest.getText("lease.json"), '{"n":2}');
      // The version a write returns is as good as one read.
      assert.ok(await dest.putConditional("lease.json", '{"n":3}', { ifVersion: v2 }));
      assert.equal(await dest.getText("lease.json"), '{"n":3}');
      // A replace of a key that is gone never creates it.
      const gone = dest
        .putConditional("gone.json", "{}", { ifVersion: v2 })
        .catch((e: unknown) => e);
      const outcome = await gone;
      if (outcome !== undefined) {
        assert.ok(outcome instanceof DestinationError, "a replace of a missing key succeeded");
        assert.equal(outcome.reason, "NotFound", outcome.message);
      }
      assert.equal(await dest.head("gone.json"), undefined);
    });

    it("of concurrent creates of one key, exactly one wins", async () => {
      const dest = await backend.open();
      const tries = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          dest.putConditional("race.json", `{"i":${i}}`, { ifAbsent: true }),
        ),
      );
      const won = tries.flatMap((v, i) => (v === undefined ? [] : [i]));
      assert.equal(won.length, 1, `winners: ${won.join(", ")}`);
      assert.equal(await dest.getText("race.json"), `{"i":${won[0]}}`);
    });

    it("copies server-side from a physical address, replacing Content-Type and metadata", async () => {
      const dest = await backend.open();
      const source = dest.at(`${dest.prefix}physical/`);
      const bytes = randomBytes(3 * MiB + 5);
      await source.putStream("data/a b+ü%.bin", chunked(bytes), bytes.length, {
        contentType: "application/x-old",
        metadata: { stale: "yes" },
      });
      const from = backend.addressOf(source, "data/a b+ü%.bin");
      // Every backend copies inside its own store; one that stopped declaring it fails here.
      assert.ok(
        dest.capabilities.serverSideCopyFrom.includes(from.scheme),
        `${name} declares no server-side copy from ${from.scheme}`,
      );
      await dest.serverSideCopy(from, "copied/x y.bin", bytes.length, META);
      const head = await dest.head("copied/x y.bin");
      assert.equal(head?.size, bytes.length);
      assert.equal(head.contentType, META.contentType);
      assert.deepEqual(head.metadata, META.metadata);
      if (dest.capabilities.contentIdIsChecksum)
        assert.equal(head.contentId, (await source.head("data/a b+ü%.bin"))?.contentId);
      assert.equal(sha256((await readAll(await dest.read("copied/x y.bin")))!), sha256(bytes));
      const missing = await rejection(
        dest.serverSideCopy({ ...from, key: `${from.key}.gone` }, "never", 1, META),
      );
      assert.ok(missing instanceof DestinationError, String(missing));
      assert.equal(missing.reason, "NotFound", missing.message);
      assert.equal(missing.retriable, false);
      assert.equal(await dest.head("never"), undefined);
    });

    it("fails with neutral reasons: a missing container, throttling, a broken connection", async () => {
      const nowhere = backend.missingContainer();
      for (const op of [() => listAll(nowhere), () => nowhere.putText("x", "y")]) {
        const err = await rejection(op());
        assert.ok(err instanceof DestinationError, String(err));
        assert.equal(err.reason, "ContainerNotFound", err.message);
        assert.equal(err.retriable, false);
      }
      const throttled = await backend.withFaults({ slowdown: 1 });
      const slow = await rejection(throttled.putText("x", "y"));
      assert.ok(slow instanceof DestinationError && slow.retriable, String(slow));
      assert.equal(slow.reason, "SlowDown", slow.message);
      const broken = await backend.withFaults({ reset: 1 });
      const reset = await rejection(broken.getText("x"));
      assert.ok(reset instanceof DestinationError && reset.retriable, String(reset));
      assert.equal(reset.reason, "Network", reset.message);
    });
  });
}

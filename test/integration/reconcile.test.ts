import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { verifyMirror } from "../../src/verify/verify.ts";
import { lakefsGateway } from "../../src/s3/gateway.ts";
import { runCli } from "../helpers/cli.ts";
import type { CliRun } from "../helpers/cli.ts";
import { laneStatus, startDaemon, waitFor, waitForExported } from "../helpers/daemon.ts";
import { commitObjects, commitPaths, statusKeys } from "../helpers/mirror.ts";
import type { SeedObject } from "../helpers/mirror.ts";
import { Places, STORE_NAMES } from "../helpers/places.ts";
import type { Place } from "../helpers/places.ts";
import { connectStack, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const LEDGER = "_lakefs_mirror/ledger.json";

/** The commit every CLI test exports: a mix of sizes, types, metadata and depths. */
const seed: SeedObject[] = [
  { path: "keep/a.txt", content: "alpha", contentType: "text/plain", metadata: { owner: "a" } },
  { path: "keep/b.bin", content: randomBytes(64) },
  { path: "same-size.txt", content: "AAAA" },
  { path: "resized.txt", content: "short" },
  { path: "meta-only.csv", content: "a,b\n1,2\n", contentType: "text/csv", metadata: { v: "1" } },
  { path: "gone/one.txt", content: "1" },
  { path: "gone/deep/two.txt", content: "22" },
  { path: "tables/t/_SUCCESS", content: "" },
];

/** Keys put at a destination that the commit lacks, nested paths included. */
const extras = ["stray.txt", "nested/a/b/stray.bin", "gone/stray.txt"];
/** Mirrored keys removed behind lakefs-mirror's back. */
const removed = ["gone/one.txt", "gone/deep/two.txt"];
/** Mirrored keys whose bytes are replaced: same size, and a different size. */
const rewritten = ["same-size.txt", "resized.txt"];
/** A mirrored key whose bytes stay while its Content-Type and metadata change. */
const metaChanged = "meta-only.csv";

/** Status files and lakefs-mirror's own records (`_lakefs_mirror/`) of a listing. */
function ownRecords(keys: Map<string, string>): [string, string][] {
  return [...keys.entries()]
    .filter(([k]) => k.startsWith("_lakefs_mirror/") || statusKeys([k]).length === 1)
    .sort();
}

// The same cases on each store of the stack (MinIO, Azurite, fake-gcs-server), each store's
// keys made and read with that store's own client library (test/helpers/places.ts).
for (const store of STORE_NAMES) {
  describe(
    `reconciling full export (lakefs-mirror export --sync) on ${store}`,
    { concurrency: 3 },
    () => {
      let stack: Stack;
      let places: Places;
      let repo: string;
      let head: string;
      const closers: (() => Promise<unknown>)[] = [];

      before(async () => {
        stack = await connectStack();
        places = new Places(stack);
        repo = await createRepo(stack, "sync");
        head = await commitObjects(stack, repo, "main", seed);
      });
      after(async () => {
        for (const c of closers.reverse()) await c();
        await places.close();
        await stack.close();
      });

      const cli = (place: Place, args: string[]): Promise<CliRun> =>
        runCli(stack, args, place.cliEnv);

      function summary(run: CliRun): Record<string, unknown> {
        const lines = run.stdout.trim().split("\n").filter(Boolean);
        return JSON.parse(lines.at(-1) ?? "{}") as Record<string, unknown>;
      }

      /** lakefs-mirror's verify of the place against `ref`: what differs. */
      async function differences(place: Place, ref: string, repository = repo) {
        const r = await verifyMirror({
          lakefs: stack.lakefs,
          repository,
          ref,
          destination: place.destination(),
          gateway: lakefsGateway(stack.gateway),
        });
        return r.differences;
      }

      /** A plain (non-reconciling) CLI export of the branch: the prefix then has a status file. */
      async function plainExport(place: Place) {
        const run = await cli(place, ["export", repo, place.uri, "--branch=main"]);
        assert.equal(run.code, 0, run.stderr + run.stdout);
        assert.equal(statusKeys((await place.keys()).keys()).length, 1);
      }

      /** Extra, missing, rewritten and metadata-changed keys, all made directly in the store. */
      async function drift(place: Place) {
        for (const k of extras) await place.put(k, `not in the commit: ${k}`);
        for (const k of removed) await place.remove(k);
        await place.put("same-size.txt", "BBBB");
        await place.put("resized.txt", "a good deal longer than before");
        const bytes = await place.read(metaChanged);
        await place.setMeta(metaChanged, "application/json", { v: "2", added: "yes" });
        const changed = await place.head(metaChanged);
        // Only the Content-Type and metadata differ: the same bytes.
        assert.deepEqual(await place.read(metaChanged), bytes);
        assert.equal(changed?.contentType, "application/json");
        assert.deepEqual(changed.metadata, { v: "2", added: "yes" });
      }

      /** Keys lakefs-mirror keeps for itself at a prefix's root, besides a status file. */
      async function addOwnRecords(place: Place) {
        await place.put("_lakefs_mirror/notes.txt", "lakefs-mirror's own");
        await place.put("_lakefs_mirror/deep/state.json", "{}");
      }

      /** The mirrored keys (status files and `_lakefs_mirror/` left out) with their sizes. */
      async function mirroredKeys(place: Place) {
        const keys = await place.keys();
        for (const k of [...keys.keys()])
          if (k.startsWith("_lakefs_mirror/") || statusKeys([k]).length === 1) keys.delete(k);
        return [...keys.entries()].sort();
      }

      it("on a prefix declared dedicated, copies only what differs, deletes the extras, and leaves its own records alone", async () => {
        const place = await places.place(store, "mirror/");
        await plainExport(place);
        await addOwnRecords(place);
        await drift(place);
        const own = ownRecords(await place.listing());
        assert.equal(own.length, 3);

        // Keys nobody's records name (the extras) go only where the prefix is declared the mirror's.
        const run = await cli(place, [
          "export",
          repo,
          place.uri,
          "--branch=main",
          "--sync",
          "--dedicated",
        ]);
        assert.equal(run.code, 0, run.stderr + run.stdout);
        const s = summary(run);
        assert.equal(s.status, "SUCCESS");
        assert.equal(s.commitId, head);
        const changed = removed.length + rewritten.length + 1;
        assert.equal(s.copied, changed, "the missing, rewritten and metadata-changed keys");
        assert.equal(s.deleted, extras.length);
        assert.equal(s.unchanged, seed.length - changed);
        assert.equal(s.failed, 0);
        assert.equal(s.kept, 0);

        assert.deepEqual(await differences(place, head), []);
        assert.deepEqual(
          await mirroredKeys(place),
          [...(await commitPaths(stack, repo, head)).entries()].sort(),
        );
        const after = await place.listing();
        for (const k of extras) assert.equal(after.has(k), false, `${k} is deleted`);
        // The earlier status file and the reserved keys are as they were; one SUCCESS was added.
        for (const [k, v] of own) assert.equal(after.get(k), v, `${k} is untouched`);
        const added = ownRecords(after)
          .map(([k]) => k)
          .filter((k) => !own.some(([o]) => o === k));
        assert.equal(added.length, 1, added.join("\n"));
        assert.match(added[0] ?? "", new RegExp(`^EXPORT_${head}_.*_SUCCESS$`));
        const meta = await place.head(metaChanged);
        assert.equal(meta?.contentType, "text/csv");
        assert.deepEqual(meta.metadata, { v: "1" });
      });

      it("--dry-run --sync lists every delete and writes nothing", async () => {
        const place = await places.place(store, "dry/");
        await plainExport(place);
        await drift(place);
        const before = await place.listing();

        const run = await cli(place, [
          "export",
          repo,
          place.uri,
          "--branch=main",
          "--sync",
          "--dedicated",
          "--dry-run",
        ]);
        assert.equal(run.code, 0, run.stderr + run.stdout);
        const plan = JSON.parse(run.stdout) as {
          commitId: string;
          sync: boolean;
          actions: Record<string, number>;
          sample: Record<string, string[]>;
          refusals?: string[];
        };
        assert.equal(plan.commitId, head);
        assert.equal(plan.sync, true);
        assert.deepEqual([...(plan.sample.delete ?? [])].sort(), [...extras].sort());
        assert.equal(plan.actions.delete, extras.length);
        assert.equal(plan.refusals, undefined);
        assert.deepEqual([...(await place.listing()).entries()].sort(), [...before].sort());
      });

      it("on a foreign prefix keeps the keys the commit lacks, unless the prefix is declared dedicated", async () => {
        const theirs = ["readme.txt", "theirs/report.csv", "theirs/deep/x.bin"];
        const foreign = await places.place(store, "foreign/");
        const dedicated = await places.place(store, "dedicated/");
        for (const place of [foreign, dedicated]) {
          for (const k of theirs) await place.put(k, `someone else's ${k}`);
          // A key at a path the commit has, with other bytes: it is overwritten either way.
          await place.put("keep/a.txt", "someone else's alpha");
          assert.deepEqual(statusKeys((await place.keys()).keys()), []);
        }

        const run = await cli(foreign, ["export", repo, foreign.uri, "--branch=main", "--sync"]);
        assert.equal(run.code, 0, run.stderr + run.stdout);
        const s = summary(run);
        assert.equal(s.status, "SUCCESS");
        assert.equal(s.kept, theirs.length);
        assert.equal(s.deleted, 0);
        assert.equal(s.copied, seed.length);
        for (const k of theirs)
          assert.equal((await foreign.read(k))?.toString(), `someone else's ${k}`);
        assert.deepEqual(
          await differences(foreign, head),
          [...theirs].sort().map((path) => ({ kind: "extra", path })),
        );

        const run2 = await cli(dedicated, [
          "export",
          repo,
          dedicated.uri,
          "--branch=main",
          "--sync",
          "--dedicated",
          // Three of its four keys are extras: more than the default guard (50%) allows.
          "--max-deletes=3",
        ]);
        assert.equal(run2.code, 0, run2.stderr + run2.stdout);
        const d = summary(run2);
        assert.equal(d.deleted, theirs.length);
        assert.equal(d.kept, 0);
        assert.deepEqual(await differences(dedicated, head), []);
        const left = await dedicated.keys();
        for (const k of theirs) assert.equal(left.has(k), false, `${k} is deleted`);
        // The foreign prefix is untouched by the dedicated one.
        for (const k of theirs) assert.ok((await foreign.keys()).has(k));
      });

      it("refuses more deletes than --max-deletes allows: FAILURE that says why, nothing deleted", async () => {
        const place = await places.place(store, "guard/");
        await plainExport(place);
        const many = ["x/1", "x/2", "x/3", "y/deep/4", "5"];
        for (const k of many) await place.put(k, k);

        for (const limit of ["2", "10%"]) {
          const run = await cli(place, [
            "export",
            repo,
            place.uri,
            "--branch=main",
            "--sync",
            "--dedicated",
            `--max-deletes=${limit}`,
          ]);
          assert.equal(run.code, 1, `--max-deletes=${limit}: ${run.stderr}${run.stdout}`);
          assert.equal(summary(run).status, "FAILURE");
          assert.equal(summary(run).deleted, 0);
          const keys = await place.keys();
          for (const k of many)
            assert.ok(keys.has(k), `${k} was deleted with --max-deletes=${limit}`);
          const failures = statusKeys(keys.keys()).filter((k) => k.endsWith("_FAILURE"));
          assert.equal(failures.length, limit === "2" ? 1 : 2);
          const newest = failures.sort().at(-1) ?? "";
          assert.match(newest, new RegExp(`^EXPORT_${head}_`));
          const text = (await place.read(newest))?.toString("utf8") ?? "";
          assert.match(text, /refused to delete 5 of \d+ keys/);
          assert.match(text, /max-deletes/);
          assert.ok(text.includes(`(${limit})`), text);
        }

        // Exactly as many as allowed goes through.
        const run = await cli(place, [
          "export",
          repo,
          place.uri,
          "--branch=main",
          "--sync",
          "--dedicated",
          `--max-deletes=${many.length}`,
        ]);
        assert.equal(run.code, 0, run.stderr + run.stdout);
        assert.equal(summary(run).deleted, many.length);
        assert.deepEqual(await differences(place, head), []);
      });

      describe("in the daemon, with no trustworthy base", () => {
        const daemonOn = async (
          place: Place,
          mirror: { repository: string; dedicated?: boolean },
        ) => {
          const started = await startDaemon(stack, {
            mirrors: [{ branches: ["main"], destination: place.uri, ...mirror }],
            env: place.cliEnv,
          });
          closers.push(() => started.daemon.close());
          return started.url;
        };

        it("a new lane on a dedicated, non-empty destination reconciles it: stale keys deleted, missing ones copied", async () => {
          const repo5 = await createRepo(stack, "dedicated");
          const place = await places.place(store, "");
          const c = await commitObjects(stack, repo5, "main", [
            { path: "p/1.txt", content: "one" },
            { path: "p/2.txt", content: "two", contentType: "text/plain" },
            { path: "p/3.csv", content: "3,3", contentType: "text/csv", metadata: { k: "v" } },
            { path: "q/deep/4.bin", content: randomBytes(100) },
            { path: "q/5.txt", content: "five" },
            { path: "6.txt", content: "six" },
          ]);
          // The destination holds an old copy of the data, but nothing that marks it as ours.
          const copy = await cli(place, ["export", repo5, place.uri, `--commit_id=${c}`]);
          assert.equal(copy.code, 0, copy.stderr + copy.stdout);
          for (const k of statusKeys((await place.keys()).keys())) await place.remove(k);
          await place.remove("q/5.txt");
          const stale = ["stale/old.parquet", "p/stale.txt"];
          for (const k of stale) await place.put(k, "stale");
          assert.deepEqual(statusKeys((await place.keys()).keys()), []);
          assert.equal((await place.keys()).has(LEDGER), false);

          const url = await daemonOn(place, { repository: repo5, dedicated: true });
          await waitForExported(url, repo5, "main", c);
          assert.deepEqual(await differences(place, c, repo5), []);
          assert.deepEqual(
            await mirroredKeys(place),
            [...(await commitPaths(stack, repo5, c)).entries()].sort(),
          );
          const metrics = await (await fetch(`${url}/metrics`)).text();
          assert.match(metrics, /^lakefs_mirror_objects_total\{op="copied"\} 1$/m);
          assert.match(metrics, /^lakefs_mirror_objects_total\{op="deleted"\} 2$/m);
        });

        it("a max-deletes refusal holds when the daemon tries again: the stale keys stay", async () => {
          const repo8 = await createRepo(stack, "guarded");
          const place = await places.place(store, "");
          const c = await commitObjects(
            stack,
            repo8,
            "main",
            [1, 2, 3, 4].map((i) => ({ path: `new/${i}.txt`, content: `new ${i}` })),
          );
          // Every key at the destination is one the commit lacks: 4 of 4, over the default 50%.
          const stale = [1, 2, 3, 4].map((i) => `old/${i}.txt`);
          for (const k of stale) await place.put(k, "stale");
          const url = await daemonOn(place, { repository: repo8, dedicated: true });
          // Two attempts at the commit have ended (retries come after 1 s, then 2 s).
          const statuses = await waitFor("two export attempts", async () => {
            const found = statusKeys((await place.keys()).keys()).sort();
            return found.length >= 2 ? found : undefined;
          });
          const left = await place.keys();
          for (const k of stale) assert.ok(left.has(k), `${k} was deleted after a refusal`);
          assert.deepEqual(
            statuses.map((k) => k.replace(/^EXPORT_[0-9a-f]+_.*_(SUCCESS|FAILURE)$/, "$1")),
            ["FAILURE", "FAILURE"],
          );
          for (const k of statuses) {
            assert.ok(k.startsWith(`EXPORT_${c}_`), k);
            assert.match((await place.read(k))?.toString("utf8") ?? "", /max-deletes/);
          }
          const lane = (await laneStatus(url)).find((l) => l.repository === repo8);
          assert.notEqual(lane?.lastSuccessCommit, c);
          assert.match(lane?.lastError ?? "", /max-deletes/);
        });

        it("a new lane on a foreign prefix, not declared dedicated, keeps the keys it did not write", async () => {
          const repo7 = await createRepo(stack, "foreign");
          const place = await places.place(store, "");
          const c = await commitObjects(stack, repo7, "main", [
            { path: "a.txt", content: "a" },
            { path: "b.txt", content: "b" },
            { path: "c.txt", content: "c" },
          ]);
          const theirs = ["theirs/notes.txt", "theirs/report.csv"];
          for (const k of theirs) await place.put(k, "someone else's");
          const url = await daemonOn(place, { repository: repo7 });
          await waitForExported(url, repo7, "main", c);
          for (const k of theirs)
            assert.equal(
              (await place.read(k))?.toString(),
              "someone else's",
              `${k} is not as it was`,
            );
          assert.deepEqual(
            await differences(place, c, repo7),
            theirs.map((path) => ({ kind: "extra", path })),
          );
        });

        it("a new checkpoint and a destination without ledger or status files: reconciles, keeping keys it cannot tell are its own", async () => {
          const repo6 = await createRepo(stack, "lost");
          const place = await places.place(store, "");
          const c1 = await commitObjects(stack, repo6, "main", [
            { path: "d/1.txt", content: "one" },
            { path: "d/2.txt", content: "two" },
            { path: "d/3.txt", content: "three" },
            { path: "e/4.txt", content: "four", metadata: { n: "4" } },
          ]);
          const mirrors = [{ repository: repo6, branches: ["main"], destination: place.uri }];
          const first = await startDaemon(stack, { mirrors, env: place.cliEnv });
          try {
            await waitForExported(first.url, repo6, "main", c1);
          } finally {
            await first.daemon.close();
          }
          const c2 = await commitObjects(stack, repo6, "main", [
            { path: "d/new.txt", content: "new" },
          ]);

          // Lose every record of the mirror's state, and let the mirror drift.
          const records = [...(await place.keys()).keys()].filter(
            (k) => k === LEDGER || statusKeys([k]).length === 1,
          );
          assert.ok(records.includes(LEDGER));
          assert.ok(records.length >= 2);
          for (const k of records) await place.remove(k);
          await place.remove("d/2.txt");
          await place.put("d/3.txt", "THREE, rewritten");
          const strays = ["d/stray.txt", "z/deep/stray.bin"];
          for (const k of strays) await place.put(k, "stray");

          const second = await startDaemon(stack, { mirrors, env: place.cliEnv });
          closers.push(() => second.daemon.close());
          await waitForExported(second.url, repo6, "main", c2);
          // Without a ledger or status file at the start, and not declared dedicated, the prefix
          // is not provably lakefs-mirror's: keys the commit lacks are kept, everything else is
          // brought to the commit.
          assert.deepEqual(
            await differences(place, c2, repo6),
            [...strays].sort().map((path) => ({ kind: "extra", path })),
          );
          for (const k of strays) assert.equal((await place.read(k))?.toString(), "stray");
          const metrics = await (await fetch(`${second.url}/metrics`)).text();
          assert.match(metrics, /^lakefs_mirror_objects_total\{op="copied"\} 3$/m);
          assert.doesNotMatch(metrics, /^lakefs_mirror_objects_total\{op="deleted"\} [1-9]/m);
        });
      });
    },
  );
}

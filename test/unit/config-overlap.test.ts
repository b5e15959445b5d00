import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { loadConfig } from "../../src/config.ts";
import { destinationsMeet, templateOf } from "../../src/config-overlap.ts";
import type { MirrorTemplate } from "../../src/config-overlap.ts";

function configWith(mirrors: unknown[]) {
  const path = join(mkdtempSync(join(tmpdir(), "lakefs-mirror-overlap-")), "config.json");
  writeFileSync(path, JSON.stringify({ mirrors }));
  return () => loadConfig({ env: {}, file: path });
}

const m = (repository: string, branches: string[], destination: string): MirrorTemplate => ({
  repository,
  branches,
  template: templateOf(destination),
});

describe("mirrors whose destinations can meet", () => {
  it("a {branch} template inside a fixed destination is refused, naming both mirrors", () => {
    assert.throws(
      configWith([
        { repository: "ra", branches: ["main"], destination: "s3://bkt/shared/{branch}/" },
        { repository: "rb", branches: ["y"], destination: "s3://bkt/shared/" },
      ]),
      {
        code: "LM_CONFIG",
        message:
          /mirrors\[0\] and mirrors\[1\] would nest: s3:\/\/bkt\/shared\/ of mirrors\[1\] \(s3:\/\/bkt\/shared\/\) encloses s3:\/\/bkt\/shared\/main\/ of mirrors\[0\] \(s3:\/\/bkt\/shared\/\{branch\}\/\)/,
      },
    );
  });

  it("every URI form of a store is one place, and two stores never meet", () => {
    // Azure's https, abfss and wasbs forms of one container and prefix.
    const https = "https://acct.blob.core.windows.net/data/mirror/{branch}/";
    const abfss = "abfss://data@acct.dfs.core.windows.net/mirror/";
    const wasbs = "wasbs://data@acct.blob.core.windows.net/mirror/main/";
    assert.ok(destinationsMeet(m("r", ["main"], https), m("q", ["x"], abfss)));
    assert.ok(destinationsMeet(m("r", ["main"], https), m("q", ["x"], wasbs)));
    assert.ok(
      destinationsMeet(m("r", ["*"], "s3a://bkt/m/{branch}/"), m("q", ["x"], "s3://bkt/m/")),
    );
    // The same names in another store, or another account, are another place.
    assert.equal(
      destinationsMeet(m("r", ["*"], "gs://bkt/m/"), m("q", ["x"], "s3://bkt/m/")),
      undefined,
    );
    const other = "https://other.blob.core.windows.net/data/mirror/";
    assert.equal(destinationsMeet(m("r", ["main"], https), m("q", ["x"], other)), undefined);
  });

  it("a placeholder stays in its segment: x-{branch} meets x-y/z/ but never x.y/ or xy/", () => {
    assert.deepEqual(
      destinationsMeet(m("r", ["*"], "s3://bkt/x-{branch}/"), m("q", ["main"], "s3://bkt/x-y/z/")),
      {
        outer: "s3://bkt/x-y/",
        inner: "s3://bkt/x-y/z/",
        outerIs: "a",
      },
    );
    // A branch name never holds "." or "/", so these are never one place.
    assert.equal(
      destinationsMeet(m("r", ["*"], "s3://bkt/x{branch}/"), m("q", ["q"], "s3://bkt/x.y/")),
      undefined,
    );
    assert.deepEqual(
      destinationsMeet(m("r", ["*"], "s3://bkt/{branch}/"), m("q", ["q"], "s3://bkt/x/y/z/")),
      {
        outer: "s3://bkt/x/",
        inner: "s3://bkt/x/y/z/",
        outerIs: "a",
      },
    );
    assert.equal(
      destinationsMeet(m("r", ["main"], "s3://bkt/x/"), m("q", ["main"], "s3://bkt/xy/")),
      undefined,
    );
  });

  it("{repository} is the mirror's own repository; a glob no branch name can match makes no lane", () => {
    const t = "s3://bkt/{repository}/{branch}/";
    assert.equal(destinationsMeet(m("r", ["*"], t), m("q", ["*"], t)), undefined);
    assert.ok(destinationsMeet(m("r", ["*"], t), m("r", ["main"], t)));
    assert.equal(
      destinationsMeet(m("r", ["feature.x"], "s3://bkt/x/"), m("q", ["main"], "s3://bkt/x/")),
      undefined,
    );
    // A placeholder in the bucket name too.
    assert.ok(
      destinationsMeet(
        m("r", ["main"], "s3://{branch}-mirror/"),
        m("q", ["x"], "s3://main-mirror/p/"),
      ),
    );
  });

  it("a {branch} placeholder never stands for an empty name: `*` next to {repository} meets the bucket root at a real branch", () => {
    // Found by the property below: the witness was bkt/r/, a branch named "".
    const met = destinationsMeet(
      m("r", ["*"], "s3://bkt/{branch}{repository}/"),
      m("r", ["a"], "s3://bkt/"),
    );
    assert.deepEqual(met, { outer: "s3://bkt/", inner: "s3://bkt/xr/", outerIs: "b" });
    assert.equal(
      destinationsMeet(m("r", ["*"], "s3://bkt/x{branch}/"), m("q", ["q"], "s3://bkt/x/")),
      undefined,
    );
  });
});

/** One character of a template's prefix: what S3 keys hold, hostile ones included. */
const literalChar = fc.constantFrom("a", "b", "-", "_", "/", "%", "+", " ", ".", "é", "\u{1F600}");
const segment = fc
  .array(fc.oneof(literalChar, fc.constant("{branch}"), fc.constant("{repository}")), {
    minLength: 1,
    maxLength: 4,
  })
  .map((parts) => parts.join(""))
  .filter((s) => !s.startsWith("/") && !s.includes("//"));
const template = fc
  .array(segment, { minLength: 0, maxLength: 3 })
  .map((segs) => `s3://bkt/${segs.map((s) => (s.endsWith("/") ? s : `${s}/`)).join("")}`);
const glob = fc
  .array(fc.constantFrom("a", "b", "-", "*", "?", "."), { minLength: 1, maxLength: 3 })
  .map((c) => c.join(""));
const mirror = fc.record({
  repository: fc.constantFrom("r", "ra", "a-b"),
  branches: fc.array(glob, { minLength: 1, maxLength: 2 }),
  destination: template,
});

/** Every branch name over {a, b, -} of up to three characters that the globs match. */
function branchesOf(globs: string[]): string[] {
  const names: string[] = [];
  const grow = (s: string) => {
    if (s) names.push(s);
    if (s.length < 3) for (const c of ["a", "b", "-"]) grow(s + c);
  };
  grow("");
  const res = globs.map(
    (g) =>
      new RegExp(
        `^${g
          .replace(/[.+^${}()|[\]\\-]/g, "\\$&")
          .replaceAll("*", ".*")
          .replaceAll("?", ".")}$`,
      ),
  );
  return names.filter((n) => res.some((r) => r.test(n)));
}

function resolve(spec: { repository: string; destination: string }, branch: string): string {
  return templateOf(
    spec.destination.replaceAll("{repository}", spec.repository).replaceAll("{branch}", branch),
  );
}

/** Whether `s` is a resolution of the mirror (exact when {branch} occurs at most once). */
function resolvesTo(
  spec: { repository: string; branches: string[]; destination: string },
  s: string,
): boolean {
  const t = templateOf(spec.destination).replaceAll("{repository}", spec.repository);
  const parts = t.split("{branch}").map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const re = new RegExp(`^${parts.join("([A-Za-z0-9_-]+)")}$`, "u");
  const match = re.exec(s);
  if (!match) return false;
  if (parts.length === 1) return true;
  const branch = match[1]!;
  const globRes = spec.branches.map(
    (g) =>
      new RegExp(
        `^${g
          .replace(/[.+^${}()|[\]\\-]/g, "\\$&")
          .replaceAll("*", ".*")
          .replaceAll("?", ".")}$`,
      ),
  );
  return globRes.some((r) => r.test(branch));
}

describe("property: template overlap against every short branch name", () => {
  it("finds every pair of short branch names whose destinations are equal or nested, and each witness it gives is real", () => {
    fc.assert(
      fc.property(mirror, mirror, (a, b) => {
        const met = destinationsMeet(
          { repository: a.repository, branches: a.branches, template: templateOf(a.destination) },
          { repository: b.repository, branches: b.branches, template: templateOf(b.destination) },
        );
        // Sound: a collision among short names is always found.
        const fixedA = !a.destination.includes("{branch}");
        const fixedB = !b.destination.includes("{branch}");
        const namesA = fixedA ? branchesOf(a.branches).slice(0, 1) : branchesOf(a.branches);
        const namesB = fixedB ? branchesOf(b.branches).slice(0, 1) : branchesOf(b.branches);
        for (const x of namesA)
          for (const y of namesB) {
            const [da, db] = [resolve(a, x), resolve(b, y)];
            if (da.startsWith(db) || db.startsWith(da))
              assert.ok(
                met,
                `${a.destination} with ${x} and ${b.destination} with ${y} meet at ${da} / ${db}`,
              );
          }
        if (!met) return;
        const [outer, inner] = met.outerIs === "a" ? [a, b] : [b, a];
        assert.ok(met.inner.startsWith(met.outer), JSON.stringify(met));
        // Exact where {branch} occurs at most once: the witnesses are destinations of the mirrors.
        const once = (d: string) => d.split("{branch}").length <= 2;
        if (once(outer.destination) && once(inner.destination)) {
          assert.ok(
            resolvesTo(outer, met.outer),
            `${met.outer} is not a destination of ${outer.destination}`,
          );
          assert.ok(
            resolvesTo(inner, met.inner),
            `${met.inner} is not a destination of ${inner.destination}`,
          );
        }
      }),
      { numRuns: 2000 },
    );
  });
});

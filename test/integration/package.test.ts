import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { assertMirrorEqual, commitObjects, listKeys, statusKeys } from "../helpers/mirror.ts";
import { connectStack, createBucket, createRepo } from "../helpers/stack.ts";
import type { Stack } from "../helpers/stack.ts";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../..", import.meta.url));

/** The TypeScript code blocks of the README's "Use it as a library" section, in order. */
function readmeExamples(): string[] {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const start = readme.indexOf("## Use it as a library");
  const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
  return [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

describe("the published package", () => {
  let stack: Stack;
  let project: string;
  let tarball: string;
  before(async () => {
    stack = await connectStack();
    project = mkdtempSync(join(tmpdir(), "lakefs-mirror-consumer-"));
    // What `npm publish` would upload: built by the package's prepare script.
    const packed = await run("npm", ["pack", "--json", "--pack-destination", project], {
      cwd: root,
      maxBuffer: 16 << 20,
    });
    const info = (
      JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[]
    )[0]!;
    tarball = join(project, info.filename);
    const files = info.files.map((f) => f.path);
    console.log(
      `tarball ${info.filename}: ${statSync(tarball).size} bytes, ${files.length} files: ${files.join(" ")}`,
    );
    writeFileSync(
      join(project, "package.json"),
      JSON.stringify({ name: "consumer", private: true, type: "module" }),
    );
    await run(
      "npm",
      ["install", "--no-audit", "--no-fund", "--prefer-offline", "--ignore-scripts", tarball],
      { cwd: project, maxBuffer: 16 << 20, timeout: 10 * 60_000 },
    );
  });
  after(async () => {
    await stack.close();
    rmSync(project, { recursive: true, force: true });
  });

  it("ships the build and its declarations, no sources, tests or maps", () => {
    const listing = readFileSync(tarball);
    assert.ok(listing.length > 0);
    const pkg = JSON.parse(
      readFileSync(join(project, "node_modules/lakefs-mirror/package.json"), "utf8"),
    ) as { exports: Record<string, unknown> };
    assert.deepEqual(Object.keys(pkg.exports), [".", "./package.json"]);
    for (const f of ["dist/index.js", "dist/index.d.ts", "dist/cli/bin.js", "config/default.json"])
      assert.ok(statSync(join(project, "node_modules/lakefs-mirror", f)).isFile(), f);
  });

  it("a JavaScript project imports the public surface, and nothing internal", async () => {
    writeFileSync(
      join(project, "surface.mjs"),
      [
        'const api = await import("lakefs-mirror");',
        "console.log(JSON.stringify(Object.keys(api).sort()));",
        "try {",
        '  await import("lakefs-mirror/dist/daemon/daemon.js");',
        '  console.log("internal reachable");',
        "} catch (err) {",
        "  console.log(err.code);",
        "}",
      ].join("\n"),
    );
    const out = (await run(process.execPath, ["surface.mjs"], { cwd: project })).stdout;
    const [names, internal] = out.trim().split("\n");
    console.log(`public names: ${names}`);
    const exported = JSON.parse(names!) as string[];
    for (const name of ["Exporter", "LakefsClient", "S3Destination", "MirrorError", "roundPresets"])
      assert.ok(exported.includes(name), name);
    assert.ok(!exported.includes("Daemon") && !exported.includes("ExportRun"));
    assert.equal(internal, "ERR_PACKAGE_PATH_NOT_EXPORTED");
  });

  it("the README's library examples compile against the package and run, one per mode", async () => {
    const repo = await createRepo(stack, "library");
    const bucket = await createBucket(stack);
    const c1 = await commitObjects(stack, repo, "main", [
      { path: "t/part-0.parquet", content: "data 0" },
      { path: "t/_delta_log/00000000000000000000.json", content: "{}" },
      { path: "old.txt", content: "old" },
    ]);
    const c2 = await commitObjects(
      stack,
      repo,
      "main",
      [
        { path: "t/part-1.parquet", content: "data 1" },
        { path: "t/part-1.idx", content: "index" },
      ],
      ["old.txt"],
    );
    const examples = readmeExamples();
    assert.equal(examples.length, 4, "one example per mode");
    const names = examples.map((code, i) => {
      const name = `example-${i + 1}.ts`;
      writeFileSync(
        join(project, name),
        code
          .replaceAll("example-repo", repo)
          .replaceAll("example-bucket", bucket)
          .replaceAll("<previous commit ID>", c1)
          .replaceAll("<commit ID>", c2),
      );
      return name;
    });
    writeFileSync(
      join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          outDir: "out",
          types: ["node"],
          typeRoots: [join(root, "node_modules/@types")],
        },
        files: names,
      }),
    );
    // No skipLibCheck: the shipped declarations themselves must type-check.
    const tsc = join(root, "node_modules/typescript/bin/tsc");
    const compiled = await run(process.execPath, [tsc, "-p", project]).catch(
      (err: Error & { stdout?: string }) => {
        throw new Error(`the examples do not compile:\n${err.stdout ?? err.message}`);
      },
    );
    assert.equal(compiled.stdout, "");
    const env = { ...process.env, ...stack.env };
    const outputs: string[] = [];
    for (const name of names) {
      const res = await run(process.execPath, [join("out", name.replace(/\.ts$/, ".js"))], {
        cwd: project,
        env,
      });
      outputs.push(res.stdout.trim());
    }
    assert.match(outputs[0]!, /^SUCCESS: 4 objects, status file branch\/EXPORT_/);
    assert.match(outputs[1]!, /^SUCCESS \[\]$/);
    assert.match(outputs[2]!, /^SUCCESS 2 copied, 1 deleted$/);
    assert.match(outputs[3]!, /^SUCCESS 4 unchanged, 0 copied, 0 deleted$/);
    await assertMirrorEqual(stack, repo, c2, bucket, "branch/");
    await assertMirrorEqual(stack, repo, c2, bucket, "commit/");
    const diffKeys = [...(await listKeys(stack, bucket, "diff/")).keys()];
    assert.deepEqual(diffKeys.filter((k) => statusKeys([k]).length === 0).sort(), [
      "t/part-1.idx",
      "t/part-1.parquet",
    ]);
  });
});

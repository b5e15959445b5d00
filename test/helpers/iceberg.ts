import { execFile } from "node:child_process";
import { buffer } from "node:stream/consumers";
import { fileURLToPath } from "node:url";
import { HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { PathMapper, planIcebergRewrite, rewriteIcebergFile } from "../../src/iceberg/index.ts";
import type { IcebergPlan } from "../../src/iceberg/index.ts";
import type { Stack } from "./stack.ts";

const script = fileURLToPath(new URL("./iceberg_tables.py", import.meta.url));

/** Runs a command of test/helpers/iceberg_tables.py with the stack's Python (pyiceberg). */
export async function icebergPy<T>(stack: Stack, command: string, request: unknown): Promise<T> {
  const python = (stack.env as unknown as Record<string, string | undefined>)["ICEBERG_PYTHON"];
  if (!python) throw new Error("test/stack/up printed no ICEBERG_PYTHON");
  return new Promise<T>((resolve, reject) => {
    const child = execFile(
      python,
      [script, command],
      { maxBuffer: 64 << 20, timeout: 300_000 },
      (err, stdout, stderr) => {
        if (err)
          reject(new Error(`iceberg_tables.py ${command} failed: ${err.message}\n${stderr}`));
        else resolve(JSON.parse(stdout) as T);
      },
    );
    child.stdin!.end(JSON.stringify(request));
  });
}

/** The S3 endpoint and keys of the lakeFS gateway and of MinIO, as the Python side takes them. */
export function s3Of(stack: Stack, which: "gateway" | "minio"): Record<string, string> {
  return which === "gateway"
    ? {
        endpoint: stack.env.LAKEFS_ENDPOINT,
        key: stack.env.LAKEFS_ACCESS_KEY_ID,
        secret: stack.env.LAKEFS_SECRET_ACCESS_KEY,
      }
    : {
        endpoint: stack.env.AWS_ENDPOINT_URL,
        key: stack.env.AWS_ACCESS_KEY_ID,
        secret: stack.env.AWS_SECRET_ACCESS_KEY,
      };
}

export interface MirroredTable {
  plan: IcebergPlan;
  /** Key order of the writes, for the ordering assertions. */
  order: string[];
  /** Repository path → size written at the mirror. */
  sizes: Map<string, number>;
}

/**
 * Mirrors every object of `commit` to `s3://<bucket>/<prefix><path>` the way the exporter is
 * to do it with the library: plain files first, then the plan's stages in order, each
 * rewritten file's size fed to the files that record it, and sizes of files from earlier
 * exports read from the mirror.
 */
export async function mirrorWithRewrite(
  stack: Stack,
  repo: string,
  commit: string,
  bucket: string,
  prefix: string,
  only?: (path: string) => boolean,
): Promise<MirroredTable> {
  const mapper = new PathMapper({ repository: repo, destinationRoot: `s3://${bucket}/${prefix}` });
  const paths: string[] = [];
  for await (const page of stack.lakefs.listObjects(repo, commit)) {
    for (const o of page) if (!only || only(o.path)) paths.push(o.path);
  }
  const read = async (path: string): Promise<Uint8Array> =>
    buffer((await stack.lakefs.getObject(repo, commit, path)).body);
  const plan = await planIcebergRewrite(paths, mapper, read);
  if (plan.failures.length > 0) throw plan.failures[0]!;
  const order: string[] = [];
  const sizes = new Map<string, number>();
  const put = async (path: string, body: Uint8Array): Promise<void> => {
    await stack.s3.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + path, Body: body }));
    order.push(path);
    sizes.set(path, body.length);
  };
  const staged = new Set(plan.stages.flatMap((s) => s.paths));
  for (const path of paths) if (!staged.has(path)) await put(path, await read(path));
  for (const stage of plan.stages) {
    for (const path of stage.paths) {
      const kind = plan.kinds.get(path);
      if (!kind) {
        await put(path, await read(path));
        continue;
      }
      const out = await rewriteIcebergFile(kind, path, await read(path), mapper, async (f) => {
        const known = sizes.get(f.path);
        if (known !== undefined) return known;
        const head = await stack.s3.send(
          new HeadObjectCommand({ Bucket: bucket, Key: prefix + f.path }),
        );
        return head.ContentLength;
      });
      await put(path, out.bytes);
    }
  }
  return { plan, order, sizes };
}

/** Runs test/iceberg-java (Iceberg's own Java libraries) built by test/stack/install. */
export async function icebergJava<T>(stack: Stack, args: string[]): Promise<T> {
  const cp = (stack.env as unknown as Record<string, string | undefined>)["ICEBERG_JAVA_CP"];
  if (!cp) throw new Error("test/stack/up printed no ICEBERG_JAVA_CP");
  return new Promise<T>((resolve, reject) => {
    execFile(
      "java",
      ["-Xmx512m", "-cp", cp, "lakefsmirror.IcebergTables", ...args],
      { maxBuffer: 64 << 20, timeout: 300_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`IcebergTables ${args[0]} failed: ${err.message}\n${stderr}`));
        else resolve(JSON.parse(stdout) as T);
      },
    );
  });
}

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { LakefsNotFoundError } from "../../../src/errors.ts";
import type { ObjectCopier } from "../../../src/export/copier.ts";
import { ExportRun } from "../../../src/export/export-run.ts";
import type { RunOutcome } from "../../../src/export/export-run.ts";
import type { Rounds } from "../../../src/export/rounds.ts";
import type { ExportTask } from "../../../src/export/task.ts";
import type { LakefsClient } from "../../../src/lakefs/client.ts";
import type { ObjectStats } from "../../../src/lakefs/types.ts";
import type { FailedPath } from "../../../src/ledger/ledger.ts";
import type { Destination } from "../../../src/destination/destination.ts";

/** One write request as the destination saw it: when it started, and when it settled. */
export interface WriteEvent {
  at: "start" | "end";
  op: "copy" | "delete";
  path: string;
  ok: boolean;
}

export const stats = (path: string): ObjectStats => ({
  path,
  path_type: "object",
  physical_address: `s3://source/${path}`,
  checksum: "0cc175b9c0f1b6a831c399e269772661",
  size_bytes: 1,
  mtime: 1,
});

/** A few turns of the event loop, different per path, so that writes settle out of order. */
async function jitter(path: string): Promise<void> {
  let h = 0;
  for (const c of path) h = (h * 31 + (c.codePointAt(0) ?? 0)) >>> 0;
  for (let i = 0; i < h % 7; i++) await new Promise((r) => setImmediate(r));
}

/**
 * Recording stubs, not fake servers: an ExportRun's copier, destination and lakeFS reads,
 * which only write down, in order, when each copy and delete starts and settles, and fail
 * the paths they are told to fail. They serve the properties of the order in which a run
 * issues its writes; what S3 and lakeFS do is tested on the real stack.
 */
export class RecordingStubs {
  readonly events: WriteEvent[] = [];
  /** Called as each write starts (a test looks at the spill directory then, say). */
  onStart: ((e: WriteEvent) => void) | undefined;
  readonly statusFiles: string[] = [];

  readonly failing: ReadonlySet<string>;
  /** Paths lakeFS no longer has at the commit (a retried `sync` of them deletes). */
  readonly gone: ReadonlySet<string>;

  constructor(failing: ReadonlySet<string> = new Set(), gone: ReadonlySet<string> = new Set()) {
    this.failing = failing;
    this.gone = gone;
  }

  #start(e: WriteEvent): void {
    this.events.push(e);
    this.onStart?.(e);
  }

  readonly copier = {
    copy: async (_commit: string, s: ObjectStats) => {
      this.#start({ at: "start", op: "copy", path: s.path, ok: true });
      await jitter(s.path);
      const ok = !this.failing.has(s.path);
      this.events.push({ at: "end", op: "copy", path: s.path, ok });
      if (!ok) throw new Error(`injected refusal of ${s.path}`);
      return { method: "server-side" as const, bytes: 1 };
    },
  } as unknown as ObjectCopier;

  readonly destination = {
    capabilities: { maxDeleteBatch: 1000 },
    key: (p: string) => p,
    head: () => Promise.resolve(undefined),
    putText: (key: string) => {
      this.statusFiles.push(key);
      return Promise.resolve();
    },
    deleteBatch: async (paths: string[]) => {
      for (const path of paths) this.#start({ at: "start", op: "delete", path, ok: true });
      await jitter(paths[0] ?? "");
      const refused = [];
      for (const path of paths) {
        const ok = !this.failing.has(path);
        this.events.push({ at: "end", op: "delete", path, ok });
        if (!ok) refused.push({ path, error: new Error(`injected refusal of ${path}`) });
      }
      return refused;
    },
  } as unknown as Destination;

  readonly lakefs = {
    statObject: (_repo: string, _commit: string, path: string) =>
      this.gone.has(path)
        ? Promise.reject(new LakefsNotFoundError(`${path} is not in the commit`, "object"))
        : Promise.resolve(stats(path)),
  } as unknown as LakefsClient;

  /** Runs `tasks` through an ExportRun wired to these stubs. */
  run(
    tasks: ExportTask[],
    options: {
      rounds: Rounds;
      deletesLast?: boolean;
      carry?: FailedPath[];
      concurrency?: number;
      deferredInMemory?: number;
      spillDirectory?: string;
      fence?: () => void;
      signal?: AbortSignal;
    },
  ): Promise<RunOutcome> {
    return new ExportRun(
      {
        lakefs: this.lakefs,
        repository: "repo",
        destination: this.destination,
        copier: this.copier,
        rounds: options.rounds,
        deletesLast: options.deletesLast,
        concurrency: options.concurrency ?? 4,
        deferredInMemory: options.deferredInMemory,
        spillDirectory: options.spillDirectory,
        logger: pino({ level: "silent" }),
        retry: { retries: 0 },
        fence: options.fence,
      },
      "c0ffee",
      options.carry ?? [],
      options.signal,
    ).run({
      [Symbol.asyncIterator]: () => {
        const it = tasks[Symbol.iterator]();
        return { next: () => Promise.resolve(it.next()) };
      },
    });
  }
}

export const spillDir = () => mkdtempSync(join(tmpdir(), "lakefs-mirror-rounds-test-"));

import { createReadStream } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MirrorError, errorMessage } from "../errors.ts";
import { compareUtf8 } from "./order.ts";
import { comparePositions } from "./rounds.ts";
import type { Position } from "./rounds.ts";
import type { ExportTask } from "./task.ts";

export interface DeferredEntry {
  position: Position;
  task: ExportTask;
}

export interface DeferredOptions {
  /** Entries held in memory; beyond this, sorted runs are written to files. */
  inMemory: number;
  /** Where the run files go (a new directory inside it per export); default: the OS's. */
  directory?: string | undefined;
}

/** Runs merged into one at a time, so open files stay few whatever the number of entries. */
const FAN_IN = 16;
/** Bytes handed to one write of a run file. */
const WRITE_CHUNK = 1 << 20;

export const compareEntries = (a: DeferredEntry, b: DeferredEntry): number =>
  comparePositions(a.position, b.position) || compareUtf8(a.task.path, b.task.path);

/** An entry with the order it was added in, which breaks ties, spilled or not. */
interface Numbered extends DeferredEntry {
  seq: number;
}

const compareNumbered = (a: Numbered, b: Numbered): number => compareEntries(a, b) || a.seq - b.seq;

/**
 * The tasks of an export that wait for later rounds (table metadata, `_SUCCESS` markers, and
 * with deletes last every delete), given back in (position, path) order. A VACUUM, a hard
 * reset or a reconcile can defer millions of them, so memory is bounded: past `inMemory`
 * entries the buffer is sorted and written to a file as a run, and runs are merged back, a
 * k-way merge that holds one entry per run. Runs of one size merge into a larger run FAN_IN at
 * a time (as a log-structured merge does), so each entry is rewritten O(log n) times and no
 * more than FAN_IN files of each size are open. Files, not a second pass over the source: the
 * task stream cannot be read twice (a diff merged with retries, a destination listing that
 * the export's own writes change). close() removes every file, whatever ended the export.
 */
export class DeferredTasks {
  readonly #inMemory: number;
  readonly #directory: string;
  #dir: string | undefined;
  #buffer: Numbered[] = [];
  /** Run files by level: a level-n run holds about inMemory × FAN_IN^n entries. */
  readonly #levels: string[][] = [];
  #files = 0;
  #size = 0;
  #closed = false;

  constructor(options: DeferredOptions) {
    if (!Number.isInteger(options.inMemory) || options.inMemory < 1)
      throw new TypeError(`deferred tasks in memory must be >= 1, got ${options.inMemory}`);
    this.#inMemory = options.inMemory;
    this.#directory = options.directory || tmpdir();
  }

  /** Entries added so far. */
  get size(): number {
    return this.#size;
  }

  /** Whether any entry went to a file. */
  get spilled(): boolean {
    return this.#files > 0;
  }

  /** The directory of this store's files, once it has one. */
  get directory(): string | undefined {
    return this.#dir;
  }

  async add(position: Position, task: ExportTask): Promise<void> {
    if (this.#closed) throw new TypeError("deferred tasks added after close");
    this.#buffer.push({ position, task, seq: this.#size++ });
    if (this.#buffer.length >= this.#inMemory) await this.#spill();
  }

  /** Every entry, in (position, path) order; read once, after the last add. */
  async *drain(): AsyncGenerator<DeferredEntry> {
    const memory = this.#buffer.sort(compareNumbered);
    this.#buffer = [];
    const files = this.#levels.flat();
    const entries =
      files.length === 0 ? toAsync(memory) : merge([...files.map(readRun), toAsync(memory)]);
    for await (const { position, task } of entries) yield { position, task };
  }

  /** Removes the store's files; idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#buffer = [];
    const dir = this.#dir;
    this.#dir = undefined;
    if (dir) await rm(dir, { recursive: true, force: true });
  }

  async #spill(): Promise<void> {
    const sorted = this.#buffer.sort(compareNumbered);
    this.#buffer = [];
    await this.#push(0, await this.#write(toAsync(sorted)));
  }

  async #push(level: number, file: string): Promise<void> {
    const runs = (this.#levels[level] ??= []);
    runs.push(file);
    if (runs.length < FAN_IN) return;
    this.#levels[level] = [];
    const merged = await this.#write(merge(runs.map((f) => readRun(f))));
    await Promise.all(runs.map((f) => rm(f, { force: true })));
    await this.#push(level + 1, merged);
  }

  async #write(entries: AsyncIterable<Numbered>): Promise<string> {
    try {
      this.#dir ??= await mkdtemp(join(this.#directory, "lakefs-mirror-deferred-"));
      const file = join(this.#dir, `run-${this.#files++}.jsonl`);
      const handle = await open(file, "wx");
      try {
        let chunk = "";
        for await (const e of entries) {
          chunk += encode(e);
          if (chunk.length >= WRITE_CHUNK) {
            await handle.write(chunk);
            chunk = "";
          }
        }
        if (chunk) await handle.write(chunk);
      } finally {
        await handle.close();
      }
      return file;
    } catch (err) {
      throw new MirrorError(
        `could not write deferred export tasks under ${this.#directory} (export.spillDirectory): ${errorMessage(err)}`,
        { cause: err },
      );
    }
  }
}

/**
 * One line of JSON per entry. JSON escapes every line break inside strings, so a path with a
 * newline stays on its line; a version goes as a decimal string, since JSON has no bigint.
 */
function encode({ position: p, task, seq }: Numbered): string {
  const round = p.round === Number.POSITIVE_INFINITY ? -1 : p.round;
  return `${JSON.stringify([round, p.version?.toString() ?? null, p.step, seq, task])}\n`;
}

function decode(line: string): Numbered {
  const [round, version, step, seq, task] = JSON.parse(line) as [
    number,
    string | null,
    number,
    number,
    ExportTask,
  ];
  return {
    seq,
    position: {
      round: round === -1 ? Number.POSITIVE_INFINITY : round,
      version: version === null ? undefined : BigInt(version),
      step,
    },
    task,
  };
}

async function* readRun(file: string): AsyncGenerator<Numbered> {
  let rest = "";
  for await (const chunk of createReadStream(file, { encoding: "utf8" })) {
    const lines = (rest + (chunk as string)).split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) yield decode(line);
  }
  if (rest) yield decode(rest);
}

function toAsync<T>(items: T[]): AsyncIterableIterator<T> {
  // Entries leave the array as they are given out, so a drained buffer frees as it goes.
  let i = 0;
  const it: AsyncIterableIterator<T> = {
    next: () => {
      if (i >= items.length) return Promise.resolve({ done: true, value: undefined });
      const value = items[i]!;
      (items as (T | undefined)[])[i++] = undefined;
      return Promise.resolve({ done: false, value });
    },
    [Symbol.asyncIterator]: () => it,
  };
  return it;
}

/** Merges sorted streams of entries into one sorted stream (a binary heap of stream heads). */
async function* merge(sources: AsyncIterator<Numbered>[]): AsyncGenerator<Numbered> {
  type Head = { entry: Numbered; source: AsyncIterator<Numbered> };
  const heap: Head[] = [];
  const less = (i: number, j: number) => compareNumbered(heap[i]!.entry, heap[j]!.entry) < 0;
  const swap = (i: number, j: number) => ([heap[i], heap[j]] = [heap[j]!, heap[i]!]);
  const up = (i: number) => {
    while (i > 0 && less(i, (i - 1) >> 1)) {
      swap(i, (i - 1) >> 1);
      i = (i - 1) >> 1;
    }
  };
  const down = (i: number) => {
    for (;;) {
      let m = i;
      for (const c of [2 * i + 1, 2 * i + 2]) if (c < heap.length && less(c, m)) m = c;
      if (m === i) return;
      swap(i, m);
      i = m;
    }
  };
  try {
    for (const source of sources) {
      const r = await source.next();
      if (!r.done) {
        heap.push({ entry: r.value, source });
        up(heap.length - 1);
      }
    }
    while (heap.length > 0) {
      const top = heap[0]!;
      yield top.entry;
      const r = await top.source.next();
      if (r.done) {
        const last = heap.pop()!;
        if (heap.length === 0) break;
        heap[0] = last;
      } else top.entry = r.value;
      down(0);
    }
  } finally {
    // A consumer that stops early (an abort, a failed round) closes the files it left open.
    await Promise.all(
      sources.map(async (s) => {
        await s.return?.();
      }),
    );
  }
}

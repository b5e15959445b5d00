import type { Prng } from "../helpers/crash.ts";

/**
 * Hostile names for lakeFS objects: non-padded numbers (`frames/9` sorts after `frames/10`),
 * names that are string prefixes of one another (`ab`, `ab c`, `abc`), unicode including
 * astral code points, spaces, `%`, `+`, leading dots and `_SUCCESS` markers of the Spark
 * rounds. Two things are never generated:
 * - a key that is a directory of another (`x` beside `x/y`): AWS S3 allows both, but MinIO
 *   keeps objects as directories and then lists only one of them, so a mirror of such a pair
 *   cannot be checked on this stack;
 * - `~`: it marks foreign keys (see `foreignName`), which lakeFS must never have.
 * lakefs-mirror's reserved names (`_lakefs_mirror/`, `EXPORT_…_SUCCESS`) are not generated
 * either: such objects are refused by design, and an export carrying one never succeeds.
 */

export const FRAMES_DIR = "frames/";
const FOREIGN_MARK = "~foreign~";

const dirs = [
  "",
  "data/",
  "data/sub dir/",
  "ab/",
  "ab c/",
  "ü/",
  "日本語/",
  "𝄞 music/",
  "pct%25/",
  "plus+dir/",
  ".hidden/",
  "deep/x/y/",
  "n/",
  FRAMES_DIR,
];

const stems = [
  "ab",
  "abc",
  "ab c",
  "a+b",
  "a%2Fb",
  "100%",
  "ü",
  "ß",
  "😀",
  "x y z",
  "_SUCCESS",
  ".dot",
  "part",
  "Ω≈ç",
];

const suffixes = ["", "", "", ".txt", ".json", " ", "+", "%", "-0", "𝄞"];

export const contentTypes = [
  "application/octet-stream",
  "text/plain",
  "application/json",
  "image/png",
  "text/csv; charset=utf-8",
];

/** Keeps the set of every path ever written, so that no two are object and directory. */
export class PathSpace {
  readonly #paths = new Set<string>();
  readonly #dirs = new Set<string>();
  #frames = 0;

  /** Records a path; false when it clashes with one already known as object or directory. */
  claim(path: string): boolean {
    if (this.#paths.has(path)) return true;
    if (this.#dirs.has(path)) return false;
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      if (this.#paths.has(parts.slice(0, i).join("/"))) return false;
    }
    for (let i = 1; i < parts.length; i++) this.#dirs.add(parts.slice(0, i).join("/"));
    this.#paths.add(path);
    return true;
  }

  /** `frames/1` … `frames/n`, no padding. */
  frames(n: number): string[] {
    const out: string[] = [];
    for (let i = 1; i <= n; i++) out.push(this.frame(i));
    this.#frames = Math.max(this.#frames, n);
    return out;
  }

  frame(i: number): string {
    const p = `${FRAMES_DIR}${i}`;
    this.claim(p);
    return p;
  }

  /** A new frame number past the highest. */
  nextFrame(): string {
    return this.frame(++this.#frames);
  }

  /** A hostile path, not used before. */
  fresh(rng: Prng): string {
    for (;;) {
      const dir = rng.pick(dirs);
      let name: string;
      if (dir === FRAMES_DIR) return this.nextFrame();
      if (rng.next() < 0.3) {
        // Non-padded numbers: 9, 10, 100 sort as text, not as numbers.
        name = String(rng.int(0, rng.next() < 0.5 ? 12 : 3000));
      } else {
        name = rng.pick(stems);
      }
      const path = `${dir}${name}${rng.pick(suffixes)}`;
      if (this.claim(path)) return path;
    }
  }
}

/**
 * A foreign key's name: never a lakeFS path (the mark has `~`), some sorting early, some late.
 * Its directories are claimed, so that no lakeFS object is ever named like one of them.
 */
export function foreignName(rng: Prng, n: number, late: boolean, space: PathSpace): string {
  const early = ["!", "0", ".hidden/", "ab", "data/", FRAMES_DIR];
  const after = ["~", "zz", "ü/", "日本語/", "𝄞 music/"];
  for (;;) {
    const at = rng.pick(late ? after : [...early, ...after]);
    const name = `${at}${FOREIGN_MARK}${n}${rng.pick(["", ".bin", " x", "+%"])}`;
    if (space.claim(name)) return name;
  }
}

export function isForeign(key: string): boolean {
  return key.includes(FOREIGN_MARK);
}

/** User metadata the way boto3 sends it: lower-case names, printable ASCII values. */
export function metadataFor(rng: Prng): Record<string, string> {
  const out: Record<string, string> = {};
  const n = rng.int(0, 2);
  for (let i = 0; i < n; i++) {
    out[rng.pick(["owner", "run", "x-tag", "n", "source-file"])] = rng.pick([
      String(rng.int(0, 99999)),
      "a b",
      "100%",
      "x+y=z",
      "v" + String(rng.int(0, 9)),
    ]);
  }
  return out;
}

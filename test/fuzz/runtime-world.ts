import { PutObjectCommand } from "@aws-sdk/client-s3";
import { TaskPool } from "../../src/export/pool.ts";
import type { Prng } from "../helpers/crash.ts";
import type { Stack } from "../helpers/stack.ts";
import { Expected } from "./oracle.ts";
import { PathSpace, contentTypes, foreignName, metadataFor } from "./paths.ts";
import type { HeadSpan } from "./world.ts";
import { short } from "./world.ts";

/**
 * The lakeFS side of the runtime fuzz: several repositories, each with a `live` branch and
 * branches that come and go, some matching the mirrors' globs (`feat-*`) and some not
 * (`tmp-*`). Every branch name keeps one timeline across its lives (created, deleted, created
 * again), since a lane is named by its branch and an event of an earlier life may arrive late.
 */

export const LIVE = "live";
/** The branch globs of every mirror. */
export const GLOBS = [LIVE, "feat-*"];
/** Branch names are drawn from small sets, so that deleted names come back. */
const FEATURES = 4;
const OTHERS = 2;

export function mirrored(branch: string): boolean {
  return branch === LIVE || /^feat-/.test(branch);
}

/** One branch name of one repository over all its lives. */
export class BranchModel {
  readonly repo: string;
  readonly name: string;
  readonly mirrored: boolean;
  readonly timeline: HeadSpan[] = [];
  /** Paths written after the repository's first commit (shared by its branches). */
  readonly touched: Set<string>;

  constructor(repo: string, name: string, touched: Set<string>) {
    this.repo = repo;
    this.name = name;
    this.mirrored = mirrored(name);
    this.touched = touched;
  }

  get head(): string | null {
    return this.timeline.at(-1)?.commit ?? null;
  }

  get key(): string {
    return `${this.repo}/${this.name}`;
  }

  /** Commits that were HEAD at any time from `t` on. */
  headsSince(t: number): string[] {
    const out = new Set<string>();
    for (const s of this.timeline)
      if (s.commit && (s.to === undefined || s.to >= t)) out.add(s.commit);
    return [...out];
  }

  /** When `commit` first became HEAD (as early as the request that made it began). */
  firstHead(commit: string): number | undefined {
    return this.timeline.find((s) => s.commit === commit)?.from;
  }

  /**
   * Whether `later` is `commit` or newer on this branch: HEAD at some moment since `commit`
   * first was (a lane that exports whatever HEAD it reads after an event covers that event).
   */
  atOrAfter(later: string, commit: string): boolean {
    const since = this.firstHead(commit);
    if (since === undefined) return false;
    return this.timeline.some((s) => s.commit === later && (s.to === undefined || s.to >= since));
  }

  /** Whether the branch was deleted after `commit` first was HEAD, and before `until`. */
  deletedAfter(commit: string, until: number): boolean {
    const since = this.firstHead(commit);
    if (since === undefined) return false;
    return this.timeline.some((s) => s.commit === null && s.from >= since && s.from <= until);
  }

  record(commit: string | null, from: number): void {
    const last = this.timeline.at(-1);
    if (last) last.to = Date.now();
    this.timeline.push({ commit, from, to: undefined });
  }
}

export class RepoModel {
  readonly name: string;
  readonly expected: Expected;
  readonly paths = new PathSpace();
  readonly touched = new Set<string>();
  readonly branches = new Map<string, BranchModel>();

  constructor(stack: Stack, name: string) {
    this.name = name;
    this.expected = new Expected(stack, name);
  }

  branch(name: string): BranchModel {
    let b = this.branches.get(name);
    if (!b) {
      b = new BranchModel(this.name, name, this.touched);
      this.branches.set(name, b);
    }
    return b;
  }

  /** Branches that exist now. */
  live(): BranchModel[] {
    return [...this.branches.values()].filter((b) => b.head !== null);
  }
}

/** What an operation did, for the op log and the event a lakeFS action would send. */
export interface Change {
  detail: string;
  repo: string;
  branch: string;
  event: { type: string; commit: string | null } | undefined;
}

export class RuntimeWorld {
  readonly repos: RepoModel[] = [];
  readonly #stack: Stack;
  #commits = 0;

  constructor(stack: Stack) {
    this.#stack = stack;
  }

  repo(name: string): RepoModel {
    const r = this.repos.find((x) => x.name === name);
    if (!r) throw new TypeError(`no repository ${name} in the model`);
    return r;
  }

  /** Every branch name ever mirrored, over all repositories. */
  mirroredBranches(): BranchModel[] {
    return this.repos.flatMap((r) => [...r.branches.values()].filter((b) => b.mirrored));
  }

  /**
   * A foreign key's name in the bucket (never a lane's): beside a lane's prefix (`feat-1 x` and
   * `feat-1.x` sort before `feat-1/`, `~` after it), in a repository's folder, or elsewhere.
   */
  foreignKey(rng: Prng, n: number): string {
    const r = rng.pick(this.repos);
    const near = `${r.name}/${rng.pick(["feat-1", "feat-2", LIVE])}${rng.pick([" ", ".", "~", "-"])}`;
    const name = foreignName(rng, n, rng.next() < 0.5, r.paths);
    return rng.pick([
      `${near}${name.replaceAll("/", "_")}`,
      `${r.name}/${name.replaceAll("/", "_")}`,
      `other/${name}`,
    ]);
  }

  /** A repository with `live` holding `frames` numbered objects and some hostile paths. */
  async addRepo(rng: Prng, name: string, frames: number, others: number): Promise<Change> {
    const r = new RepoModel(this.#stack, name);
    this.repos.push(r);
    const b = r.branch(LIVE);
    const t0 = Date.now();
    await this.#stack.lakefs.createBranch(name, LIVE, "main");
    const pool = new TaskPool(16);
    const errors: unknown[] = [];
    const put = (path: string, body: Buffer, ct?: string, md?: Record<string, string>) =>
      pool.submit(() =>
        this.#put(r, LIVE, path, body, ct, md).catch((e: unknown) => void errors.push(e)),
      );
    for (const p of r.paths.frames(frames)) await put(p, rng.bytes(rng.int(1, 40)));
    for (let i = 0; i < others; i++)
      await put(
        r.paths.fresh(rng),
        rng.bytes(rng.int(1, 200)),
        rng.pick(contentTypes),
        metadataFor(rng),
      );
    await pool.drain();
    if (errors.length) throw new AggregateError(errors, "seeding the first commit failed");
    const c = await this.#stack.lakefs.commit(name, LIVE, { message: "first" });
    b.record(c.id, t0);
    return {
      detail: `${name}/${LIVE} first commit ${short(c.id)}`,
      repo: name,
      branch: LIVE,
      event: { type: "post-commit", commit: c.id },
    };
  }

  /** A commit of `n` edits (adds, same-size edits, deletes) on an existing branch. */
  async commit(rng: Prng, r: RepoModel, b: BranchModel, n: number): Promise<Change> {
    const listing = await r.expected.listing(b.head!);
    const existing = [...listing.keys()].sort();
    const edits: string[] = [];
    const done = new Set<string>();
    for (let i = 0; i < n; i++) {
      const kind = rng.pick(["add", "add", "edit", "edit", "delete"] as const);
      const target = existing.length ? rng.pick(existing) : undefined;
      if (kind === "add" || !target || done.has(target)) {
        const path = r.paths.fresh(rng);
        r.touched.add(path);
        await this.#put(r, b.name, path, rng.bytes(rng.int(1, 200)), rng.pick(contentTypes), {
          ...metadataFor(rng),
        });
        edits.push(`add ${JSON.stringify(path)}`);
        done.add(path);
        continue;
      }
      done.add(target);
      if (kind === "delete") {
        await this.#stack.lakefs.deleteObject(r.name, b.name, target);
        edits.push(`delete ${JSON.stringify(target)}`);
      } else {
        r.touched.add(target);
        const size = listing.get(target)!.size;
        await this.#put(r, b.name, target, rng.bytes(size), rng.pick(contentTypes), {
          ...metadataFor(rng),
        });
        edits.push(`edit ${JSON.stringify(target)}`);
      }
    }
    const t0 = Date.now();
    const c = await this.#stack.lakefs.commit(r.name, b.name, {
      message: `runtime fuzz ${++this.#commits}`,
    });
    b.record(c.id, t0);
    return {
      detail: `${b.key} -> ${short(c.id)}: ${edits.join("; ")}`,
      repo: r.name,
      branch: b.name,
      event: { type: "post-commit", commit: c.id },
    };
  }

  /** A branch name that does not exist now (mirrored or not), often one that existed before. */
  freeName(rng: Prng, r: RepoModel, glob: boolean): string | undefined {
    const names = glob
      ? Array.from({ length: FEATURES }, (_, i) => `feat-${i + 1}`)
      : Array.from({ length: OTHERS }, (_, i) => `tmp-${i + 1}`);
    const free = names.filter((n) => (r.branches.get(n)?.head ?? null) === null);
    return free.length ? rng.pick(free) : undefined;
  }

  /** Creates `name` from another branch's HEAD (lakeFS's post-create-branch names that commit). */
  async createBranch(rng: Prng, r: RepoModel, name: string): Promise<Change> {
    const from = rng.pick(r.live());
    const source = from.head!;
    const b = r.branch(name);
    const t0 = Date.now();
    await this.#stack.lakefs.createBranch(r.name, name, source);
    b.record(source, t0);
    return {
      detail: `${b.key} created from ${from.name} at ${short(source)}`,
      repo: r.name,
      branch: name,
      event: { type: "post-create-branch", commit: source },
    };
  }

  async deleteBranch(r: RepoModel, b: BranchModel): Promise<Change> {
    const t0 = Date.now();
    await this.#stack.lakefs.deleteBranch(r.name, b.name);
    b.record(null, t0);
    return {
      detail: `${b.key} deleted`,
      repo: r.name,
      branch: b.name,
      event: { type: "post-delete-branch", commit: null },
    };
  }

  async #put(
    r: RepoModel,
    branch: string,
    path: string,
    body: Buffer,
    ct?: string,
    md?: Record<string, string>,
  ): Promise<void> {
    await this.#stack.gateway.send(
      new PutObjectCommand({
        Bucket: r.name,
        Key: `${branch}/${path}`,
        Body: body,
        ContentType: ct,
        Metadata: md,
      }),
    );
  }
}

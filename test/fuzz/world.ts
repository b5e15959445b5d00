import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { errorMessage } from "../../src/errors.ts";
import { TaskPool } from "../../src/export/pool.ts";
import type { Prng } from "../helpers/crash.ts";
import type { Stack } from "../helpers/stack.ts";
import type { Expected } from "./oracle.ts";
import { FRAMES_DIR, contentTypes, metadataFor } from "./paths.ts";
import type { PathSpace } from "./paths.ts";

/**
 * The lakeFS side of the fuzz: one mirrored branch (`live`) and a side branch to merge from,
 * shaped through lakeFS's API and S3 gateway as users do. It records when each commit was the
 * branch's HEAD, since the checks allow a key to be in the state of any commit that some
 * export may legitimately be writing.
 */

export const LIVE = "live";
const SIDE = "side";
const MiB = 1024 * 1024;

export interface HeadSpan {
  commit: string | null;
  /** From when lakeFS may have had it as HEAD (the request that made it began). */
  from: number;
  /** Until when it may have stayed HEAD (the request that replaced it ended). */
  to: number | undefined;
}

/** What an operation did to the branch, for the op log and the webhook. */
export interface Moved {
  detail: string;
  /** The event a lakeFS action would send, if any (a hard reset sends none). */
  event?: string;
}

type Edit = "add" | "same-size" | "meta" | "delete";

export class World {
  readonly repo: string;
  readonly #stack: Stack;
  readonly #expected: Expected;
  readonly #paths: PathSpace;
  readonly timeline: HeadSpan[] = [];
  /** Every commit that was `live`'s HEAD, oldest first. */
  readonly history: string[] = [];
  /** Paths written after the first commit: their metadata is checked on every look. */
  readonly touched = new Set<string>();
  #commits = 0;

  constructor(stack: Stack, repo: string, expected: Expected, paths: PathSpace) {
    this.#stack = stack;
    this.repo = repo;
    this.#expected = expected;
    this.#paths = paths;
  }

  get head(): string | null {
    return this.timeline.at(-1)?.commit ?? null;
  }

  /** Commits that were HEAD at any time from `t` on. */
  headsSince(t: number): string[] {
    const out = new Set<string>();
    for (const s of this.timeline)
      if (s.commit && (s.to === undefined || s.to >= t)) out.add(s.commit);
    return [...out];
  }

  /** Creates `live` with the first commit: `frames` numbered objects and some hostile paths. */
  async setup(rng: Prng, frames: number, others: number): Promise<Moved> {
    const t0 = Date.now();
    await this.#stack.lakefs.createBranch(this.repo, LIVE, "main");
    const pool = new TaskPool(16);
    const errors: unknown[] = [];
    const put = (path: string, body: Buffer, ct?: string, md?: Record<string, string>) =>
      pool.submit(() => this.#put(path, body, ct, md).catch((e: unknown) => void errors.push(e)));
    for (const p of this.#paths.frames(frames)) await put(p, rng.bytes(rng.int(1, 40)));
    for (let i = 0; i < others; i++)
      await put(
        this.#paths.fresh(rng),
        rng.bytes(rng.int(1, 300)),
        rng.pick(contentTypes),
        metadataFor(rng),
      );
    await pool.drain();
    if (errors.length) throw new AggregateError(errors, "seeding the first commit failed");
    const c = await this.#stack.lakefs.commit(this.repo, LIVE, { message: "first" });
    this.#record(c.id, t0);
    return {
      detail: `first commit ${short(c.id)}: ${frames} frames, ${others} others`,
      event: "post-commit",
    };
  }

  /** A commit of `n` random edits: adds, same-size edits, metadata-only edits, deletes. */
  async change(rng: Prng, n: number, large: boolean): Promise<Moved> {
    const listing = await this.#expected.listing(this.head!);
    const existing = [...listing.keys()].sort();
    const done = new Set<string>();
    const edits: string[] = [];
    for (let i = 0; i < n; i++) {
      const kind: Edit = rng.pick([
        "add",
        "add",
        "add",
        "same-size",
        "same-size",
        "meta",
        "meta",
        "delete",
      ]);
      const target = rng.pick(existing.length ? existing : [""]);
      if (kind === "add" || !target || done.has(target)) {
        const path = this.#paths.fresh(rng);
        const size = large && rng.next() < 0.5 ? 6 * MiB + rng.int(0, 1000) : rng.int(1, 300);
        await this.#put(
          path,
          rng.bytes(size),
          rng.pick(contentTypes),
          metadataFor(rng),
          rng.next() < 0.3,
        );
        edits.push(`add ${JSON.stringify(path)} (${size} B)`);
        done.add(path);
        continue;
      }
      done.add(target);
      const e = listing.get(target)!;
      if (kind === "delete") {
        await this.#stack.lakefs.deleteObject(this.repo, LIVE, target);
        edits.push(`delete ${JSON.stringify(target)}`);
      } else if (kind === "same-size") {
        const keepMeta = rng.next() < 0.5;
        const served = await this.#expected.served(this.head!, e);
        await this.#put(
          target,
          rng.bytes(e.size),
          keepMeta ? served.contentType : rng.pick(contentTypes),
          keepMeta ? served.metadata : metadataFor(rng),
        );
        edits.push(`same-size edit ${JSON.stringify(target)} (${e.size} B)`);
      } else {
        edits.push(await this.#metaOnly(rng, target));
      }
    }
    return this.#commit(`change: ${edits.join("; ")}`, "post-commit");
  }

  /**
   * Same-size edits of a short non-padded frame and 16–40 frames that sort after it: the diff's
   * copies then start with `frames/<d>`, and the commit's listing holds every frame between
   * `frames/` and it (1000 and more when the first commit had enough frames).
   */
  async burst(rng: Prng): Promise<Moved> {
    const listing = await this.#expected.listing(this.head!);
    // `frames/9` has the most frames between it and `frames/` (every 1…, 2…, … 8…).
    const d = `${FRAMES_DIR}${rng.next() < 0.6 ? 9 : rng.int(1, 9)}`;
    const after = [...listing.keys()].filter((p) => p.startsWith(FRAMES_DIR) && p > d).sort();
    const picked = [d, ...rng.sample(after, Math.min(after.length, rng.int(16, 40)))];
    for (const p of picked) {
      const e = listing.get(p);
      await this.#put(p, rng.bytes(e?.size ?? rng.int(1, 40)));
    }
    return this.#commit(`burst: ${picked.length} frames from ${JSON.stringify(d)}`, "post-commit");
  }

  async revert(rng: Prng): Promise<Moved> {
    const back =
      rng.next() < 0.6 || this.history.length < 2
        ? 0
        : rng.int(1, Math.min(4, this.history.length - 1));
    const target = this.history[this.history.length - 1 - back]!;
    return this.#move(`revert of ${short(target)}`, "post-revert", () =>
      this.#stack.lakefs.revert(this.repo, LIVE, target),
    );
  }

  async reset(rng: Prng): Promise<Moved> {
    const older = this.history.slice(-8, -1).filter((c) => c !== this.head);
    if (!older.length) return { detail: "hard reset skipped: no older commit" };
    const target = rng.pick(older);
    // lakeFS fires no hook for a hard reset: only the reconciler notices.
    return this.#move(`hard reset to ${short(target)}`, undefined, () =>
      this.#stack.lakefs.hardReset(this.repo, LIVE, target),
    );
  }

  /** A side branch from HEAD or an older commit, a commit there, merged into `live`. */
  async merge(rng: Prng): Promise<Moved> {
    const lakefs = this.#stack.lakefs;
    await lakefs.deleteBranch(this.repo, SIDE).catch(() => undefined);
    const source = rng.next() < 0.7 ? this.head! : rng.pick(this.history.slice(-6));
    await lakefs.createBranch(this.repo, SIDE, source);
    const n = rng.int(1, 4);
    for (let i = 0; i < n; i++) {
      const path = rng.next() < 0.7 ? this.#paths.fresh(rng) : `side/${rng.int(0, 40)}`;
      if (!this.#paths.claim(path)) continue;
      this.touched.add(path);
      await lakefs.uploadObject(this.repo, SIDE, path, rng.bytes(rng.int(1, 200)), {
        contentType: rng.pick(contentTypes),
        metadata: metadataFor(rng),
      });
    }
    await lakefs.commit(this.repo, SIDE, { message: "side change", allow_empty: true });
    return this.#move(`merge side (from ${short(source)})`, "post-merge", async () => {
      await lakefs.merge(this.repo, SIDE, LIVE, "merge side");
    });
  }

  async deleteBranch(): Promise<Moved> {
    const t0 = Date.now();
    await this.#stack.lakefs.deleteBranch(this.repo, LIVE);
    this.#record(null, t0);
    return { detail: "branch deleted", event: "post-delete-branch" };
  }

  async recreateBranch(rng: Prng): Promise<Moved> {
    const source = rng.pick(this.history.slice(-8));
    const t0 = Date.now();
    await this.#stack.lakefs.createBranch(this.repo, LIVE, source);
    this.#record(source, t0);
    return { detail: `branch re-created at ${short(source)}`, event: "post-create-branch" };
  }

  async #metaOnly(rng: Prng, path: string): Promise<string> {
    if (rng.next() < 0.5) {
      // The same bytes again through the gateway: a new physical address, the same checksum.
      const body = await this.#stack.gateway.send(
        new GetObjectCommand({ Bucket: this.repo, Key: `${this.head}/${path}` }),
      );
      const bytes = Buffer.from(await body.Body!.transformToByteArray());
      await this.#put(path, bytes, rng.pick(contentTypes), metadataFor(rng));
      return `metadata-only re-upload ${JSON.stringify(path)}`;
    }
    // lakeFS's user-metadata update: same physical address, new metadata.
    const md = metadataFor(rng);
    md.edit = String(rng.int(0, 1e6));
    const set: Record<string, string> = {};
    for (const [k, v] of Object.entries(md)) set[`X-Amz-Meta-${k}`] = v;
    const env = this.#stack.env;
    const auth = Buffer.from(
      `${env.LAKEFS_ACCESS_KEY_ID}:${env.LAKEFS_SECRET_ACCESS_KEY}`,
    ).toString("base64");
    const url = `${env.LAKEFS_ENDPOINT}/api/v1/repositories/${encodeURIComponent(this.repo)}/branches/${LIVE}/objects/stat/user_metadata?path=${encodeURIComponent(path)}`;
    const res = await fetch(url, {
      method: "PUT",
      headers: { authorization: `Basic ${auth}`, "content-type": "application/json" },
      body: JSON.stringify({ set }),
    });
    if (res.status !== 204 && res.status !== 200)
      throw new Error(
        `user metadata update of ${path} answered ${res.status}: ${await res.text()}`,
      );
    this.touched.add(path);
    return `metadata-only update ${JSON.stringify(path)}`;
  }

  async #put(path: string, body: Buffer, ct?: string, md?: Record<string, string>, api = false) {
    if (this.history.length) this.touched.add(path);
    if (api) {
      await this.#stack.lakefs.uploadObject(this.repo, LIVE, path, body, {
        ...(ct ? { contentType: ct } : {}),
        ...(md ? { metadata: md } : {}),
      });
      return;
    }
    await this.#stack.gateway.send(
      new PutObjectCommand({
        Bucket: this.repo,
        Key: `${LIVE}/${path}`,
        Body: body,
        ContentType: ct,
        Metadata: md,
      }),
    );
  }

  async #commit(detail: string, event: string): Promise<Moved> {
    return this.#move(detail, event, async () => {
      await this.#stack.lakefs.commit(this.repo, LIVE, { message: `fuzz ${++this.#commits}` });
    });
  }

  /** Runs a lakeFS call that may move HEAD, then records whatever HEAD is now. */
  async #move(
    detail: string,
    event: string | undefined,
    fn: () => Promise<unknown>,
  ): Promise<Moved> {
    const t0 = Date.now();
    let error: unknown;
    await fn().catch((err: unknown) => (error = err));
    const now = (await this.#stack.lakefs.getBranch(this.repo, LIVE)).commit_id;
    if (now !== this.head) this.#record(now, t0);
    if (error !== undefined) {
      const why = errorMessage(error);
      return { detail: `${detail}: refused by lakeFS (${why.slice(0, 160)})` };
    }
    return { detail: `${detail} -> ${short(now)}`, ...(event ? { event } : {}) };
  }

  #record(commit: string | null, from: number): void {
    const last = this.timeline.at(-1);
    if (last) last.to = Date.now();
    this.timeline.push({ commit, from, to: undefined });
    if (commit && this.history.at(-1) !== commit) this.history.push(commit);
  }
}

export function short(commit: string | null | undefined): string {
  return commit ? commit.slice(0, 10) : "(none)";
}

import type { Destination, ListedObject } from "../destination/destination.ts";
import { ConfigError } from "../errors.ts";
import type { ObjectStats } from "../lakefs/types.ts";
import { liveRecordLane, nestedRecordRoot, overlapError } from "../ledger/lane-records.ts";
import type { LaneName } from "../ledger/lane-records.ts";
import type { PrefixState } from "../ledger/ledger.ts";
import type { OurKey } from "./our-keys.ts";
import type { ExportTask } from "./task.ts";
import { flatten, mergeSorted } from "./order.ts";
import { RESERVED_PREFIX, isReservedPath } from "./reserved.ts";

/** The most keys a listing may delete: a count, or a share of the keys under the prefix. */
export type DeleteLimit = { count: number } | { share: number };

export const defaultDeleteLimit: DeleteLimit = { share: 0.5 };

/** `"1000"` (keys) or `"25%"` (of the keys under the prefix). */
export function parseDeleteLimit(text: string): DeleteLimit {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$/.exec(text);
  if (!m?.[1]) throw new ConfigError(`max deletes must be a count or a percentage, got "${text}"`);
  const n = Number(m[1]);
  if (m[2] === "%") {
    if (n > 100) throw new ConfigError(`max deletes cannot exceed 100%, got "${text}"`);
    return { share: n / 100 };
  }
  if (!Number.isInteger(n)) throw new ConfigError(`max deletes count must be whole, got "${text}"`);
  return { count: n };
}

export function formatDeleteLimit(limit: DeleteLimit): string {
  return "count" in limit ? String(limit.count) : `${Math.round(limit.share * 10000) / 100}%`;
}

/** Delete candidates held in memory; beyond this, a second listing pass deletes them. */
const CANDIDATES_IN_MEMORY = 100_000;

type Side =
  | { side: "source"; stats: ObjectStats }
  | { side: "dest"; obj: ListedObject }
  | { side: "ours"; key: OurKey };

/** What a reconcile's merge saw once it had walked both listings to their end. */
export interface ListingEvidence {
  /** Keys under the prefix, lakefs-mirror's own records left out. */
  keys: number;
  /** Of those, the keys the commit lacks. */
  extra: number;
  /** Of those, the keys kept because the prefix is not lakefs-mirror's and no record names them. */
  kept: number;
}

export interface ReconciliationOptions {
  /** The commit's entries, a page at a time, in UTF-8 byte order of path (lakeFS's listing). */
  source: () => AsyncIterable<ObjectStats[]>;
  /** The destination's keys relative to its root, a page at a time, in the same order. */
  dest: () => AsyncIterable<ListedObject[]>;
  /**
   * Whether a listed contentId equal to lakeFS's checksum means equal bytes (the destination's
   * `capabilities.contentIdIsChecksum`); without it, a key of the right size is copied again.
   * Default true.
   */
  contentIdIsChecksum?: boolean | undefined;
  /** A small object at the destination, by path (to name a lane whose records lie below). */
  readText: (path: string) => Promise<string | undefined>;
  /**
   * Whether keys the commit lacks may be deleted: the prefix is lakefs-mirror's (its lane's
   * ledger says every key there is its own) or declared dedicated. A function is asked once,
   * when the tasks start.
   */
  owned: boolean | (() => Promise<boolean>);
  /**
   * Skip the max-deletes guard: the caller knows every key under the prefix is its own (the
   * daemon's ledger says the prefix was empty when its lane began).
   */
  unguarded?: boolean | undefined;
  maxDeletes?: DeleteLimit | undefined;
  /**
   * Called once the first pass has found nothing that refuses the export, before the first
   * task: the daemon records its attempt then, so that a lane that refuses writes no ledger.
   */
  onChecked?: (() => void) | undefined;
  /**
   * Keys lakefs-mirror may have written that the commit may lack, in path order: the entries of
   * the diffs to the commit from the commits its records name (a ledger's base and unfinished
   * attempts, the status files' commits) and a ledger's failed paths. On a prefix that is not
   * lakefs-mirror's, these are the only keys the commit lacks that are deleted (they are its own
   * leftovers); every other one is kept. Asked for only when the prefix is not owned.
   */
  ours?: (() => AsyncIterable<OurKey>) | undefined;
  /** The lane reconciling and where, for the message of an overlap. */
  lane?: LaneName | undefined;
  where?: string | undefined;
}

/**
 * The reconciling full export: the commit's listing and the destination's listing, both in
 * UTF-8 byte order, walked side by side. A key only the commit has is copied; a key on both
 * sides is copied when size or content differ (by ETag: only equal ETags count as equal
 * content) and otherwise checked for Content-Type and metadata by one HEAD; a key only the
 * destination has is deleted.
 *
 * Deletes by listing are dangerous, so they are guarded: they happen only under a prefix
 * lakefs-mirror owns (its lane's ledger says so, or the caller says the prefix is dedicated),
 * or, elsewhere, to keys that its own records name (`ours`); every other key is counted and
 * kept. On an owned prefix they happen only when there are no more than `maxDeletes`; more
 * becomes a refusal that fails the export and deletes nothing. Status files and the reserved
 * prefix are never candidates. Deletes come after every copy.
 *
 * A first pass, before anything is written, decides the guard (on an owned prefix) and looks for
 * another lane's records (`<sub>/_lakefs_mirror/ledger.json` or `lease.json`) below the root:
 * such a lane's keys are inside this listing, so the export refuses with
 * DestinationOverlapError and writes nothing.
 */
export class Reconciliation {
  readonly #o: ReconciliationOptions;
  #listing: ListingEvidence | undefined;

  constructor(options: ReconciliationOptions) {
    this.#o = options;
  }

  /** Set once the merge has walked both listings to their end; undefined before (or if it stopped). */
  get listing(): ListingEvidence | undefined {
    return this.#listing;
  }

  async *tasks(): AsyncGenerator<ExportTask> {
    const owned = typeof this.#o.owned === "function" ? await this.#o.owned() : this.#o.owned;
    const refusal = await this.#firstPass(owned && !this.#o.unguarded);
    this.#o.onChecked?.();
    if (refusal) {
      yield { op: "refuse", path: "", reason: refusal };
      return;
    }
    const candidates: string[] = [];
    let extra = 0;
    let deletable = 0;
    let keys = 0;
    for await (const { key, items } of this.#merge(!owned)) {
      const [s, d, mine] = items;
      if (d) {
        keys++;
        await this.#assertNoLaneBelow(key);
      }
      if (s?.side === "source") {
        if (d?.side !== "dest") yield { op: "copy", path: key, stats: s.stats, change: "missing" };
        else yield compare(s.stats, d.obj, this.#o.contentIdIsChecksum ?? true);
      } else if (d) {
        extra++;
        if (!owned && !isOurs(mine, d)) {
          yield { op: "keep", path: key };
          continue;
        }
        deletable++;
        if (candidates.length < CANDIDATES_IN_MEMORY) candidates.push(key);
      }
    }
    this.#listing = { keys, extra, kept: extra - deletable };
    if (deletable === 0) return;
    if (candidates.length === deletable) {
      for (const path of candidates) yield { op: "delete", path };
      return;
    }
    // Too many to hold: list both sides again and delete as the merge finds them.
    for await (const { key, items } of this.#merge(!owned)) {
      if (items[0] || !items[1] || (!owned && !isOurs(items[2], items[1]))) continue;
      await this.#assertNoLaneBelow(key);
      yield { op: "delete", path: key };
    }
  }

  /**
   * Throws DestinationOverlapError when another lane's records lie below the root: the check a
   * split export's owner makes over the whole destination before any worker writes.
   */
  async checkBelow(): Promise<void> {
    await this.#firstPass(false);
  }

  /**
   * Before anything is written: another lane's records below the root, and (when `guarded`)
   * whether the deletes this export would make are too many (the reason, or undefined). The
   * guard decides first because a refused export that copied would raise the number of keys
   * the share is taken from, and the next try would pass.
   */
  async #firstPass(guarded: boolean): Promise<string | undefined> {
    if (!guarded) {
      for await (const page of this.#o.dest())
        for (const o of page) if (!isReservedPath(o.path)) await this.#assertNoLaneBelow(o.path);
      return undefined;
    }
    let extra = 0;
    let keys = 0;
    for await (const { key, items } of this.#merge()) {
      if (!items[1]) continue;
      await this.#assertNoLaneBelow(key);
      keys++;
      if (!items[0]) extra++;
    }
    const limit = this.#o.maxDeletes ?? defaultDeleteLimit;
    const allowed = "count" in limit ? limit.count : Math.floor(limit.share * keys);
    if (extra <= allowed) return undefined;
    return (
      `refused to delete ${extra} of ${keys} keys under the prefix that the commit lacks: ` +
      `more than the max-deletes guard allows (${formatDeleteLimit(limit)}); nothing was written. ` +
      `Check the destination, then raise the guard (export.maxDeletes, --max-deletes) to proceed`
    );
  }

  /** Throws DestinationOverlapError when `path` is the ledger or lease of a lane below the root. */
  async #assertNoLaneBelow(path: string): Promise<void> {
    const root = nestedRecordRoot(path);
    if (root === undefined) return;
    const other = liveRecordLane(path, await this.#o.readText(path));
    // Something else under that name (an object mirrored from lakeFS, say, or the expired
    // lease of a lane that never wrote there) names no lane whose keys are below.
    if (!other) return;
    const where = this.#o.where ?? "the destination";
    throw overlapError(
      this.#o.lane ?? { repository: "?", branch: "?" },
      where,
      other,
      where.endsWith("/") ? where + root : `${where} (${root})`,
      `that lane's records (${path}) lie below this lane's root, inside its listing`,
    );
  }

  /** The commit's listing, the destination's and (`withOurs`) the keys `ours` names, by path. */
  #merge(withOurs = false) {
    const { source, dest } = this.#o;
    const ours = withOurs ? this.#o.ours : undefined;
    async function* sourceItems(): AsyncGenerator<Side> {
      for await (const stats of flatten(source()))
        if (stats.path_type === "object") yield { side: "source", stats };
    }
    async function* destItems(): AsyncGenerator<Side> {
      for await (const obj of flatten(dest()))
        if (!isReservedPath(obj.path)) yield { side: "dest", obj };
    }
    async function* ourItems(): AsyncGenerator<Side> {
      if (!ours) return;
      let last: string | undefined;
      // One item per path for the merge: a path named twice in a row counts once.
      for await (const key of ours()) {
        if (key.path === last) continue;
        last = key.path;
        yield { side: "ours", key };
      }
    }
    return mergeSorted([sourceItems(), destItems(), ourItems()], (i) =>
      i.side === "source" ? i.stats.path : i.side === "dest" ? i.obj.path : i.key.path,
    );
  }
}

/**
 * What a prefix holds for a lane that has no record of it yet: nothing ("empty"; its own lease
 * may be there already), only status files of earlier exports ("owned"), or other keys
 * ("foreign"). A status file beside other keys does not make them lakefs-mirror's: it says that
 * an export wrote its commit's keys there, not that every key is one of them (a one-off export
 * never deletes, and someone may have written there before or since). Those keys are deleted by
 * what the status files name (see Reconciliation's `ours`), never because they are there.
 */
export async function prefixState(dest: Destination, signal?: AbortSignal): Promise<PrefixState> {
  let statusFiles = false;
  for await (const page of dest.list("", signal)) {
    for (const o of page) {
      if (o.path.startsWith(RESERVED_PREFIX)) continue;
      if (!isReservedPath(o.path)) return "foreign";
      statusFiles = true;
    }
  }
  return statusFiles ? "owned" : "empty";
}

/**
 * Whether a key the commit lacks is one lakefs-mirror's records name, with a size they give
 * (a key of another size at a named path was written by someone else since).
 */
function isOurs(mine: Side | undefined, d: Side | undefined): boolean {
  if (mine?.side !== "ours" || d?.side !== "dest") return false;
  const { sizes } = mine.key;
  return sizes === undefined || sizes.includes(d.obj.size);
}

function compare(stats: ObjectStats, obj: ListedObject, contentIds: boolean): ExportTask {
  if ((stats.size_bytes ?? 0) !== obj.size)
    return { op: "copy", path: stats.path, stats, change: "differs" };
  // lakeFS's checksum of an S3-stored object is the ETag its upload got, and an S3 destination's
  // contentId is its ETag. Two different plain MD5s mean different bytes; a multipart ETag
  // (`<md5>-<parts>`) depends on how the object was uploaded, so an unequal one says nothing:
  // copy rather than guess. A store whose contentId is no checksum says nothing either.
  if (!contentIds || stats.checksum.replaceAll('"', "") !== obj.contentId)
    return { op: "copy", path: stats.path, stats, change: "differs" };
  return { op: "check", path: stats.path, stats };
}

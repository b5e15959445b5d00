import { ConfigError } from "../errors.ts";
import type { LakefsClient } from "../lakefs/client.ts";
import type { ObjectStats } from "../lakefs/types.ts";
import type { PrefixState } from "../ledger/ledger.ts";
import type { ListedObject, S3Destination } from "../s3/destination.ts";
import type { ExportTask } from "./task.ts";
import { flatten, mergeSorted } from "./order.ts";
import { LEDGER_PATH, RESERVED_PREFIX, isReservedPath } from "./reserved.ts";
import { parseStatusFileName } from "./status-file.ts";

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

type Side = { side: "source"; stats: ObjectStats } | { side: "dest"; obj: ListedObject };

export interface ReconciliationOptions {
  lakefs: LakefsClient;
  repository: string;
  destination: S3Destination;
  commitId: string;
  dedicated: boolean;
  /** Whether the prefix is lakefs-mirror's, when the caller knows; probed when undefined. */
  owned?: boolean | undefined;
  /**
   * Skip the max-deletes guard: the caller knows every key under the prefix is its own (the
   * daemon's ledger says the prefix was empty when its lane began).
   */
  unguarded?: boolean | undefined;
  maxDeletes?: DeleteLimit | undefined;
  signal?: AbortSignal | undefined;
}

/**
 * The reconciling full export: the commit's listing and the destination's listing, both in
 * UTF-8 byte order, walked side by side. A key only the commit has is copied; a key on both
 * sides is copied when size or content differ (by ETag: only equal ETags count as equal content) and otherwise checked for Content-Type and metadata by one HEAD; a key only
 * the destination has is deleted.
 *
 * Deletes by listing are dangerous, so they are guarded: they happen only under a prefix
 * lakefs-mirror owns (its ledger or a status file is at the root, or the caller says the prefix
 * is dedicated; otherwise such keys are counted and kept), and only when there are no more than
 * `maxDeletes`; more becomes a refusal that fails the export and deletes nothing. Status files
 * and the reserved prefix are never candidates. Deletes come after every copy. On an owned
 * prefix the guard is decided by a first listing pass, before anything is written.
 */
export class Reconciliation {
  readonly #o: ReconciliationOptions;

  constructor(options: ReconciliationOptions) {
    this.#o = options;
  }

  async *tasks(): AsyncGenerator<ExportTask> {
    const { destination, signal } = this.#o;
    const owned = this.#o.dedicated || (this.#o.owned ?? (await prefixOwned(destination, signal)));
    if (owned && !this.#o.unguarded) {
      // The guard decides before anything is written: a refused export that copied first
      // would raise the number of keys the share is taken from, and the next try would pass.
      const refusal = await this.#guard();
      if (refusal) {
        yield { op: "refuse", path: "", reason: refusal };
        return;
      }
    }
    const candidates: string[] = [];
    let extra = 0;
    for await (const { key, items } of this.#merge()) {
      const [s, d] = items;
      if (s?.side === "source") {
        if (d?.side !== "dest") yield { op: "copy", path: key, stats: s.stats, change: "missing" };
        else yield compare(s.stats, d.obj);
      } else if (d) {
        extra++;
        if (!owned) yield { op: "keep", path: key };
        else if (candidates.length < CANDIDATES_IN_MEMORY) candidates.push(key);
      }
    }
    if (!owned || extra === 0) return;
    if (candidates.length === extra) {
      for (const path of candidates) yield { op: "delete", path };
      return;
    }
    // Too many to hold: list both sides again and delete as the merge finds them.
    for await (const { key, items } of this.#merge()) {
      if (!items[0] && items[1]) yield { op: "delete", path: key };
    }
  }

  /** Why the deletes this export would make are too many, or undefined when they are not. */
  async #guard(): Promise<string | undefined> {
    let extra = 0;
    let keys = 0;
    for await (const { items } of this.#merge()) {
      if (!items[1]) continue;
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

  #merge() {
    const { lakefs, repository, commitId, destination, signal } = this.#o;
    async function* source(): AsyncGenerator<Side> {
      for await (const stats of flatten(lakefs.listObjects(repository, commitId, "", signal)))
        if (stats.path_type === "object") yield { side: "source", stats };
    }
    async function* dest(): AsyncGenerator<Side> {
      for await (const obj of flatten(destination.list("", signal)))
        if (!isReservedPath(obj.path)) yield { side: "dest", obj };
    }
    return mergeSorted([source(), dest()], (i) =>
      i.side === "source" ? i.stats.path : i.obj.path,
    );
  }
}

/** A prefix is lakefs-mirror's when its ledger or one of its status files is at the root. */
export async function prefixOwned(dest: S3Destination, signal?: AbortSignal): Promise<boolean> {
  if (await dest.head(LEDGER_PATH, signal)) return true;
  for await (const page of dest.list("EXPORT_", signal)) {
    if (page.some((o) => parseStatusFileName(o.path))) return true;
  }
  return false;
}

/**
 * What a prefix holds for a lane that has no record of it yet: nothing ("empty"; its own lease
 * may be there already), status files of an earlier export ("owned"), or keys of someone else
 * ("foreign", unless a status file or ledger says lakefs-mirror wrote them).
 */
export async function prefixState(dest: S3Destination, signal?: AbortSignal): Promise<PrefixState> {
  let statusFiles = false;
  for await (const page of dest.list("", signal)) {
    for (const o of page) {
      if (o.path.startsWith(RESERVED_PREFIX)) continue;
      if (!isReservedPath(o.path))
        return statusFiles || (await prefixOwned(dest, signal)) ? "owned" : "foreign";
      statusFiles = true;
    }
  }
  return statusFiles ? "owned" : "empty";
}

function compare(stats: ObjectStats, obj: ListedObject): ExportTask {
  if ((stats.size_bytes ?? 0) !== obj.size)
    return { op: "copy", path: stats.path, stats, change: "differs" };
  // lakeFS's checksum of an S3-stored object is the ETag its upload got. Two different plain
  // MD5s mean different bytes; a multipart ETag (`<md5>-<parts>`) depends on how the object was
  // uploaded, so an unequal one says nothing: copy rather than guess.
  if (stats.checksum.replaceAll('"', "") !== obj.etag)
    return { op: "copy", path: stats.path, stats, change: "differs" };
  return { op: "check", path: stats.path, stats };
}

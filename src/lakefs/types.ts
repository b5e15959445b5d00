/** The parts of lakeFS's API (api/swagger.yml, /api/v1) that lakefs-mirror reads and writes. */

export interface Pagination {
  has_more: boolean;
  next_offset: string;
  results: number;
  max_per_page: number;
}

export interface Page<T> {
  pagination: Pagination;
  results: T[];
}

export interface Repository {
  id: string;
  creation_date: number;
  default_branch: string;
  storage_namespace: string;
}

export interface Ref {
  id: string;
  commit_id: string;
}

export interface Commit {
  id: string;
  parents: string[];
  committer: string;
  message: string;
  /** Unix seconds. */
  creation_date: number;
  meta_range_id: string;
  metadata?: Record<string, string>;
}

export interface ObjectStats {
  path: string;
  path_type: "object" | "common_prefix";
  /** `s3://bucket/key` on an S3 blockstore, `local://…` on a local one. */
  physical_address: string;
  /** With `presign=true`: when `physical_address`, then a pre-signed URL, expires (Unix seconds). */
  physical_address_expiry?: number;
  checksum: string;
  size_bytes?: number;
  mtime: number;
  metadata?: Record<string, string>;
  content_type?: string;
}

/**
 * One entry of a two-dot diff with no delimiter: only `added | removed | changed` occur then
 * (`conflict` and `prefix_changed` need three-dot or a delimiter).
 */
export interface DiffEntry {
  type: "added" | "removed" | "changed" | "conflict" | "prefix_changed";
  path: string;
  path_type: "object" | "common_prefix";
  size_bytes?: number;
}

export interface CommitCreation {
  message: string;
  metadata?: Record<string, string>;
  allow_empty?: boolean;
}

/** The JSON body lakeFS's action runner POSTs to a webhook (pkg/actions/webhook.go). */
export interface HookEvent {
  event_type: string;
  event_time: string;
  action_name: string;
  hook_id: string;
  repository_id: string;
  branch_id?: string;
  source_ref?: string;
  tag_id?: string;
  commit_id?: string;
  commit_message?: string;
  committer?: string;
  commit_metadata?: Record<string, string>;
  merge_source?: string;
}

/** One source of a lakeFS import: a prefix or an object in the repository's object store. */
export interface ImportLocation {
  type: "common_prefix" | "object";
  /** Where it is now, such as `s3://bucket/prefix/`. */
  path: string;
  /** Where it lands on the branch. */
  destination: string;
}

export interface ImportStatus {
  completed: boolean;
  ingested_objects?: number;
  commit?: Commit;
  error?: { message: string };
}

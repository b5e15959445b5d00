import { TableRewriteError } from "../errors.ts";

export interface PathMapperOptions {
  /** The lakeFS repository the table lives in. */
  repository: string;
  /**
   * Where `<path>` of the repository is in the mirror, as engines address it: the mirror's
   * URI, e.g. `s3://bucket/prefix/`. A missing trailing slash is added.
   */
  destinationRoot: string;
  /**
   * Host names (with `:port` when not the scheme's default) of lakeFS's S3 gateway, for tables
   * whose writer stored HTTP URLs: path style `http(s)://<host>/<repo>/<ref>/<path>` and
   * virtual-host style `http(s)://<repo>.<host>/<ref>/<path>`.
   */
  gatewayHosts?: readonly string[];
}

// Object-store URI schemes whose authority is a bucket, which the lakeFS S3 gateway serves as
// the repository: `s3`, Hadoop's `s3a`/`s3n`, and lakeFS's own `lakefs://<repo>/<ref>/<path>`.
const BUCKET_SCHEMES = new Set(["s3", "s3a", "s3n", "lakefs"]);

/**
 * Maps the absolute paths a table on lakeFS holds to the mirror. Every address of a repository's
 * object is `<repo>/<ref>/<path>` behind some scheme or host, where the ref may be any branch,
 * tag or commit ID (a table written on a branch and merged keeps that branch's paths): the
 * mirror of the exported commit holds the same `<path>`, so all of them map to
 * `<destination root><path>`. A path of another repository, another bucket or no scheme is
 * refused rather than guessed.
 */
export class PathMapper {
  readonly repository: string;
  readonly destinationRoot: string;
  readonly #hosts: Set<string>;

  constructor(options: PathMapperOptions) {
    if (!options.repository) throw new TypeError("PathMapper needs a repository");
    if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(options.destinationRoot)) {
      throw new TypeError(
        `PathMapper's destination root must be a URI such as s3://bucket/prefix/, got "${options.destinationRoot}"`,
      );
    }
    this.repository = options.repository;
    this.destinationRoot = options.destinationRoot.endsWith("/")
      ? options.destinationRoot
      : `${options.destinationRoot}/`;
    this.#hosts = new Set((options.gatewayHosts ?? []).map((h) => h.toLowerCase()));
  }

  /** The repository path (`<path>` of `<repo>/<ref>/<path>`) `uri` names, or undefined. */
  repositoryPath(uri: string): string | undefined {
    const m = /^([a-z][a-z0-9+.-]*):\/\/([^/]*)\/(.*)$/is.exec(uri);
    if (!m) return undefined;
    const scheme = m[1]!.toLowerCase();
    const authority = m[2]!;
    let rest = m[3]!;
    if (BUCKET_SCHEMES.has(scheme)) {
      if (authority !== this.repository) return undefined;
    } else if (scheme === "http" || scheme === "https") {
      const host = authority.toLowerCase();
      if (this.#hosts.has(host)) {
        // Path style: the first segment is the repository.
        const slash = rest.indexOf("/");
        if (slash < 0 || rest.slice(0, slash) !== this.repository) return undefined;
        rest = rest.slice(slash + 1);
      } else {
        // Virtual-host style: the host is `<repo>.<gateway host>`.
        const gateway = host.slice(this.repository.length + 1);
        if (!host.startsWith(`${this.repository}.`) || !this.#hosts.has(gateway)) return undefined;
      }
    } else {
      return undefined;
    }
    // `rest` is `<ref>/<path>`: a ref is one segment (lakeFS branch, tag and commit IDs hold
    // no slash), and the path must name something below it.
    const slash = rest.indexOf("/");
    if (slash <= 0 || slash === rest.length - 1) return undefined;
    return rest.slice(slash + 1);
  }

  /** The mirror's URI for `uri`, or undefined when `uri` is not in the repository. */
  tryMap(uri: string): string | undefined {
    const path = this.repositoryPath(uri);
    return path === undefined ? undefined : this.destinationRoot + path;
  }

  /**
   * The mirror's URI for `uri`, found in `file` (a lakeFS path, for the error). Throws a
   * TableRewriteError naming both when `uri` is not an address of this repository's objects.
   */
  map(uri: string, file: string): string {
    const mapped = this.tryMap(uri);
    if (mapped === undefined) {
      throw new TableRewriteError(
        `${file} holds the path "${uri}", which is not an object of lakeFS repository ${this.repository} (expected s3://, s3a:// or lakefs://${this.repository}/<ref>/<path>); the table cannot be rewritten to point at the mirror`,
        file,
        uri,
      );
    }
    return mapped;
  }
}

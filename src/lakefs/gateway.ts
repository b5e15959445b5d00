import type { HeadResult } from "../destination/destination.ts";

/**
 * What lakeFS's S3 gateway serves for an object of a commit: the Content-Type and user metadata
 * an S3 reader of lakeFS sees, which a mirror must carry (src/lakefs/gateway-metadata.ts says how the gateway
 * derives them). Read through S3 whatever store the mirror is in (src/s3/gateway.ts).
 */
export interface GatewayReader {
  /** Throws LakefsNotFoundError when the gateway has no such object. */
  head(
    repository: string,
    commitId: string,
    path: string,
    signal?: AbortSignal,
  ): Promise<HeadResult>;
}

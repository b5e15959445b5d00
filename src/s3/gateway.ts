import type { S3Client } from "@aws-sdk/client-s3";
import { LakefsNotFoundError } from "../errors.ts";
import type { GatewayReader } from "../lakefs/gateway.ts";
import { S3Destination } from "./destination.ts";

/**
 * The lakeFS S3 gateway (bucket = repository, key = `<ref>/<path>`) through a client with
 * lakeFS's address and credentials. It is read as any S3 reader of lakeFS reads it, whatever
 * store the mirror writes to.
 */
export function lakefsGateway(client: S3Client): GatewayReader {
  return {
    async head(repository, commitId, path, signal) {
      const found = await new S3Destination(client, {
        bucket: repository,
        prefix: `${commitId}/`,
      }).head(path, signal);
      if (!found)
        throw new LakefsNotFoundError(
          `lakeFS's S3 gateway has no ${path} in ${repository} at ${commitId}`,
          "object",
        );
      return found;
    },
  };
}

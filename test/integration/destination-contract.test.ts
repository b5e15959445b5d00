import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { S3Client } from "@aws-sdk/client-s3";
import pino from "pino";
import { loadConfig } from "../../src/config.ts";
import { DestinationFactory } from "../../src/destination/factory.ts";
import { GcsDestination } from "../../src/gcs/destination.ts";
import type { GcsHttp } from "../../src/gcs/http.ts";
import { createS3Client } from "../../src/s3/client.ts";
import { S3Destination } from "../../src/s3/destination.ts";
import { azuriteContractBackend } from "../helpers/azurite.ts";
import type { ContractBackend } from "../helpers/destination-contract.ts";
import { destinationContract } from "../helpers/destination-contract.ts";
import { startFaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
import type { FaultInjectingProxy } from "../helpers/fault-injecting-proxy.ts";
import { createGcsBucket, gcsEndpoint, gcsHttp } from "../helpers/gcs.ts";
import { connectStack, createBucket, stackEnv, uniqueName } from "../helpers/stack.ts";

/**
 * The S3 backend on the stack's MinIO, twice: every request through the SDK, and with the lean
 * request path the CLI and the daemon use for CopyObject and HeadObject.
 */
async function s3Backend(lean: boolean): Promise<ContractBackend> {
  const stack = await connectStack();
  const bucket = await createBucket(stack, "contract");
  const proxies: FaultInjectingProxy[] = [];
  const clients: S3Client[] = [];
  let n = 0;
  return {
    open: (sizes = {}) =>
      Promise.resolve(
        new S3Destination(
          stack.s3,
          { bucket, prefix: `case-${n++}/` },
          {
            listPageKeys: sizes.listPageKeys,
            ...(sizes.multipartThresholdBytes
              ? { multipartThresholdBytes: sizes.multipartThresholdBytes }
              : {}),
            ...(sizes.partBytes ? { multipartPartSizeBytes: sizes.partBytes } : {}),
          },
          lean ? stack.lean : undefined,
        ),
      ),
    addressOf: (dest, path) => ({ scheme: "s3", container: bucket, key: dest.key(path) }),
    missingContainer: () =>
      new S3Destination(stack.s3, { bucket: uniqueName("missing"), prefix: "p/" }),
    async withFaults(rates) {
      const proxy = await startFaultInjectingProxy(stack.env.AWS_ENDPOINT_URL, {
        flavor: "s3",
        rates,
      });
      proxies.push(proxy);
      const s3 = createS3Client({
        endpoint: proxy.url,
        region: stack.env.AWS_REGION,
        maxAttempts: 1,
        credentials: {
          accessKeyId: stack.env.AWS_ACCESS_KEY_ID,
          secretAccessKey: stack.env.AWS_SECRET_ACCESS_KEY,
        },
      });
      clients.push(s3);
      return new S3Destination(s3, { bucket, prefix: `faults-${n++}/` });
    },
    async close() {
      for (const c of clients) c.destroy();
      for (const p of proxies) await p.close();
      await stack.close();
    },
  };
}

/** The GCS backend on the stack's fake-gcs-server. */
async function gcsBackend(): Promise<ContractBackend> {
  const endpoint = await gcsEndpoint();
  const http = gcsHttp(endpoint);
  const bucket = await createGcsBucket(endpoint, "contract");
  const proxies: FaultInjectingProxy[] = [];
  const others: GcsHttp[] = [];
  let n = 0;
  return {
    open: (sizes = {}) =>
      Promise.resolve(
        new GcsDestination(
          http,
          { bucket, prefix: `case-${n++}/` },
          {
            listPageKeys: sizes.listPageKeys,
            ...(sizes.multipartThresholdBytes
              ? { resumableThresholdBytes: sizes.multipartThresholdBytes }
              : {}),
            ...(sizes.partBytes ? { chunkBytes: sizes.partBytes } : {}),
          },
        ),
      ),
    addressOf: (dest, path) => ({ scheme: "gs", container: bucket, key: dest.key(path) }),
    missingContainer: () =>
      new GcsDestination(http, { bucket: uniqueName("missing"), prefix: "p/" }),
    async withFaults(rates) {
      const proxy = await startFaultInjectingProxy(endpoint, { flavor: "gcs", rates });
      proxies.push(proxy);
      const faulty = gcsHttp(proxy.url, 1);
      others.push(faulty);
      return new GcsDestination(faulty, { bucket, prefix: `faults-${n++}/` });
    },
    async close() {
      for (const h of others) await h.close();
      for (const p of proxies) await p.close();
      await http.close();
    },
  };
}

destinationContract("GCS on fake-gcs-server", gcsBackend);
destinationContract("S3 on MinIO, SDK requests", () => s3Backend(false));
destinationContract("S3 on MinIO, lean requests", () => s3Backend(true));
destinationContract("Azure Blob Storage on Azurite", azuriteContractBackend);

describe("destination factory", () => {
  it("opens a destination by its URI's scheme, in canonical form, sharing one backend session", async () => {
    const env = await stackEnv();
    const config = loadConfig({ env: { ...env } });
    const factory = new DestinationFactory(config, pino({ level: "silent" }));
    try {
      const a = factory.open("s3a://some-bucket/a/b");
      assert.equal(a.uri, "s3://some-bucket/a/b/");
      assert.equal(a.prefix, "a/b/");
      assert.equal(a.at("").uri, "s3://some-bucket/");
      assert.deepEqual(a.capabilities.serverSideCopyFrom, ["s3"]);
      assert.throws(() => factory.open("ftp://bucket/x"), { code: "LM_USAGE" });
      const g = factory.open("gs://some-bucket/a/b");
      assert.equal(g.uri, "gs://some-bucket/a/b/");
      assert.deepEqual(g.capabilities.serverSideCopyFrom, ["gs"]);
      assert.throws(() => factory.open("gs://Bad_Bucket/x"), { code: "LM_USAGE" });
      assert.throws(() => factory.open("s3://Bad_Bucket/x"), { code: "LM_USAGE" });
    } finally {
      await factory.close();
    }
  });

  it("writes through the session it opened, to the configured endpoint", async () => {
    const stack = await connectStack();
    const factory = new DestinationFactory(
      loadConfig({ env: { ...stack.env } }),
      pino({ level: "silent" }),
    );
    try {
      const bucket = await createBucket(stack, "factory");
      const dest = factory.open(`s3://${bucket}/p/`);
      await dest.putText("hello", "world");
      assert.equal(await factory.open(`s3://${bucket}/`).getText("p/hello"), "world");
    } finally {
      await factory.close();
      await stack.close();
    }
  });
});

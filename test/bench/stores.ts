// The bench's (f) rows: full exports into the stack's other stores, Azure Blob Storage (Azurite)
// and Google Cloud Storage (fake-gcs-server), against rclone's `azureblob` and `google cloud
// storage` backends writing to the same server in the same run. lakeFS keeps its data on MinIO,
// so both contenders stream every byte from lakeFS (its API for lakefs-mirror, its S3 gateway for
// rclone) into the store.
import { randomBytes } from "node:crypto";
import type { StackEnv } from "../helpers/stack.ts";
import { createGcsBucket } from "../helpers/gcs.ts";
import { azureBlobService } from "../helpers/stores.ts";
import { measure, measureExport, rcloneEnv, rcloneFlags } from "./tools.ts";
import type { Measure } from "./report.ts";
import type { Usage } from "./tools.ts";

export interface StoresBenchInput {
  env: StackEnv;
  /** The environment lakefs-mirror's CLI runs with. */
  cliEnv: NodeJS.ProcessEnv;
  rclone: string;
  small: { repo: string; commit: string; objects: number; bytes: number };
  large: { repo: string; commit: string; objects: number; bytes: number; label: string };
  record: (scenario: string, tool: string, objects: number, bytes: number, u: Usage) => Measure;
  ratio: (label: string, target: number, ours: Measure, peer: Measure) => void;
}

/** rclone's remotes `az:` (Azurite, with the development account's key) and `gs:` (fake-gcs-server, anonymous). */
export function rcloneStoreEnv(e: StackEnv): NodeJS.ProcessEnv {
  return {
    ...rcloneEnv(e),
    RCLONE_CONFIG_AZ_TYPE: "azureblob",
    RCLONE_CONFIG_AZ_ACCOUNT: e.AZURE_STORAGE_ACCOUNT,
    RCLONE_CONFIG_AZ_KEY: e.AZURE_STORAGE_KEY,
    RCLONE_CONFIG_AZ_ENDPOINT: e.AZURITE_BLOB_ENDPOINT,
    RCLONE_CONFIG_GS_TYPE: "google cloud storage",
    RCLONE_CONFIG_GS_ANONYMOUS: "true",
    RCLONE_CONFIG_GS_ENDPOINT: `${e.GCS_ENDPOINT}/storage/v1/`,
    RCLONE_CONFIG_GS_BUCKET_POLICY_ONLY: "true",
  };
}

/** Azure blocks as lakefs-mirror's defaults: 16 MiB, four at once per blob (rclone's GCS backend sends its own chunk size). */
const storeFlags = ["--azureblob-chunk-size=16M", "--azureblob-upload-concurrency=4"];

export async function benchStores(b: StoresBenchInput): Promise<void> {
  const renv = rcloneStoreEnv(b.env);
  const service = azureBlobService(b.env);
  const container = `bench-${randomBytes(4).toString("hex")}`;
  await service.getContainerClient(container).create();
  const bucket = await createGcsBucket(b.env.GCS_ENDPOINT, "bench");
  const targets = [
    {
      name: "Azurite",
      ours: (p: string) => `${b.env.AZURITE_BLOB_ENDPOINT}/${container}/${p}/`,
      peer: (p: string) => `az:${container}/${p}/`,
    },
    {
      name: "fake-gcs-server",
      ours: (p: string) => `gs://${bucket}/${p}/`,
      peer: (p: string) => `gs:${bucket}/${p}/`,
    },
  ];
  for (const t of targets) {
    for (const [kind, set] of [
      ["small", b.small],
      ["large", b.large],
    ] as const) {
      const scenario = `(f) ${kind === "small" ? `full, ${set.objects} small` : b.large.label} to ${t.name}`;
      const ours = b.record(
        scenario,
        "lakefs-mirror",
        set.objects,
        set.bytes,
        await measureExport(
          [set.repo, t.ours(`mirror-${kind}`), `--commit_id=${set.commit}`],
          b.cliEnv,
        ),
      );
      const peer = b.record(
        scenario,
        "rclone sync",
        set.objects,
        set.bytes,
        await measure(
          b.rclone,
          [
            "sync",
            `lakefs:${set.repo}/${set.commit}/`,
            t.peer(`rclone-${kind}`),
            ...rcloneFlags,
            ...storeFlags,
          ],
          renv,
        ),
      );
      b.ratio(`(f) ${kind} to ${t.name} vs rclone sync`, 1, ours, peer);
    }
  }
}

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { scanDeltaLog } from "../../../src/iceberg/delta-absolute.ts";

const log = (...actions: unknown[]): Buffer =>
  Buffer.from(actions.map((a) => JSON.stringify(a)).join("\n") + "\n");

describe("scanDeltaLog", () => {
  it("finds the absolute paths a shallow clone writes, in add, remove and cdc actions", () => {
    const found = scanDeltaLog(
      log(
        { commitInfo: { operation: "CLONE", operationParameters: { source: "s3://r/main/src" } } },
        { add: { path: "s3://r/main/src/part-0.parquet", size: 1, dataChange: true } },
        { add: { path: "part-1.parquet", size: 1, dataChange: true } },
        { add: { path: "x%3Ay/part-2.parquet", size: 1 } },
        { remove: { path: "abfss://c@a.dfs.core.windows.net/t/part-3.parquet" } },
        { cdc: { path: "/mnt/t/_change_data/c.parquet" } },
        {
          add: {
            path: "p.parquet",
            deletionVector: { storageType: "p", pathOrInlineDv: "s3://r/main/dv.bin" },
          },
        },
        {
          add: {
            path: "q.parquet",
            deletionVector: { storageType: "u", pathOrInlineDv: "ab^-aqEH.-t@S}K{vb[*k^" },
          },
        },
      ),
    );
    assert.deepEqual(
      found.map((f) => [f.line, f.action, f.path]),
      [
        [2, "add", "s3://r/main/src/part-0.parquet"],
        [5, "remove", "abfss://c@a.dfs.core.windows.net/t/part-3.parquet"],
        [6, "cdc", "/mnt/t/_change_data/c.parquet"],
        [7, "deletionVector", "s3://r/main/dv.bin"],
      ],
    );
  });

  it("finds nothing in a table written with relative paths only", () => {
    assert.deepEqual(
      scanDeltaLog(
        log({ protocol: { minReaderVersion: 1 } }, { add: { path: "a=1/part-0.parquet" } }),
      ),
      [],
    );
  });
});

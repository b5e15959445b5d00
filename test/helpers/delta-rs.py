"""A real Delta Lake writer and reader (delta-rs, the `deltalake` package) for the tests.

    python delta-rs.py append <uri> <options-json> <first-id> <rows>
    python delta-rs.py checkpoint <uri> <options-json>
    python delta-rs.py compact <uri> <options-json>
    python delta-rs.py vacuum <uri> <options-json>
    python delta-rs.py read <uri> <options-json>
    python delta-rs.py watch <uri> <options-json> <stop-file>

`read` prints {"version": v, "ids": [...]} (ids sorted). `watch` reads the table again and again,
from scratch each time (no cached log), until the stop file exists; it prints "ready" after its
first good read, then one JSON summary: reads, failures with their messages, versions seen.
"""

import json
import os
import sys
import time

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake


def read(uri, opts):
    dt = DeltaTable(uri, storage_options=opts)
    # Reading every row reads every data file the version names, not just the log.
    table = dt.to_pyarrow_table()
    return {"version": dt.version(), "ids": sorted(table.column("id").to_pylist())}


def main():
    cmd, uri, opts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if cmd == "append":
        first, rows = int(sys.argv[4]), int(sys.argv[5])
        ids = list(range(first, first + rows))
        data = pa.table({"id": ids, "text": [f"row {i} ü \U0001f600" for i in ids]})
        write_deltalake(uri, data, mode="append", storage_options=opts)
    elif cmd == "checkpoint":
        DeltaTable(uri, storage_options=opts).create_checkpoint()
    elif cmd == "compact":
        DeltaTable(uri, storage_options=opts).optimize.compact()
    elif cmd == "vacuum":
        # Retention 0: every file no version since the last compaction uses is deleted now,
        # as a VACUUM does once its retention has passed.
        DeltaTable(uri, storage_options=opts).vacuum(
            retention_hours=0, enforce_retention_duration=False, dry_run=False
        )
    elif cmd == "read":
        print(json.dumps(read(uri, opts)))
    elif cmd == "watch":
        stop = sys.argv[4]
        reads, failures, versions, ready = 0, [], set(), False
        while not os.path.exists(stop):
            try:
                versions.add(read(uri, opts)["version"])
                if not ready:
                    print("ready", flush=True)
                    ready = True
            except Exception as err:  # every failure of a reader is what the test looks for
                failures.append(f"{type(err).__name__}: {err}")
            reads += 1
            time.sleep(0.005)
        print(json.dumps({"reads": reads, "failures": failures, "versions": sorted(versions)}))
    else:
        raise SystemExit(f"unknown command {cmd}")


main()
# delta-rs's runtime threads can abort the interpreter's teardown ("terminate called without an
# active exception") after everything was done and printed: leave without the teardown.
sys.stdout.flush()
os._exit(0)

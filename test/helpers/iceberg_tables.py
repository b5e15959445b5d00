"""Writes Iceberg tables with pyiceberg and reads them back, for the path-rewriting tests.

Run with the stack's Python (ICEBERG_PYTHON); one JSON request on stdin, one JSON answer on
stdout. Commands:

  write-dev   create a table on a lakeFS branch through the S3 gateway and append to it
  write-main  take the merged table over on another ref and overwrite, delete, evolve, expire
  append      append once more to the table of write-main's catalog
  read        every snapshot's rows (time travel by snapshot ID) of the table whose metadata
              file is given, reached through any S3 endpoint (the gateway, or MinIO)
  check       the mirrored table's files, read with fastavro and json: every path under the
              root, every manifest_length the object's size, everything else equal to the source
  step        one change to the table of write-dev's catalog: append, overwrite, delete, evolve,
              expire (the oldest snapshot but the current one), or remove-orphans (delete the
              files no snapshot of the current metadata reaches, as a maintenance job does)
  digest      for each metadata file given: every snapshot's rows of the table, as a digest per
              snapshot ID, and the current snapshot's
  poll        read the newest metadata file of a mirrored table over and over until a stop file
              appears: each read is the current snapshot and every snapshot by ID, as digests
"""

import hashlib
import json
import os
import time
import re
import sys
import tempfile

import fastavro
import pyarrow as pa
import pyarrow.fs as pafs
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.expressions import EqualTo
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import StaticTable
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import DoubleType, LongType, NestedField, StringType

# Partition values that make hostile paths: spaces, '%', '+', unicode beyond the BMP, and
# non-padded numbers that sort out of order.
PARTS = ["a b", "é%+\U0001f600", "frames 10"]
BIG = 2**62 + 12345  # a long a JavaScript number cannot hold


def s3_props(s3):
    return {
        "s3.endpoint": s3["endpoint"],
        "s3.access-key-id": s3["key"],
        "s3.secret-access-key": s3["secret"],
        "s3.region": "us-east-1",
        "s3.force-virtual-addressing": "false",
    }


def catalog(db, s3, warehouse=None):
    props = {"uri": f"sqlite:///{db}", **s3_props(s3)}
    if warehouse:
        props["warehouse"] = warehouse
    return SqlCatalog("mirror_test", **props)


def batch(start, n, extra=None):
    cols = {
        "id": pa.array(range(start, start + n), pa.int64()),
        "name": pa.array([f"row {i} ü" for i in range(start, start + n)], pa.string()),
        "part": pa.array([PARTS[i % len(PARTS)] for i in range(start, start + n)], pa.string()),
        "amount": pa.array([i * 1.5 for i in range(start, start + n)], pa.float64()),
        "big": pa.array([BIG + i for i in range(start, start + n)], pa.int64()),
    }
    if extra is not None:
        cols["extra"] = pa.array([f"{extra}-{i}" for i in range(start, start + n)], pa.string())
    return pa.table(cols)


def write_dev(req):
    cat = catalog(req["db"], req["s3"], req["warehouse"])
    cat.create_namespace_if_not_exists("ns")
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "name", StringType(), required=False),
        NestedField(3, "part", StringType(), required=False),
        NestedField(4, "amount", DoubleType(), required=False),
        NestedField(5, "big", LongType(), required=False),
    )
    spec = PartitionSpec(PartitionField(3, 1000, IdentityTransform(), "part"))
    props = {"format-version": str(req["format_version"])}
    if req.get("codec"):
        props["write.avro.compression-codec"] = req["codec"]
    tbl = cat.create_table("ns.t", schema, partition_spec=spec, properties=props)
    tbl.append(batch(0, 20))
    tbl.append(batch(20, 15))
    return {"metadata": tbl.metadata_location}


def write_main(req):
    cat = catalog(req["db"], req["s3"])
    cat.create_namespace_if_not_exists("ns")
    # The same catalog as write-dev: the table now lives on another ref. (Dropping from a SQL
    # catalog forgets the entry and deletes no file.)
    cat.drop_table("ns.t")
    tbl = cat.register_table("ns.t", req["metadata"])
    base = req["base"]  # s3://<repo>/<ref>/<table dir> where new files go
    tbl.transaction().set_properties(
        {"write.data.path": f"{base}/data", "write.metadata.path": f"{base}/metadata"}
    ).commit_transaction()
    # Each change writes its manifests with another Avro codec (Iceberg's names: zstd, snappy,
    # gzip is deflate, uncompressed is null): one history covers every codec the rewriter reads.
    def codec(name):
        cat.load_table("ns.t").transaction().set_properties(
            {"write.avro.compression-codec": name}
        ).commit_transaction()
        return cat.load_table("ns.t")

    codec("zstd").overwrite(batch(100, 6), overwrite_filter=EqualTo("part", PARTS[0]))
    # One row of one partition: the other partitions keep the files written on dev.
    codec("snappy").delete(delete_filter=EqualTo("id", 22))
    tbl = codec("gzip")
    with tbl.update_schema() as update:
        update.add_column("extra", StringType())
    tbl = cat.load_table("ns.t")
    tbl.append(batch(200, 12, extra="x"))
    first = tbl.history()[0].snapshot_id
    tbl.maintenance.expire_snapshots().by_id(first).commit()
    tbl = cat.load_table("ns.t")
    return {"metadata": tbl.metadata_location, "expired": str(first)}


def append(req):
    cat = catalog(req["db"], req["s3"])
    tbl = cat.load_table("ns.t")
    tbl.append(batch(300, 7, extra="y"))
    return {"metadata": cat.load_table("ns.t").metadata_location}


def rows_of(arrow):
    return sorted(json.dumps(r, sort_keys=True, default=str, ensure_ascii=False) for r in arrow.to_pylist())


def read(req):
    with tempfile.TemporaryDirectory() as d:
        cat = catalog(os.path.join(d, "c.db"), req["s3"])
        cat.create_namespace("ns")
        tbl = cat.register_table("ns.t", req["metadata"])
        snapshots = {}
        for s in tbl.metadata.snapshots:
            snapshots[str(s.snapshot_id)] = rows_of(tbl.scan(snapshot_id=s.snapshot_id).to_arrow())
        return {
            "current": rows_of(tbl.scan().to_arrow()),
            "snapshots": snapshots,
            "files": sorted(tbl.inspect.files().column("file_path").to_pylist()),
        }


def fs_of(s3):
    return pafs.S3FileSystem(
        endpoint_override=s3["endpoint"],
        access_key=s3["key"],
        secret_key=s3["secret"],
        region="us-east-1",
        force_virtual_addressing=False,
    )


def strip(uri):
    return re.sub(r"^s3a?://", "", uri)


def check(req):
    """Compares every metadata file of the mirror with its source, mapped by the oracle's rule."""
    src_fs, dst_fs = fs_of(req["source_s3"]), fs_of(req["mirror_s3"])
    repo, root = req["repository"], req["root"]
    ref_path = re.compile(r"^(?:s3a?|lakefs)://" + re.escape(repo) + r"/[^/]+/(.+)$")

    def mapped(uri):
        m = ref_path.match(uri)
        assert m, f"source path {uri} is not in the repository"
        return root + m.group(1)

    def uri_prefix(m):
        return m.string[: m.start(1)]

    def under_root(uri, where):
        assert uri.startswith(root), f"{where}: {uri} is not under {root}"

    checked = {"metadata": 0, "manifest_lists": 0, "manifests": 0, "entries": 0, "delete_entries": 0, "codecs": []}
    checked.update(bounds_kept=0, bounds_dropped=0)
    for rel in req["files"]:
        src = f"{req['source_prefix']}{rel}"
        dst = f"{req['mirror_prefix']}{rel}"
        with src_fs.open_input_file(src) as f:
            src_bytes = f.read()
        with dst_fs.open_input_file(dst) as f:
            dst_bytes = f.read()
        if rel.endswith(".metadata.json"):
            a, b = json.loads(src_bytes), json.loads(dst_bytes)  # Python ints are exact
            a["location"] = mapped(a["location"])
            for e in a.get("metadata-log", []):
                e["metadata-file"] = mapped(e["metadata-file"])
            for s in a.get("snapshots", []):
                if "manifest-list" in s:
                    s["manifest-list"] = mapped(s["manifest-list"])
                if "manifests" in s:
                    s["manifests"] = [mapped(m) for m in s["manifests"]]
            for k, v in list(a.get("properties", {}).items()):
                if re.match(r"^write\..+\.path$", k):
                    a["properties"][k] = mapped(v)
            for key in ("statistics", "partition-statistics"):
                for st in a.get(key, []):
                    st["statistics-path"] = mapped(st["statistics-path"])
            assert a == b, f"{rel}: the mirror's metadata differs from the mapped source"
            under_root(b["location"], rel)
            checked["metadata"] += 1
        elif rel.endswith(".avro"):
            ra = fastavro.reader(pa.BufferReader(src_bytes))
            rb = fastavro.reader(pa.BufferReader(dst_bytes))
            assert ra.metadata == rb.metadata, f"{rel}: header metadata differs"
            if ra.codec not in checked["codecs"]:
                checked["codecs"].append(ra.codec)
            ea, eb = list(ra), list(rb)
            assert len(ea) == len(eb), f"{rel}: record counts differ"
            if "manifest_length" in (ea[0] if ea else {}):
                checked["manifest_lists"] += 1
                for x, y in zip(ea, eb):
                    under_root(y["manifest_path"], rel)
                    size = dst_fs.get_file_info(strip(y["manifest_path"])).size
                    assert y["manifest_length"] == size, (
                        f"{rel}: manifest_length {y['manifest_length']} of {y['manifest_path']} is not its size {size}"
                    )
                    x["manifest_path"], x["manifest_length"] = y["manifest_path"], y["manifest_length"]
                    assert x == y, f"{rel}: a manifest_file record differs beyond path and length"
            else:
                checked["manifests"] += 1
                for x, y in zip(ea, eb):
                    a, b = x["data_file"], y["data_file"]
                    under_root(b["file_path"], rel)
                    a["file_path"] = mapped(a["file_path"])
                    if a.get("referenced_data_file"):
                        under_root(b["referenced_data_file"], rel)
                        a["referenced_data_file"] = mapped(a["referenced_data_file"])
                    if a.get("content") == 1:
                        # A position-delete file or deletion vector: rewritten, so its size
                        # is the mirror's object's, and its file_path bounds are mirror paths.
                        size = dst_fs.get_file_info(strip(b["file_path"])).size
                        assert b["file_size_in_bytes"] == size, (
                            f"{rel}: file_size_in_bytes {b['file_size_in_bytes']} of {b['file_path']} is not its size {size}"
                        )
                        a["file_size_in_bytes"] = size
                        # Bounds of the file_path column: mapped when both are whole paths of
                        # one ref (then every path between them is too), else dropped (Java
                        # truncates them to 16 characters, which no longer bound mirror paths).
                        bounds = [
                            kv for key in ("lower_bounds", "upper_bounds") for kv in a.get(key) or []
                            if kv["key"] == 2147483546
                        ]
                        refs = [ref_path.match(kv["value"].decode()) for kv in bounds]
                        keep = all(refs) and len({uri_prefix(m) for m in refs}) == 1
                        for key in ("lower_bounds", "upper_bounds"):
                            if a.get(key) is None:
                                continue
                            for kv in a[key]:
                                if kv["key"] == 2147483546 and keep:
                                    kv["value"] = mapped(kv["value"].decode()).encode()
                            if not keep:
                                a[key] = [kv for kv in a[key] if kv["key"] != 2147483546]
                        checked["delete_entries"] += 1
                        checked["bounds_kept" if keep else "bounds_dropped"] += 1
                    assert x == y, f"{rel}: a manifest entry differs beyond its paths and sizes"
                    checked["entries"] += 1
    return checked


def step(req):
    cat = catalog(req["db"], req["s3"])
    tbl = cat.load_table("ns.t")
    op, n = req["op"], req["n"]
    has_extra = any(f.name == "extra" for f in tbl.schema().fields)
    extra = f"e{n}" if has_extra else None
    if op == "append":
        tbl.append(batch(1000 * n, 5 + n % 4, extra=extra))
    elif op == "overwrite":
        tbl.overwrite(batch(1000 * n, 4, extra=extra), overwrite_filter=EqualTo("part", PARTS[n % len(PARTS)]))
    elif op == "delete":
        ids = sorted(r["id"] for r in tbl.scan(selected_fields=("id",)).to_arrow().to_pylist())
        tbl.delete(delete_filter=EqualTo("id", ids[len(ids) // 2]))
    elif op == "evolve":
        with tbl.update_schema() as update:
            update.add_column(f"c{n}" if has_extra else "extra", StringType())
    elif op == "expire":
        current = tbl.metadata.current_snapshot_id
        oldest = [s.snapshot_id for s in sorted(tbl.metadata.snapshots, key=lambda s: s.timestamp_ms)]
        tbl.maintenance.expire_snapshots().by_id(next(i for i in oldest if i != current)).commit()
    elif op == "remove-orphans":
        fs = fs_of(req["s3"])
        reached = set()
        for snap in tbl.metadata.snapshots:
            reached.add(strip(snap.manifest_list))
            for m in snap.manifests(tbl.io):
                reached.add(strip(m.manifest_path))
                for e in m.fetch_manifest_entry(tbl.io, discard_deleted=False):
                    reached.add(strip(e.data_file.file_path))
        removed = []
        for info in fs.get_file_info(pafs.FileSelector(strip(tbl.location()), recursive=True)):
            if info.type != pafs.FileType.File or info.path.endswith(".metadata.json"):
                continue
            if info.path not in reached:
                fs.delete_file(info.path)
                removed.append(info.path)
        return {"metadata": tbl.metadata_location, "removed": len(removed)}
    else:
        raise ValueError(f"unknown step {op}")
    return {"metadata": cat.load_table("ns.t").metadata_location}


def digest_rows(arrow):
    return hashlib.sha256("\n".join(rows_of(arrow)).encode()).hexdigest()


def digests(tbl):
    snapshots = {str(s.snapshot_id): digest_rows(tbl.scan(snapshot_id=s.snapshot_id).to_arrow()) for s in tbl.metadata.snapshots}
    current = tbl.metadata.current_snapshot_id
    return {"current": str(current), "current_rows": digest_rows(tbl.scan().to_arrow()), "snapshots": snapshots}


def digest(req):
    return {m: digests(StaticTable.from_metadata(m, s3_props(req["s3"]))) for m in req["metadata"]}


def poll(req):
    """Reads as a lakeFS-unaware reader would: the newest metadata file it finds, then its data."""
    fs = fs_of(req["s3"])
    metadata_dir = strip(req["table"]) + "/metadata"
    version = re.compile(r"/(\d+)-[^/]*\.metadata\.json$")
    reads, failures, seen = [], [], set()
    while not os.path.exists(req["stop"]):
        started = time.time()
        try:
            found = [
                i.path for i in fs.get_file_info(pafs.FileSelector(metadata_dir, allow_not_found=True))
                if version.search(i.path)
            ]
            if not found:
                time.sleep(0.05)
                continue
            newest = max(found, key=lambda p: int(version.search(p).group(1)))
            tbl = StaticTable.from_metadata("s3://" + newest, s3_props(req["s3"]))
            reads.append({"metadata": newest, **digests(tbl), "started": started, "ended": time.time()})
            seen.add(newest)
        except Exception as err:  # every failure is reported, none ends the polling
            failures.append(f"{type(err).__name__}: {err}")
    return {"reads": reads, "failures": failures, "metadata_files": len(seen)}


COMMANDS = {
    "step": step,
    "digest": digest,
    "poll": poll,
    "write-dev": write_dev,
    "write-main": write_main,
    "append": append,
    "read": read,
    "check": check,
}

if __name__ == "__main__":
    request = json.load(sys.stdin)
    json.dump(COMMANDS[sys.argv[1]](request), sys.stdout)

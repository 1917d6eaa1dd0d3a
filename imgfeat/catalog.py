"""The catalog of published partitions: WAREHOUSE/catalog/dt=<date>.json, one small file each.

Written by the feature_catalog DAG after every publish (idempotent: the same partition rewrites
its own file). Readers list the folder instead of scanning every features partition.
"""

from __future__ import annotations

from imgfeat import storage
from imgfeat.layout import Warehouse

KEYS = ("partition_date", "images_in", "published", "quarantined", "model", "code_bits", "commit_id",
        # late files: the partition's ingest revision and its new files; what its run revisited, or by whom
        "revision", "files_new", "late_partitions", "revisited_by")


def record(warehouse_root: str, date: str) -> dict:
    manifest = storage.read_json(Warehouse(warehouse_root).manifest(date))
    if manifest is None:
        raise storage.StorageError(f"no run manifest for dt={date} under {warehouse_root}")
    entry = {k: manifest.get(k) for k in KEYS}
    entry["features"] = Warehouse(warehouse_root).table("features", date)
    storage.write_json(Warehouse(warehouse_root).catalog_entry(date), entry)
    return entry

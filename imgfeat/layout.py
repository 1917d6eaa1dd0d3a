"""The warehouse and input layout: the one place that knows where a partition lives.

  INPUT/dt=<date>/...                          the partition's image files (any depth)
  WAREHOUSE/<stage>/dt=<date>/                 a stage's committed checkpoint (Parquet + _SUCCESS
                                               + _stage.json), for ingest, detect, crop, embed
  WAREHOUSE/features/dt=<date>/                published features (the output contract)
  WAREHOUSE/quarantine/dt=<date>/              published quarantine: image_id, stage, reason
  WAREHOUSE/runs/dt=<date>/manifest.json       the run manifest
  WAREHOUSE/runs/dt=<date>/retention.json      which checkpoints retention deleted, and when
  WAREHOUSE/reports/dt=<date>/index.html       the run report (imgfeat/report.py), thumbs/ beside it
  WAREHOUSE/catalog/dt=<date>.json             catalog entry of a published partition (feature_catalog DAG)
  WAREHOUSE/descriptors/deepbit<K>/<version>.json  a learned K-bit code layer of crops (train_descriptor DAG)
  WAREHOUSE/descriptors/deepbit<K>/current.json    {"version": ...}: the layer new runs use
  WAREHOUSE/descriptors/picture-deepbit<K>/...     the same for whole pictures (their `picture_code`)
  WAREHOUSE/index/<code>/shards/dt=<date>/     the similarity index of a code: one shard per partition
                                               (image_id, code, label; committed like a checkpoint)
  WAREHOUSE/duplicates/dt=<date>/              near-duplicate groups of a partition's images
  WAREHOUSE/_staging/<name>/dt=<date>/<id>/    where one attempt of a stage writes before its atomic rename
  WAREHOUSE/_staging/.probe-<id>/              storage.check_writable's probe (created, then removed at once)
  WAREHOUSE/<table>/.dt=<date>.old-<id>/       the previous checkpoint during a commit (spark/checkpoint.py)
  WAREHOUSE/_leases/dt=<date>.json             the partition's lease while a stage app runs (imgfeat/lease.py)
  WAREHOUSE/_staging/ready/dt=<date>.json      the readiness gate's quiet-period state while it waits
Roots are local paths or Hadoop URIs (hdfs://, file://).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

STAGES = ("ingest", "detect", "crop", "embed", "publish")
INFERENCE_STAGES = ("detect", "embed")  # the stages that run the engine's networks (engine, model dir)
CHECKPOINT_STAGES = STAGES[:-1]
PUBLISHED_TABLES = ("features", "quarantine", "duplicates")
STAGE_META = "_stage.json"
SUCCESS = "_SUCCESS"


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def input_partition(input_root: str, date: str) -> str:
    return _join(input_root, f"dt={date}")


def is_listed(name: str) -> bool:
    """Whether Spark's file scan reads a file or directory of this name: like Hadoop tools, it
    skips hidden names (`.x`, `_x` but not `_k=v`, in-flight `x._COPYING_`)."""
    hidden = (name.startswith("_") and "=" not in name) or name.startswith(".") or name.endswith("._COPYING_")
    return not hidden or name.startswith(("_common_metadata", "_metadata"))


def listing_digest(files: Iterable[tuple[str, int]]) -> str:
    """Digest of an input partition's listing: (path relative to the partition, size) of each file."""
    lines = sorted(f"{path}\t{size}" for path, size in files)
    return f"{len(lines)}:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


def previous_stage(stage: str) -> str | None:
    i = STAGES.index(stage)
    return STAGES[i - 1] if i else None


# What a learned code layer describes -> the prefix of its directory and versions.
DESCRIBED = {"object": "", "picture": "picture-"}


def _descriptors(bits: int, described: str) -> str:
    return f"{DESCRIBED[described]}deepbit{bits}"


class Warehouse:
    def __init__(self, root: str):
        self.root = root.rstrip("/")

    def checkpoint_root(self, stage: str) -> str:
        if stage not in CHECKPOINT_STAGES:
            raise ValueError(f"stage {stage!r} has no checkpoint table")
        return _join(self.root, stage)

    def checkpoint(self, stage: str, date: str) -> str:
        return _join(self.checkpoint_root(stage), f"dt={date}")

    def table(self, name: str, date: str) -> str:
        if name not in PUBLISHED_TABLES:
            raise ValueError(f"unknown published table {name!r}")
        return _join(self.root, name, f"dt={date}")

    def features_root(self) -> str:
        """The features table of every partition (dt=<date>/ below it)."""
        return _join(self.root, "features")

    def runs_root(self) -> str:
        return _join(self.root, "runs")

    def manifest(self, date: str) -> str:
        return _join(self.runs_root(), f"dt={date}", "manifest.json")

    def report(self, date: str) -> str:
        """The partition's run report; its thumbnails are in `thumbs/` next to it."""
        return _join(self.root, "reports", f"dt={date}", "index.html")

    def retention_record(self, date: str) -> str:
        return _join(self.runs_root(), f"dt={date}", "retention.json")

    def catalog_entry(self, date: str) -> str:
        return _join(self.root, "catalog", f"dt={date}.json")

    def descriptor_model(self, bits: int, version: str, described: str = "object") -> str:
        return _join(self.root, "descriptors", _descriptors(bits, described), f"{version}.json")

    def current_descriptor(self, bits: int, described: str = "object") -> str:
        return _join(self.root, "descriptors", _descriptors(bits, described), "current.json")

    def index_root(self) -> str:
        return _join(self.root, "index")

    def index(self, code: str) -> str:
        return _join(self.index_root(), code)

    def index_shards(self, code: str) -> str:
        return _join(self.index(code), "shards")

    def index_shard(self, code: str, date: str) -> str:
        return _join(self.index_shards(code), f"dt={date}")

    def staging_root(self, name: str, date: str) -> str:
        """Where the attempts of `name` for `date` stage their output, one directory each."""
        return _join(self.root, "_staging", name, f"dt={date}")

    def new_staging(self, name: str, date: str, attempt: str | None = None) -> str:
        """A directory of its own for one attempt (`attempt`: its id; default a new uuid)."""
        return _join(self.staging_root(name, date), attempt or uuid.uuid4().hex)

    def probe(self) -> str:
        """A new directory name in which to try a write (storage.check_writable)."""
        return _join(self.root, "_staging", f".probe-{uuid.uuid4().hex}")

    def ready_state(self, date: str) -> str:
        """The quiet-period state of wait_for_partition (the listing last seen and since when),
        kept between its pokes (reschedule mode clears a task's XComs) and removed when it ends."""
        return _join(self.root, "_staging", "ready", f"dt={date}.json")

    def lease(self, date: str) -> str:
        return _join(self.root, "_leases", f"dt={date}.json")

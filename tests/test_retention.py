"""Retention (`imgfeat.spark.retention.sweep`): the intermediate checkpoints of partitions published
more than N days ago are deleted, under each partition's lease; everything published stays."""

import datetime as dt
import json

import pytest

from imgfeat import lease
from imgfeat.layout import CHECKPOINT_STAGES, Warehouse
from imgfeat.spark import retention

pytestmark = pytest.mark.spark
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)


def _partition(root, date, published_days_ago=None, stages=CHECKPOINT_STAGES):
    for stage in stages:
        (root / stage / f"dt={date}").mkdir(parents=True)
        (root / stage / f"dt={date}" / "part-0.parquet").write_bytes(b"pixels")
    (root / "features" / f"dt={date}").mkdir(parents=True)
    (root / "features" / f"dt={date}" / "part-0.parquet").write_bytes(b"rows")
    if published_days_ago is not None:
        finished = (NOW - dt.timedelta(days=published_days_ago)).isoformat(timespec="seconds")
        (root / "runs" / f"dt={date}").mkdir(parents=True)
        (root / "runs" / f"dt={date}" / "manifest.json").write_text(
            json.dumps({"stages": {"publish": {"finished_at": finished}}}))


def _left(root, date):
    return [s for s in CHECKPOINT_STAGES if (root / s / f"dt={date}").exists()]


def test_old_partitions_lose_only_their_intermediate_checkpoints(spark, tmp_path):
    _partition(tmp_path, "2026-10-01", published_days_ago=40)
    _partition(tmp_path, "2026-10-02", published_days_ago=31, stages=("ingest", "crop"))
    _partition(tmp_path, "2026-10-20", published_days_ago=29)  # not old enough
    _partition(tmp_path, "2026-10-03")  # never published: no manifest
    _partition(tmp_path, "2026-10-04", published_days_ago=60)  # one of its stages is running
    _partition(tmp_path, "2026-12-01", published_days_ago=90)  # the partition being published
    wh = Warehouse(str(tmp_path))
    running = lease.acquire(lease.LocalStore(), wh.lease("2026-10-04"), "2026-10-04", "detect")
    try:
        swept = retention.sweep(spark, wh, "2026-12-01", 30, now=NOW)
    finally:
        running.release()
    assert swept == ["2026-10-01", "2026-10-02"]
    assert _left(tmp_path, "2026-10-01") == _left(tmp_path, "2026-10-02") == []
    for date in ("2026-10-20", "2026-10-03", "2026-10-04", "2026-12-01"):
        assert _left(tmp_path, date) == list(CHECKPOINT_STAGES)
    for date in ("2026-10-01", "2026-10-02"):  # what was published stays
        assert (tmp_path / "features" / f"dt={date}" / "part-0.parquet").read_bytes() == b"rows"
        assert (tmp_path / "runs" / f"dt={date}" / "manifest.json").exists()
    record = json.loads((tmp_path / "runs" / "dt=2026-10-02" / "retention.json").read_text())
    assert record == {"deleted": ["ingest", "crop"], "at": "2026-12-02T12:00:00+00:00", "by_publish_of": "2026-12-01",
                      "published_at": "2026-11-01T12:00:00+00:00", "keep_checkpoints_days": 30}
    assert not (tmp_path / "_leases" / "dt=2026-10-01.json").exists()  # the sweep released what it took
    # nothing left to sweep; the running partition's turn comes once its stage is done
    assert retention.sweep(spark, wh, "2026-12-01", 30, now=NOW) == ["2026-10-04"]


def test_zero_keeps_every_checkpoint(spark, tmp_path):
    _partition(tmp_path, "2026-10-01", published_days_ago=400)
    assert retention.sweep(spark, Warehouse(str(tmp_path)), "2026-12-01", 0, now=NOW) == []
    assert _left(tmp_path, "2026-10-01") == list(CHECKPOINT_STAGES)

"""Checkpoint commits on local Spark: all or nothing, and a re-run replaces only its partition."""

import json
import os

import pytest
from pyspark.sql import functions as F

from imgfeat import lease
from imgfeat.layout import Warehouse
from imgfeat.spark.checkpoint import commit, is_committed, read_meta
from imgfeat.spark.hadoop import HadoopFS

pytestmark = pytest.mark.spark


def _commit(spark, wh, date, df, meta=None, leased=True):
    """A commit as a stage app makes it: holding the partition's lease (or not)."""
    def go(held=None):
        return commit(spark, df, wh.checkpoint("ingest", date), wh.staging_root("ingest", date),
                      wh.new_staging("ingest", date), meta or (lambda w: {"rows": w.count()}), lease=held)
    if not leased:
        return go()
    with lease.hold(spark, wh.lease(date), date, "ingest") as held:
        return go(held)


def test_commit_writes_data_success_and_meta(spark, tmp_path):
    wh = Warehouse(str(tmp_path))
    info = _commit(spark, wh, "2026-11-01", spark.range(10).repartition(3))
    target = wh.checkpoint("ingest", "2026-11-01")
    assert info == {"rows": 10} and read_meta(spark, target) == {"rows": 10}
    assert is_committed(HadoopFS(spark), target)
    assert sorted(r.id for r in spark.read.parquet(target).collect()) == list(range(10))
    assert not os.listdir(tmp_path / "_staging" / "ingest")  # no staging left behind


def test_a_failing_stage_leaves_the_committed_checkpoint_untouched(spark, tmp_path):
    wh = Warehouse(str(tmp_path))
    target = wh.checkpoint("ingest", "2026-11-01")
    _commit(spark, wh, "2026-11-01", spark.range(5))
    before = sorted(os.listdir(target))

    @F.udf("long")
    def explode_on_7(x):
        if x == 7:
            raise RuntimeError("simulated executor failure")
        return x

    bad = spark.range(10).repartition(4).select(explode_on_7("id").alias("id"))
    with pytest.raises(Exception, match="simulated executor failure"):
        _commit(spark, wh, "2026-11-01", bad)
    assert sorted(os.listdir(target)) == before
    assert sorted(r.id for r in spark.read.parquet(target).collect()) == list(range(5))
    # Without the lease, an attempt leaves other attempts' staging alone (it could be live)...
    staged = os.listdir(tmp_path / "_staging" / "ingest" / "dt=2026-11-01")
    assert len(staged) == 1
    _commit(spark, wh, "2026-11-01", spark.range(2), leased=False)
    assert os.listdir(tmp_path / "_staging" / "ingest" / "dt=2026-11-01") == staged
    # ... while holding it, it deletes what the failed one left in staging, then commits.
    _commit(spark, wh, "2026-11-01", spark.range(3))
    assert sorted(r.id for r in spark.read.parquet(target).collect()) == [0, 1, 2]
    assert not os.listdir(tmp_path / "_staging" / "ingest")


def test_rerun_replaces_only_its_own_partition(spark, tmp_path):
    wh = Warehouse(str(tmp_path))
    _commit(spark, wh, "2026-11-01", spark.range(4))
    _commit(spark, wh, "2026-11-02", spark.range(100, 106))
    for _ in range(2):  # idempotent: twice the same partition, no duplicates
        _commit(spark, wh, "2026-11-01", spark.range(4))
    both = spark.read.parquet(str(tmp_path / "ingest"))
    counts = {str(r["dt"]): r["count"] for r in both.groupBy("dt").count().collect()}
    assert counts == {"2026-11-01": 4, "2026-11-02": 6}


def test_an_uncommitted_directory_is_not_a_checkpoint(spark, tmp_path):
    wh = Warehouse(str(tmp_path))
    target = wh.checkpoint("detect", "2026-11-01")
    spark.range(3).write.parquet(target)  # has _SUCCESS but no _stage.json: not ours
    assert not is_committed(HadoopFS(spark), target)
    (tmp_path / "detect" / "dt=2026-11-01" / "_stage.json").write_text(json.dumps({"rows": 3}))
    assert is_committed(HadoopFS(spark), target)


class Crash(BaseException):
    """Stands for the process dying at a point of the commit (nothing after it runs)."""


@pytest.mark.parametrize("point", ["after_write", "after_delete", "after_rename"])
def test_a_crash_at_any_point_of_a_commit_leaves_the_old_or_the_new_checkpoint(spark, tmp_path, monkeypatch, point):
    from imgfeat.spark import checkpoint

    wh = Warehouse(str(tmp_path))
    date = "2026-11-01"
    target = wh.checkpoint("ingest", date)
    _commit(spark, wh, date, spark.range(5), meta=lambda w: {"rows": w.count(), "v": "old"})
    _commit(spark, wh, "2026-11-02", spark.range(100, 102))

    def die(stage, at):
        if at == point:
            raise Crash(at)
    monkeypatch.setattr(checkpoint, "fault", die)
    with pytest.raises(Crash):
        commit(spark, spark.range(3), target, wh.staging_root("ingest", date), wh.new_staging("ingest", date),
               lambda w: {"rows": w.count(), "v": "new"}, stage="ingest")
    monkeypatch.undo()
    # Readers of the parent directory never see a partition twice (the aside copy is hidden).
    both = spark.read.parquet(str(tmp_path / "ingest"))
    counts = {str(r["dt"]): r["count"] for r in both.groupBy("dt").count().collect()}
    assert counts in ({"2026-11-01": 5, "2026-11-02": 2}, {"2026-11-01": 3, "2026-11-02": 2},
                      {"2026-11-02": 2})  # dt=2026-11-01 missing only until a reader restores it
    fs = HadoopFS(spark)
    assert is_committed(fs, target)  # restores the old copy if the crash left it aside
    version = read_meta(spark, target)["v"]
    assert version == ("new" if point == "after_rename" else "old")
    assert sorted(r.id for r in spark.read.parquet(target).collect()) == list(range(3 if version == "new" else 5))
    assert not [n for n in os.listdir(tmp_path / "ingest") if n.startswith(".dt=")]  # no aside left
    # The retry commits over it and cleans the dead attempt's staging.
    _commit(spark, wh, date, spark.range(3), meta=lambda w: {"rows": w.count(), "v": "retry"})
    assert read_meta(spark, target)["v"] == "retry" and sorted(os.listdir(tmp_path / "ingest")) == [
        "dt=2026-11-01", "dt=2026-11-02"]
    assert not os.path.exists(tmp_path / "_staging" / "ingest" / f"dt={date}")
    assert sorted(os.listdir(target)) == sorted(
        n for n in os.listdir(target) if n.startswith(("part-", ".part-", "_SUCCESS", "._SUCCESS", "_stage.json",
                                                       "._stage.json")))  # nothing nested


def test_a_commit_never_renames_into_an_existing_directory(spark, tmp_path, monkeypatch):
    """Whoever wins the place between moving the old copy aside and the rename, the staging
    directory is not nested into it and the commit fails."""
    from imgfeat.spark import checkpoint
    from imgfeat.spark.checkpoint import CommitError

    wh = Warehouse(str(tmp_path))
    date = "2026-11-01"
    target = wh.checkpoint("ingest", date)
    _commit(spark, wh, date, spark.range(5))

    def intruder(stage, at):
        if at == "after_delete":
            spark.range(7).write.parquet(target)
    monkeypatch.setattr(checkpoint, "fault", intruder)
    with pytest.raises(CommitError, match="could not rename"):
        commit(spark, spark.range(3), target, wh.staging_root("ingest", date), wh.new_staging("ingest", date),
               lambda w: {"rows": w.count()}, stage="ingest")
    assert not [n for n in os.listdir(target) if not n.startswith(("part-", ".part-", "_SUCCESS", "._SUCCESS"))]


def test_a_stage_prints_progress_lines_while_its_tasks_run(spark, tmp_path):
    import io
    import re
    import time

    from imgfeat.spark.progress import Progress, line

    assert line("imgfeat detect dt=d", 320, 12, 40, 30.0) == \
        "imgfeat detect dt=d: ~96/320 images (12/40 tasks), 3.2 img/s, 30 s"
    printed = tmp_path / "printed"

    class Out(io.StringIO):  # marks that a line was printed
        def write(self, text):
            printed.touch()
            return super().write(text)

    def held(it):  # each task waits for the first line (no timing: the line is printed while they run)
        deadline = time.monotonic() + 120
        while not printed.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield from it
    out = Out()
    with Progress(spark, "imgfeat t dt=d", 40, interval=0.2, out=out):
        assert spark.range(0, 40, numPartitions=8).mapInPandas(held, "id long").count() == 40
    lines = out.getvalue().splitlines()
    # the first line: the biggest running stage is the map's 8 tasks, none done yet
    assert re.fullmatch(r"imgfeat t dt=d: ~0/40 images \(0/8 tasks\), 0\.0 img/s, \d+ s", lines[0]), lines
    assert all(re.fullmatch(r"imgfeat t dt=d: ~\d+/40 images \(\d+/\d+ tasks\), [\d.]+ img/s, \d+ s", ln) for ln in lines)
    with Progress(spark, "imgfeat t dt=d", 40, interval=0, out=out) as off:
        assert off._thread is None  # IMGFEAT_PROGRESS_S=0: no thread, no line

"""Crash-safe commits and concurrent runs of one partition, with real processes.

- a stage app killed (a real process exit, `IMGFEAT_FAULT`) between moving its old checkpoint aside
  and renaming the new one in; publish killed the same way: the retries publish the same rows, and
  nothing published before is quarantined;
- a source partition caught mid-commit while another partition's publish reads it;
- two `spark-submit`s of the same partition started together, on a local and on a real HDFS
  warehouse: one complete result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from conftest import jpeg
from imgfeat import checkpoints, paths
from imgfeat.layout import STAGES
from imgfeat.spark.checkpoint import FAULT_EXIT
from imgfeat.spark.runner import StageFailed, parse, run

pytestmark = pytest.mark.spark
DATE, OTHER = "2026-11-09", "2026-11-10"
PHOTOS = {"a/chelsea.jpg": "chelsea", "a/coffee.jpg": "coffee", "a/astronaut.jpg": "astronaut"}


@pytest.fixture(scope="module")
def input_root(tmp_path_factory, photos) -> Path:
    root = tmp_path_factory.mktemp("input")
    for image_id, name in PHOTOS.items():
        (root / f"dt={DATE}" / image_id).parent.mkdir(parents=True, exist_ok=True)
        (root / f"dt={DATE}" / image_id).write_bytes(jpeg(photos[name]))
    return root


def _args(input_root, warehouse, model_dir, date=DATE) -> Namespace:
    argv = ["--partition-date", date, "--input-root", str(input_root), "--warehouse-root", str(warehouse),
            "--model-dir", model_dir]
    args = parse("ingest", argv)
    args.model_manifest = parse("detect", argv).model_manifest
    return args


def _submit(stage, args, env=None) -> subprocess.Popen:
    """The stage's app under a real spark-submit (local[1]), as the DAG submits it."""
    cmd = [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[1]",
           "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=2",
           str(paths.REPO / "spark_apps" / f"{stage}.py"),
           "--partition-date", args.partition_date, "--input-root", str(args.input_root),
           "--warehouse-root", str(args.warehouse_root), "--model-dir", args.model_dir]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(paths.REPO), os.environ.get("PYTHONPATH")])),
           **(env or {})}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(proc, timeout=300) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def _failed(results) -> str:
    """What a failed spark-submit said: its error lines first (Spark's INFO lines can bury them:
    a CI run's message was the tail of its log, all INFO), then its tail."""
    out = []
    for k, (rc, log) in enumerate(results):
        if rc:
            said = [ln for ln in log.splitlines()
                    if re.search(r"imgfeat|Error|Exception|Traceback|refused|lease", ln) and " INFO " not in ln]
            out.append(f"--- run {k} exited {rc}:\n" + "\n".join(said[:60]) + f"\n--- its tail:\n{log[-1500:]}")
    return "\n".join(out)


def _rows(spark, wh, date, table="features") -> dict:
    path = Path(wh) / table / f"dt={date}"
    return {r.image_id: r.asDict() for r in spark.read.parquet(str(path)).collect()}


def _payload(row) -> tuple:
    return tuple(row[c] for c in ("sha256", "label", "score", "x1", "y1", "x2", "y2", "code", "embedding",
                                   "picture_code", "picture_embedding", "model"))


def _asides(wh) -> list:
    return sorted(str(p.relative_to(wh)) for p in Path(wh).glob("*/.dt=*"))


@pytest.fixture(scope="module")
def published(spark, input_root, model_dir, tmp_path_factory):
    """The partition published once, in-process: the rows every later attempt must keep."""
    wh = tmp_path_factory.mktemp("warehouse")
    args = _args(input_root, wh, model_dir)
    for stage in STAGES:
        run(spark, stage, args)
    return wh, args, _rows(spark, wh, DATE)


def test_kills_between_aside_and_rename_then_retries_publish_the_same_rows(spark, published, photos):
    wh, args, before = published
    assert len(before) == 3 and not _rows(spark, wh, DATE, "quarantine")
    # The partition gains a file: a re-run carries the 3 published rows over and infers only the new one.
    (Path(args.input_root) / f"dt={DATE}" / "a" / "rocket.jpg").write_bytes(jpeg(photos["rocket"]))
    for stage in ("ingest", "detect"):
        run(spark, stage, args)
    crop_before = json.loads((wh / "crop" / f"dt={DATE}" / "_stage.json").read_text())["commit_id"]

    # crop dies after moving its old checkpoint aside, before renaming the new one in.
    rc, log = _wait(_submit("crop", args, {"IMGFEAT_FAULT": "crop:after_delete"}))
    assert rc == FAULT_EXIT and "injected fault crop:after_delete" in log, log[-3000:]
    assert not (wh / "crop" / f"dt={DATE}").exists() and len(_asides(wh)) == 1
    assert (wh / "_leases" / f"dt={DATE}.json").exists()  # the dead attempt's lease
    assert not checkpoints.current(str(wh), "crop", DATE)[0]  # Airflow runs crop again
    run(spark, "crop", args)  # the retry: takes over the dead lease, restores, then replaces
    assert json.loads((wh / "crop" / f"dt={DATE}" / "_stage.json").read_text())["commit_id"] != crop_before
    run(spark, "embed", args)

    # publish dies after moving the features table aside: the retry must still find the carried-over rows.
    rc, log = _wait(_submit("publish", args, {"IMGFEAT_FAULT": "publish:after_delete"}))
    assert rc == FAULT_EXIT and "injected fault publish:after_delete" in log, log[-3000:]
    assert not (wh / "features" / f"dt={DATE}").exists() and _asides(wh) == [
        next(a for a in _asides(wh) if a.startswith(f"features/.dt={DATE}.old-"))]
    manifest = run(spark, "publish", args)

    after = _rows(spark, wh, DATE)
    assert set(after) == {*before, "a/rocket.jpg"}
    assert {k: _payload(after[k]) for k in before} == {k: _payload(r) for k, r in before.items()}
    assert after["a/rocket.jpg"]["reused_from"] is None
    assert _rows(spark, wh, DATE, "quarantine") == {}  # nothing quarantined, reuse_source_missing least of all
    assert manifest["images_by_source"] == {"inferred": 1, "reused_this_partition": 3, "reused_other_partitions": 0}
    assert (manifest["published"], manifest["quarantined"]) == (4, 0)
    assert checkpoints.current(str(wh), "publish", DATE)[0]
    assert _asides(wh) == [] and not list((wh / "_staging").glob("*/*"))
    assert not (wh / "_leases" / f"dt={DATE}.json").exists()


def test_a_source_partition_caught_mid_commit_is_not_quarantined(spark, published, photos, monkeypatch):
    from imgfeat import lease

    wh, args, _ = published
    other = Namespace(**{**vars(args), "partition_date": OTHER})
    part = Path(args.input_root) / f"dt={OTHER}"
    part.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(args.input_root) / f"dt={DATE}" / "a" / "chelsea.jpg", part / "cat.jpg")
    for stage in STAGES[:-1]:
        run(spark, stage, other)
    source = _rows(spark, wh, DATE)["a/chelsea.jpg"]
    # dt=DATE's publish is caught between moving its features aside and renaming the new ones in,
    # by a live run (its lease held by another run).
    features = wh / "features" / f"dt={DATE}"
    features.rename(wh / "features" / f".dt={DATE}.old-crashed")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "image_features")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "backfill__live")
    live = lease.acquire(lease.LocalStore(), str(wh / "_leases" / f"dt={DATE}.json"), DATE, "publish", wait_s=0)
    monkeypatch.delenv("AIRFLOW_CTX_DAG_RUN_ID")
    with pytest.raises(StageFailed, match=f"source partitions dt={DATE} of reused rows were being rewritten"):
        run(spark, "publish", other)
    assert not (wh / "features" / f"dt={OTHER}").exists() and not (wh / "quarantine" / f"dt={OTHER}").exists()
    # Once that run is gone (its lease released, or its process dead), the next attempt repairs
    # the source partition and publishes the reused row.
    live.release()
    manifest = run(spark, "publish", other)
    cat = _rows(spark, wh, OTHER)["cat.jpg"]
    assert cat["reused_from"] == f"dt={DATE}/a/chelsea.jpg" and _payload(cat) == _payload(source)
    assert manifest["images_by_source"]["reused_other_partitions"] == 1 and manifest["quarantined"] == 0
    assert features.is_dir() and _asides(wh) == []


# --- two runs of one partition at once ---------------------------------------------------------------
# Whichever run gets the lease first holds it 8 s longer than its work (JVM start-up differs by less),
# so the two runs surely meet.
HOLD = {"IMGFEAT_FAULT": "ingest:after_write:pause=8"}


def _check_one_complete_result(listing, read_json, files: int):
    """`listing(rel) -> names or []`, `read_json(rel) -> dict`: one committed ingest, complete."""
    names = listing(f"ingest/dt={DATE}")
    assert "_SUCCESS" in names and "_stage.json" in names
    assert all(n.startswith(("part-", ".part-", "_SUCCESS", "._SUCCESS", "_stage.json", "._stage.json"))
               for n in names), names  # no staging directory nested into it
    meta = read_json(f"ingest/dt={DATE}/_stage.json")
    assert (meta["rows"], meta["files"]) == (files, files)
    assert [n for n in listing("ingest") if n != f"dt={DATE}"] == []  # no aside copy
    assert listing(f"_staging/ingest/dt={DATE}") == []
    assert listing("_leases") == []
    return meta


def test_two_runs_of_one_partition_started_together_give_one_complete_result(spark, input_root, model_dir, tmp_path):
    wh = tmp_path / "warehouse"
    args = _args(input_root, wh, model_dir)
    files = sum(1 for p in (input_root / f"dt={DATE}").rglob("*") if p.is_file())
    procs = [_submit("ingest", args, {**HOLD, "AIRFLOW_CTX_DAG_ID": "image_features", "AIRFLOW_CTX_DAG_RUN_ID": run_id})
             for run_id in ("backfill__a", "manual__b")]
    results = [_wait(p) for p in procs]
    assert [rc for rc, _ in results] == [0, 0], _failed(results)
    # The second one waited for the first one's lease, then committed after it: one after the other.
    waited = [log for _, log in results if f"waiting up to 300 s: partition dt={DATE} is leased by run " in log]
    assert len(waited) == 1, [log[-2000:] for _, log in results]

    def listing(rel):
        p = wh / rel
        return sorted(os.listdir(p)) if p.is_dir() else []
    meta = _check_one_complete_result(listing, lambda rel: json.loads((wh / rel).read_text()), files)
    assert spark.read.parquet(str(wh / "ingest" / f"dt={DATE}")).count() == files
    assert checkpoints.current(str(wh), "ingest", DATE, str(input_root))[0] and meta["commit_id"]


def test_the_second_run_fails_fast_naming_the_holder(input_root, model_dir, tmp_path):
    wh = tmp_path / "warehouse"
    args = _args(input_root, wh, model_dir)
    run_ids = ("backfill__a", "manual__b")
    procs = [_submit("ingest", args, {**HOLD, "AIRFLOW_CTX_DAG_ID": "image_features", "AIRFLOW_CTX_DAG_RUN_ID": run_id,
                                      "IMGFEAT_LEASE_WAIT_S": "0"})
             for run_id in run_ids]
    results = [_wait(p) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 1], results
    loser = [rc for rc, _ in results].index(1)
    lost = [line for line in results[loser][1].splitlines() if line.startswith("imgfeat ingest failed")]
    # it names the other run, the holder
    assert len(lost) == 1 and lost[0].startswith(f"imgfeat ingest failed: partition dt={DATE} is leased by run "
                                                 f"image_features/{run_ids[1 - loser]} (stage ingest, pid "), lost
    assert " until 20" in lost[0]
    assert (wh / "ingest" / f"dt={DATE}" / "_stage.json").exists()


@pytest.mark.hdfs
def test_two_runs_on_a_real_hdfs_give_one_complete_result(hdfs, input_root, model_dir):
    from hdfs import InsecureClient

    client = InsecureClient(hdfs.webhdfs_url, user="root")
    client.upload("/concurrent/images", str(input_root))
    files = sum(1 for p in (input_root / f"dt={DATE}").rglob("*") if p.is_file())
    args = _args(f"{hdfs.uri}/concurrent/images", f"{hdfs.uri}/concurrent/warehouse", model_dir)
    env = {**HOLD, **hdfs.dfs_env(), "HADOOP_USER_NAME": "root", "AIRFLOW_CTX_DAG_ID": "image_features"}
    procs = [_submit("ingest", args, {**env, "AIRFLOW_CTX_DAG_RUN_ID": run_id}) for run_id in ("a", "b")]
    results = [_wait(p) for p in procs]
    assert [rc for rc, _ in results] == [0, 0], _failed(results)
    assert sum("waiting up to 300 s" in log for _, log in results) == 1

    def listing(rel):
        path = f"/concurrent/warehouse/{rel}"
        return sorted(client.list(path)) if client.status(path, strict=False) else []

    def read_json(rel):
        with client.read(f"/concurrent/warehouse/{rel}", encoding="utf-8") as r:
            return json.load(r)
    _check_one_complete_result(listing, read_json, files)

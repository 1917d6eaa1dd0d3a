"""End to end through Airflow: `airflow dags test` runs the five spark-submits on real photos."""

import json
import shutil
import subprocess
import sys

import pytest

from conftest import E2E_DATE, feature_rows, hamming, KNOWN
from devtools import badfiles
from devtools.local import airflow_env, dags_test
from imgfeat import descriptor, paths
from imgfeat.layout import STAGES

pytestmark = [pytest.mark.airflow, pytest.mark.slow]
DATE = E2E_DATE


@pytest.fixture(scope="module")
def run(local_run):
    return local_run


def _rows(warehouse):
    return feature_rows(warehouse / "features" / f"dt={DATE}")


def _commits(warehouse):
    ids = {s: json.loads((warehouse / s / f"dt={DATE}" / "_stage.json").read_text())["commit_id"]
           for s in STAGES[:-1]}
    ids["publish"] = json.loads((warehouse / "runs" / f"dt={DATE}" / "manifest.json").read_text())["commit_id"]
    return ids


def _table(path):
    import pyarrow.parquet as pq

    return pq.read_table(str(path)).to_pylist()


def test_the_dag_run_succeeds_with_five_spark_submits(run):
    import re

    assert run["rc"] == 0, run["log"][-3000:]
    submits = re.findall(r"Spark-Submit cmd: (spark-submit .*)", run["log"])
    # one spark-submit per stage, in pipeline order, each for the run's partition
    assert [re.search(r" \S+/spark_apps/(\w+)\.py --partition-date (\S+) ", cmd).groups() for cmd in submits] == [
        (stage, DATE) for stage in STAGES]
    for cmd in submits:  # each on the connection's local master, shipping the package as --py-files
        assert cmd.startswith("spark-submit --master local[2] "), cmd
        assert re.search(rf" --py-files {re.escape(str(paths.REPO))}/build/imgfeat-\w+\.zip ", cmd), cmd
    for stage in STAGES[:-1]:
        meta = json.loads((run["warehouse"] / stage / f"dt={DATE}" / "_stage.json").read_text())
        assert meta["rows"] == 3 + 6 + len(badfiles.EXPECTED)


def test_published_rows_and_quarantine(run):
    features = {r["image_id"]: r for r in _table(run["warehouse"] / "features" / f"dt={DATE}")}
    quarantine = {r["image_id"]: r for r in _table(run["warehouse"] / "quarantine" / f"dt={DATE}")}
    for image_id, label in KNOWN.items():
        assert features[image_id]["label"] == label
    bad = {k: v for k, v in run["bad"].items() if v is not None}
    assert {k: r["reason"].split(":")[0] for k, r in quarantine.items()} == bad
    assert all(r["stage"] == "ingest" for r in quarantine.values())
    every_file = set(KNOWN) | set(run["sample"]) | set(run["bad"])
    assert set(features) | set(quarantine) == every_file and not set(features) & set(quarantine)
    for r in features.values():
        assert len(r["code"]) == r["code_bits"] // 8 == 8 and len(r["embedding"]) == 1280
        assert len(r["picture_code"]) == 8 and len(r["picture_embedding"]) == descriptor.PICTURE_DIM


def test_manifest(run):
    m = json.loads((run["warehouse"] / "runs" / f"dt={DATE}" / "manifest.json").read_text())
    n_bad = sum(v is not None for v in run["bad"].values())
    assert (m["images_in"], m["published"], m["quarantined"]) == (
        3 + 6 + len(badfiles.EXPECTED), 3 + 6 + len(badfiles.EXPECTED) - n_bad, n_bad)
    assert m["partition_date"] == DATE and m["code_bits"] == 64


def test_a_second_run_skips_every_current_checkpoint(run, airflow_home):
    before, commits = _rows(run["warehouse"]), _commits(run["warehouse"])
    log = airflow_home / "e2e-again.log"
    assert dags_test("image_features", DATE, run["conf"], run["env"], log_file=log) == 0
    text = log.read_text()
    assert "spark-submit --master" not in text
    for stage in STAGES:
        assert f"{stage} dt={DATE}: checkpoint {commits[stage]} is committed and current; skipping spark-submit" in text
    assert _rows(run["warehouse"]) == before and _commits(run["warehouse"]) == commits


def test_force_recomputes_every_stage_with_the_same_rows(run, airflow_home):
    before, commits = _rows(run["warehouse"]), _commits(run["warehouse"])
    log = airflow_home / "e2e-force.log"
    assert dags_test("image_features", DATE, {**run["conf"], "force": True}, run["env"], log_file=log) == 0
    assert log.read_text().count("spark-submit --master local[2]") >= len(STAGES)
    after = _commits(run["warehouse"])
    assert all(after[s] != commits[s] for s in STAGES)
    assert _rows(run["warehouse"]) == before


def test_a_changed_parameter_recomputes_exactly_the_stages_it_shapes(run, tmp_path):
    warehouse = tmp_path / "warehouse"
    shutil.copytree(run["warehouse"], warehouse)
    before, commits = {r["image_id"]: r for r in _table(warehouse / "features" / f"dt={DATE}")}, _commits(warehouse)

    # code_bits: embed onward (detect marked no reused rows, so the code does not shape it)
    log = tmp_path / "bits.log"
    conf = {**run["conf"], "warehouse_root": str(warehouse), "code_bits": 128}
    assert dags_test("image_features", DATE, conf, run["env"], log_file=log) == 0, log.read_text()[-3000:]
    text, after = log.read_text(), _commits(warehouse)
    assert {s for s in STAGES if f"spark_apps/{s}.py --partition-date {DATE}" in text} == {"embed", "publish"}
    assert "embed dt=2026-11-05: checkpoint was made with code_bits=64, this run asks code_bits=128" in text
    assert [s for s in STAGES if after[s] != commits[s]] == ["embed", "publish"]
    bits = {r["image_id"]: r for r in _table(warehouse / "features" / f"dt={DATE}")}
    assert set(bits) == set(before)
    for k, r in bits.items():
        assert (r["label"], r["x1"], r["y2"], r["embedding"]) == (before[k]["label"], before[k]["x1"],
                                                                  before[k]["y2"], before[k]["embedding"])
        assert r["code_bits"] == 128 and len(r["code"]) == 16 and r["model"].endswith("code=simhash128c-s20160626")
        assert len(r["picture_code"]) == 16 and r["picture_embedding"] == before[k]["picture_embedding"]

    # score_threshold: detect onward; a box below the new threshold is no longer an object
    log, commits = tmp_path / "threshold.log", after
    conf["score_threshold"] = 0.9
    assert dags_test("image_features", DATE, conf, run["env"], log_file=log) == 0, log.read_text()[-3000:]
    text, after = log.read_text(), _commits(warehouse)
    assert {s for s in STAGES if f"spark_apps/{s}.py --partition-date {DATE}" in text} == set(STAGES[1:])
    assert [s for s in STAGES if after[s] != commits[s]] == list(STAGES[1:])
    high = {r["image_id"]: r for r in _table(warehouse / "features" / f"dt={DATE}")}
    assert set(high) == set(before)
    for k, r in high.items():
        if before[k]["score"] >= 0.9:
            assert (r["label"], r["score"], r["x1"]) == (before[k]["label"], before[k]["score"], before[k]["x1"])
        else:
            assert (r["label"], r["score"], r["x1"], r["y1"]) == (None, 0.0, 0, 0), k
    assert any(0 < r["score"] < 0.9 for r in before.values()) and any(r["score"] >= 0.9 for r in before.values())
    assert {r["model"].split(";")[2] for r in high.values()} == {"min_score=0.9"}


@pytest.mark.parametrize("args,message", [
    (["--date", "2026-02-30"], "error: DATE: '2026-02-30' is not a calendar date"),
    (["--input", "/nonexistent/images"], "error: INPUT: '/nonexistent/images' is not a directory"),
    (["--warehouse", "/tmp/../x"], "error: WAREHOUSE: '/tmp/../x' contains '..'"),
    (["--date", "1999-01-01", "--input", "/tmp"], "error: DATE: no input partition /tmp/dt=1999-01-01"),
])
def test_make_run_refuses_bad_arguments_before_any_spark_job(args, message, tmp_path):
    env = {**airflow_env(tmp_path / "airflow"), "IMGFEAT_VAR": str(tmp_path)}  # writes the home's secrets.json
    before = sorted(p.name for p in (tmp_path / "airflow").iterdir())
    out = subprocess.run([sys.executable, "-m", "imgfeat.cli", "run", *args], capture_output=True, text=True,
                         cwd=paths.REPO, env=env)
    assert out.returncode == 2
    assert out.stderr.strip().startswith(message)
    # nothing started, not even Airflow's DB: the home holds only the secrets the env above generated
    assert sorted(p.name for p in (tmp_path / "airflow").iterdir()) == before == ["secrets.json"]


def test_catalog_entry_of_a_published_partition(run):
    from imgfeat import catalog

    entry = catalog.record(str(run["warehouse"]), DATE)
    assert json.loads((run["warehouse"] / "catalog" / f"dt={DATE}.json").read_text()) == entry
    # what the partition's published tables hold, and the commit that wrote them
    features = _table(run["warehouse"] / "features" / f"dt={DATE}")
    commit = json.loads((run["warehouse"] / "features" / f"dt={DATE}" / "_stage.json").read_text())["commit_id"]
    assert (entry["partition_date"], entry["images_in"], entry["published"], entry["quarantined"], entry["commit_id"]) == (
        DATE, 3 + 6 + len(badfiles.EXPECTED), len(features),
        len(_table(run["warehouse"] / "quarantine" / f"dt={DATE}")), commit)
    assert entry["model"] == features[0]["model"] and entry["code_bits"] == 64
    # late files: the ingest that made the published rows (a forced run earlier in this module re-ingested)
    ingest = json.loads((run["warehouse"] / "ingest" / f"dt={DATE}" / "_stage.json").read_text())
    assert (entry["revision"], entry["files_new"]) == (ingest["revision"], ingest["files_new"])
    assert entry["revision"] >= 1 and (entry["late_partitions"], entry["revisited_by"]) == ([], None)
    assert entry["features"] == f"{run['warehouse']}/features/dt={DATE}"


def test_engine_bigdl_runs_the_dag_and_agrees_with_openvino(run, tmp_path):
    """The same partition through BigDL's distributed predict (detect, embed): every published
    image agrees with the OpenVINO run within the issue's tolerances."""
    import numpy as np

    warehouse = tmp_path / "warehouse-bigdl"
    shutil.copytree(run["warehouse"], warehouse)  # the engine shapes detect onward: ingest is kept
    conf = {**run["conf"], "warehouse_root": str(warehouse), "engine": "bigdl"}
    rc = dags_test("image_features", DATE, conf, run["env"], log_file=tmp_path / "bigdl.log")
    log = (tmp_path / "bigdl.log").read_text()
    assert rc == 0, log[-3000:]
    assert {s for s in STAGES if f"spark_apps/{s}.py --partition-date {DATE}" in log} == set(STAGES[1:])
    assert f"detect dt={DATE}: checkpoint was made with engine=openvino, this run asks engine=bigdl" in log
    assert "bigdl-dllib-spark_3.1.3-2.4.0-jar-with-dependencies.jar" in log  # --jars of detect and embed
    ov = {r["image_id"]: r for r in _table(run["warehouse"] / "features" / f"dt={DATE}")}
    bd = {r["image_id"]: r for r in _table(warehouse / "features" / f"dt={DATE}")}
    assert set(bd) == set(ov) and len(bd) == 3 + 6 + sum(v is None for v in badfiles.EXPECTED.values())
    assert {r["model"].split(";")[1] for r in bd.values()} == {"engine=bigdl-dllib-2.4.0-mkldnn-f32"}
    for image_id, a in ov.items():
        b = bd[image_id]
        assert b["label"] == a["label"], image_id
        boxes = [(r["x1"], r["y1"], r["x2"], r["y2"]) for r in (a, b)]
        ix = max(0, min(boxes[0][2], boxes[1][2]) - max(boxes[0][0], boxes[1][0]))
        iy = max(0, min(boxes[0][3], boxes[1][3]) - max(boxes[0][1], boxes[1][1]))
        area = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in boxes]
        assert ix * iy / (area[0] + area[1] - ix * iy) >= 0.9, image_id
        assert abs(a["score"] - b["score"]) <= 0.02, image_id
        assert float(np.dot(a["embedding"], b["embedding"])) >= 0.99, image_id
        assert hamming(a["code"], b["code"]) <= 2, image_id
        # the whole picture's descriptor too (BigDL predicts the crop and the picture of a row)
        assert float(np.dot(a["picture_embedding"], b["picture_embedding"])) >= 0.99, image_id
        assert hamming(a["picture_code"], b["picture_code"]) <= 2, image_id
    quarantine = lambda w: sorted((r["image_id"], r["reason"]) for r in _table(w / "quarantine" / f"dt={DATE}"))  # noqa: E731
    assert quarantine(warehouse) == quarantine(run["warehouse"])


def test_make_run_records_the_runs_real_start_and_end_times(run):
    """`make run` (the `run` command, which made this module's run) of a past partition: the DAG
    runs' start and end dates, as the UI and REST show them, lie within the command's wall time
    (not at the partition's date), and it prints the partition's summary."""
    import datetime as dt

    assert run["rc"] == 0, run["stdout"][-2000:] + run["stderr"][-2000:]
    assert [r[0] for r in run["runs"]] == ["image_features", "feature_index"]
    for dag_id, conf, start, end in run["runs"]:
        start, end = (dt.datetime.fromisoformat(x).replace(tzinfo=dt.timezone.utc) for x in (start, end))
        assert run["started"] <= start <= end <= run["ended"], (dag_id, start, end, run["started"], run["ended"])
        assert 0 < (end - start).total_seconds() <= run["wall"]
        assert json.loads(conf)["partition_date"] == DATE, (dag_id, conf)
    m = json.loads((run["warehouse"] / "runs" / f"dt={DATE}" / "manifest.json").read_text())
    lines = run["stdout"].splitlines()
    assert f"image_features dt={DATE}  ({m['model']})" in lines
    assert f"  images in     {m['images_in']}" in lines and f"  published     {m['published']}" in lines
    assert f"  quarantined   {m['quarantined']}" in lines

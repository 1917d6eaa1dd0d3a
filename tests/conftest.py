"""Shared fixtures: the real converted models, real photos, one local SparkSession.

Airflow's environment is set before anything imports airflow, so tests never touch a user's
~/airflow: each test session has its own SQLite home under a temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import pytest

from devtools.local import airflow_env
from imgfeat import paths

# The session's var directory (as `make run` has var/): its airflow/ is the session's Airflow home.
_VAR = Path(tempfile.mkdtemp(prefix="imgfeat-var-"))
_AIRFLOW_HOME = _VAR / "airflow"
os.environ.update({k: v for k, v in airflow_env(_AIRFLOW_HOME).items()
                   if k.startswith(("AIRFLOW", "SPARK_", "PYSPARK", "IMGFEAT"))})
sys.path.insert(0, str(paths.REPO / "plugins"))
logging.getLogger("py4j").setLevel(logging.WARNING)  # its "closing" log races interpreter exit


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def model_dir() -> str:
    from imgfeat.engines.models import ensure_models

    return str(ensure_models(paths.model_dir(), paths.cache_dir()))


@pytest.fixture(scope="session")
def engine(model_dir):
    from imgfeat.engines import get_engine

    return get_engine("openvino", model_dir)


@pytest.fixture(scope="session")
def photos() -> dict:
    """Real photos that ship with scikit-image (no download)."""
    from skimage import data

    return {name: getattr(data, name)() for name in ("chelsea", "astronaut", "coffee", "rocket")}


def jpeg(rgb, quality: int = 92) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="session")
def spark():
    """One local session with BigDL's jars, confs and MKL-DNN engine, so the BigDL tests share it."""
    from pyspark.sql import SparkSession

    from imgfeat.engines.bigdl.runtime import init_spark
    from imgfeat.engines.bigdl.submit import spark_conf

    conf = (spark_conf("local[2]", app_name="imgfeat-tests")
            .set("spark.ui.enabled", "false").set("spark.sql.shuffle.partitions", "4"))
    s = SparkSession.builder.config(conf=conf).getOrCreate()
    init_spark()
    yield s
    s.stop()


# --- end to end -------------------------------------------------------------------------------
E2E_DATE = "2026-11-05"
KNOWN = {"shop/chelsea.jpg": "cat", "shop/coffee.jpg": "cup", "shop/astronaut.jpg": "person"}


@pytest.fixture(scope="session")
def e2e_input(tmp_path_factory, photos) -> dict:
    """One partition for every end-to-end run: known photos, 6 composed pictures, planted bad files."""
    from devtools import badfiles, sample_photos

    root = tmp_path_factory.mktemp("input")
    part = root / f"dt={E2E_DATE}"
    for image_id in KNOWN:
        (part / image_id).parent.mkdir(parents=True, exist_ok=True)
        (part / image_id).write_bytes(jpeg(photos[Path(image_id).stem]))
    records = sample_photos.build_partition(part / "sample", 6, seed=3)
    bad = badfiles.write(part / "planted", photos["coffee"], prefix="planted/")
    return {"root": root, "part": part, "bad": bad, "sample": ["sample/" + r["image_id"] for r in records]}


# What the reference run's result carries to another pytest-xdist worker (`reference_run`).
SHARED_RUN_KEYS = ("rc", "stdout", "stderr", "log", "wall", "features_commit", "report")


@contextlib.contextmanager
def _shared_reference(tmp_path_factory):
    """The folder where a worker leaves a copy of its reference run for the other worker, locked
    while one worker makes or reads it (xdist's workers share their base temp's parent)."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-reference"
    shared.mkdir(parents=True, exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield shared
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def local_run(tmp_path_factory, e2e_input, airflow_home, model_dir) -> dict:
    """The clean reference, run as `make run` runs it (`python -m imgfeat.cli run`): the DAG through
    `airflow dags test`, then feature_index, on a local input and warehouse. Records the command's
    output, wall time and the DAG runs it left in the session's Airflow DB. Its warehouse, as the run
    left it, is also copied for the other worker's `reference_run`."""
    with _shared_reference(tmp_path_factory) as shared:  # the other worker waits for the copy
        out = _local_run(tmp_path_factory, e2e_input, airflow_home)
        if out["rc"] == 0 and not (shared / "run.json").exists():
            import shutil

            shutil.copytree(out["warehouse"], shared / "warehouse")
            (shared / "run.json").write_text(json.dumps({k: out[k] for k in SHARED_RUN_KEYS}))
    return out


@pytest.fixture(scope="session")
def reference_run(request, tmp_path_factory, e2e_input) -> dict:
    """`local_run`'s output and warehouse, for tests that read nothing else of it (not its Airflow DB):
    the other worker's run when it made one (the same input, byte for byte; its warehouse copied
    before that worker's tests changed it), else this worker's own `local_run`. Saves the CI one run."""
    import shutil

    with _shared_reference(tmp_path_factory) as shared:
        if (shared / "run.json").exists():
            warehouse = tmp_path_factory.mktemp("reference-warehouse") / "warehouse"
            shutil.copytree(shared / "warehouse", warehouse)
            return {**e2e_input, **json.loads((shared / "run.json").read_text()), "warehouse": warehouse}
    return request.getfixturevalue("local_run")


def _local_run(tmp_path_factory, e2e_input, airflow_home) -> dict:
    import datetime as dt
    import sqlite3
    import subprocess
    import time

    from devtools.local import ensure_airflow_db

    warehouse = tmp_path_factory.mktemp("warehouse")
    env = airflow_env(airflow_home)
    ensure_airflow_db(env)
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "imgfeat.cli", "run", "--date", E2E_DATE,
                          "--input", str(e2e_input["root"]), "--warehouse", str(warehouse)],
                         capture_output=True, text=True, cwd=paths.REPO, env={**env, "IMGFEAT_VAR": str(_VAR)})
    wall = time.monotonic() - t0
    ended = dt.datetime.now(dt.timezone.utc)
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        runs = db.execute("select dag_id, conf, start_date, end_date from dag_run where start_date >= ? "
                          "order by start_date", (started.strftime("%Y-%m-%d %H:%M:%S.%f"),)).fetchall()
    log = _VAR / "logs" / f"run-dt={E2E_DATE}.log"
    conf = {"partition_date": E2E_DATE, "input_root": str(e2e_input["root"]), "warehouse_root": str(warehouse)}
    # What make run left, read before other tests re-publish (their publish writes the report again,
    # without the duplicate groups the index job added: a CI run failed when a test read it later).
    published = warehouse / "features" / f"dt={E2E_DATE}" / "_stage.json"
    report = warehouse / "reports" / f"dt={E2E_DATE}" / "index.html"
    return {**e2e_input, "rc": out.returncode, "stdout": out.stdout, "stderr": out.stderr,
            "log": log.read_text() if log.exists() else out.stdout + out.stderr,
            "index_log": _VAR / "logs" / f"index-dt={E2E_DATE}.log",
            "warehouse": warehouse, "conf": conf, "env": env,
            "started": started, "ended": ended, "wall": wall, "runs": runs,
            "features_commit": json.loads(published.read_text())["commit_id"] if published.exists() else None,
            "report": report.read_text() if report.exists() else None}


def feature_rows(table_dir) -> list:
    """The published rows that must not change between runs: id, label, box, code."""
    import pyarrow.parquet as pq

    return sorted((r["image_id"], r["label"], r["x1"], r["y1"], r["x2"], r["y2"], r["code"])
                  for r in pq.read_table(str(table_dir)).to_pylist())


@pytest.fixture(scope="session")
def hdfs(tmp_path_factory):
    """A real single-node HDFS (NameNode + DataNode, WebHDFS, permissions on) for the session."""
    from devtools.devhdfs import HDFS

    with HDFS(tmp_path_factory.mktemp("hdfs"), permissions=True) as h:
        yield h


def hamming(a: bytes, b: bytes) -> int:
    """Bits that differ between two packed codes: the tests' oracle, independent of faiss."""
    import numpy as np

    return int(np.unpackbits(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).sum())


# `make test` runs two pytest-xdist workers, each taking whole units of work: a test module, or one
# of the two units below. Memory decides them: the BigDL tests leave the `spark` session's JVM at
# about 12 GB, so every module using that session is in one unit, BigDL's last (see
# pytest_collection_modifyitems), with test_hostile for balance; the other worker meanwhile runs the
# Airflow-scheduler tests and the HDFS pipeline (its own HDFS). Each unit's session and module
# fixtures are made once. Time decides the order: the units start first, one on each worker (the
# scheduler-HDFS unit is the longest, about half the CPU time), the small modules after them; in it
# the scheduler tests go first, so that by the HDFS pipeline's turn the other worker has shared its
# reference run (`reference_run`) instead of this one making its own.
UNITS = {
    "scheduler-hdfs": {"test_rest_trigger", "test_hdfs_pipeline"},
    "jvm": {"test_bench_scale", "test_bigdl", "test_checkpoint", "test_commit_safety", "test_devhdfs",
            "test_duplicates", "test_e2e_airflow", "test_e2e_codes", "test_hostile", "test_pipeline", "test_retention",
            "test_storage"},
}
LAST = "test_bigdl"
ORDER = ("test_rest_trigger", "test_hdfs_pipeline")  # within the scheduler-hdfs unit


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")


def _unit(module: str) -> str:
    return next((unit for unit, modules in UNITS.items() if module in modules), module)


def pytest_collection_modifyitems(config, items):
    # The units first, longest first (the scheduler sends units in the order they appear); BigDL's
    # tests run last in their unit: its session JVM is small until they load BigDL's models.
    def key(item):
        module = _module(item.nodeid)
        unit = _unit(module)
        rank = list(UNITS).index(unit) if unit in UNITS else len(UNITS)
        return rank, ORDER.index(module) if module in ORDER else 0, module == LAST

    items.sort(key=key)


def pytest_xdist_make_scheduler(config, log):
    # (xdist's own --dist loadgroup does not group under pytest 9: it renames node ids through an
    # attribute pytest 9 no longer reads.) Units in collection order, not by size.
    from xdist.scheduler import LoadScopeScheduling

    class Units(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(_module(nodeid))

    config.option.loadscopereorder = False
    return Units(config, log)

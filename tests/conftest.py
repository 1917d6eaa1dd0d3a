"""Shared fixtures: the real converted models, real photos, one local SparkSession.

Airflow's environment is set before anything imports airflow, so tests never touch a user's
~/airflow: each test session has its own SQLite home under a temporary directory.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

import pytest

from imgfeat import paths
from imgfeat.local import airflow_env

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="imgfeat-airflow-"))
os.environ.update({k: v for k, v in airflow_env(_AIRFLOW_HOME).items()
                   if k.startswith(("AIRFLOW", "SPARK_", "PYSPARK", "IMGFEAT"))})
sys.path.insert(0, str(paths.REPO / "plugins"))
logging.getLogger("py4j").setLevel(logging.WARNING)  # its "closing" log races interpreter exit


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def model_dir() -> str:
    from imgfeat.models import ensure_models

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
    from pyspark.sql import SparkSession

    s = (SparkSession.builder.master("local[2]").appName("imgfeat-tests")
         .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
         .getOrCreate())
    yield s
    s.stop()

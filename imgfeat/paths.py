"""Where the project keeps its local, uncommitted things (models, fetched photos, Airflow home)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Downloaded and converted artefacts; never committed (`IMGFEAT_CACHE` overrides)."""
    return Path(os.environ.get("IMGFEAT_CACHE", REPO / ".cache"))


def var_dir() -> Path:
    """Local run state: sample input, warehouse, Airflow home (`IMGFEAT_VAR` overrides)."""
    return Path(os.environ.get("IMGFEAT_VAR", REPO / "var"))


def model_dir() -> Path:
    """The converted detector/backbone models (`IMGFEAT_MODEL_DIR` overrides)."""
    return Path(os.environ.get("IMGFEAT_MODEL_DIR", cache_dir() / "models" / "ssd_mobilenet_v2_coco"))

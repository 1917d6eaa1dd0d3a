"""What every engine shares: the engine names, the networks' input size, the detector's result,
the engine's version string, and the reading of the manifests that conversion writes into the model
directory. A leaf module: it imports nothing of imgfeat, so the runtimes (`openvino`,
`bigdl.runtime`), the setup (`models`) and the package's `get_engine` all build on it without a circle."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the annotations only: importing the names (params, the DAG) needs no numpy
    import numpy as np

ENGINES = ("openvino", "bigdl")
INPUT_SIZE = 300  # the SSD's fixed input; images are resized before batching


@dataclass
class Detections:
    boxes: np.ndarray  # [n, 4] normalized ymin, xmin, ymax, xmax
    classes: np.ndarray  # [n] COCO ids
    scores: np.ndarray  # [n] descending
    # The whole picture's descriptor [960] (not normalised, `descriptor.picture`): the detector's own backbone
    # pooled over R-MAC's regions, an output of the same inference (picture de-duplication).
    picture: np.ndarray | None = None


def engine_version(name: str, precision: str = "f32") -> str:
    """The engine's name and version for the `model` column, without loading any model."""
    if name == "openvino":
        from importlib.metadata import version

        return f"openvino-{version('openvino')}-{precision}"
    if name == "bigdl":  # the MKL-DNN engine (f32), as the operator submits it
        from importlib.metadata import version

        return f"bigdl-dllib-{version('bigdl-dllib-spark3')}-mkldnn-f32"
    raise ValueError(f"engine: unknown engine {name!r}, expected one of {', '.join(ENGINES)}")


class ModelError(RuntimeError):
    """A model directory is missing, incomplete or corrupt."""


def read_manifest(model_dir: str | Path, name: str) -> dict:
    """The manifest `name` of a (converted) model directory: `models.MANIFEST` for the whole
    directory, `bigdl.runtime.MANIFEST` for its BigDL models. Each is read through its own function
    (`models.load_manifest`, `bigdl.runtime.load_manifest`), and both through this one."""
    model_dir = Path(model_dir)
    path = model_dir / name
    if not path.exists():
        raise ModelError(f"model directory {model_dir} has no {name}: run `make setup`")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ModelError(f"{path} is corrupt: {e}") from e

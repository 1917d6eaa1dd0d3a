"""Inference engines. Each engine runs the same two networks on uint8 NHWC batches:

  detect(batch) -> list of Detections (normalized ymin, xmin, ymax, xmax; COCO ids; scores)
  features(batch) -> float32 [N, 1280] backbone descriptors (not normalized)

Engines are cached per process, so a Spark Python worker loads a model once and reuses it
for every task it runs (Spark reuses Python workers by default).
"""

from __future__ import annotations

import functools

ENGINES = ("openvino", "bigdl")
INPUT_SIZE = 300  # the SSD's fixed input; images are resized before batching


@functools.lru_cache(maxsize=4)
def get_engine(name: str, model_dir: str, threads: int = 0, precision: str = "f32"):
    if name == "openvino":
        from imgfeat.engines.openvino import OpenVinoEngine

        return OpenVinoEngine(model_dir, threads=threads, precision=precision)
    if name == "bigdl":  # in-process (tests, bench); Spark stages use distributed predict instead
        from imgfeat.engines.bigdl import BigDLEngine
        from imgfeat.models import BIGDL_DIR

        return BigDLEngine(f"{str(model_dir).rstrip('/')}/{BIGDL_DIR}")
    raise ValueError(f"engine: unknown engine {name!r}, expected one of {', '.join(ENGINES)}")


def engine_version(name: str, precision: str = "f32") -> str:
    """The engine's name and version for the `model` column, without loading any model."""
    if name == "openvino":
        from importlib.metadata import version

        return f"openvino-{version('openvino')}-{precision}"
    if name == "bigdl":  # the MKL-DNN engine (f32), as the operator submits it
        from importlib.metadata import version

        return f"bigdl-dllib-{version('bigdl-dllib-spark3')}-mkldnn-f32"
    raise ValueError(f"engine: unknown engine {name!r}, expected one of {', '.join(ENGINES)}")


def stage_submit_settings(stage: str, engine: str, deploy_mode: str | None = None) -> dict | None:
    """What a stage's spark-submit adds for the run's engine, or None: the inference stages
    (layout.INFERENCE_STAGES) with engine=bigdl run BigDL's graphs on its MKL-DNN engine, so they get
    BigDL's jars, driver class path, confs and driver memory (`imgfeat.engines.bigdl.submit_settings`);
    OpenVINO runs in the Python workers and needs nothing. The operator and `make bench` both use it."""
    from imgfeat.layout import INFERENCE_STAGES

    if engine != "bigdl" or stage not in INFERENCE_STAGES:
        return None
    from imgfeat.engines.bigdl import submit_settings

    return submit_settings(deploy_mode, engine="mkldnn")

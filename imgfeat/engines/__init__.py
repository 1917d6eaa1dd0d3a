"""Inference engines. Each engine runs the same two networks on uint8 NHWC batches:

  detect(batch) -> list of Detections (normalized ymin, xmin, ymax, xmax; COCO ids; scores; and
                   the whole picture's descriptor, from the detector's own backbone)
  features(batch) -> float32 [N, 1280] backbone descriptors (not normalized)

Engines are cached per process, so a Spark Python worker loads a model once and reuses it
for every task it runs (Spark reuses Python workers by default).

  common    ENGINES, INPUT_SIZE, Detections, engine_version, the manifests' reading (re-exported here)
  ssd       the SSD's pre- and post-processing (normalise; box decoding and NMS), both engines' own
  models    fetch the pretrained SSD, convert it once for both engines, its manifest (model.json)
  openvino  the OpenVINO runtime
  bigdl/    the BigDL engine: submit (spark-submit settings), convert (rebuilt from BigDL's
            layers at setup), runtime (load, unpack the heads, predict)

Imports point one way, with no circle: the modules of the package take the shared names from
`common`, never from the package itself; ssd imports common; openvino imports ssd and models (its
manifest), models imports bigdl.convert and bigdl.runtime (setup), bigdl.convert imports
bigdl.runtime, which imports ssd and bigdl.submit; the package imports its runtimes only inside
get_engine. tests/test_engines.py
checks it.
"""

from __future__ import annotations

import functools

from imgfeat.engines.common import ENGINES, INPUT_SIZE, Detections, engine_version

__all__ = ["ENGINES", "INPUT_SIZE", "Detections", "engine_version", "get_engine"]


@functools.lru_cache(maxsize=4)
def get_engine(name: str, model_dir: str, threads: int = 0, precision: str = "f32"):
    if name == "openvino":
        from imgfeat.engines.openvino import OpenVinoEngine

        return OpenVinoEngine(model_dir, threads=threads, precision=precision)
    if name == "bigdl":  # in-process (tests, bench); Spark stages use distributed predict instead
        from imgfeat.engines.bigdl.runtime import BigDLEngine
        from imgfeat.engines.models import BIGDL_DIR

        return BigDLEngine(f"{str(model_dir).rstrip('/')}/{BIGDL_DIR}")
    raise ValueError(f"engine: unknown engine {name!r}, expected one of {', '.join(ENGINES)}")


def stage_submit_settings(stage: str, engine: str, deploy_mode: str | None = None) -> dict | None:
    """What a stage's spark-submit adds for the run's engine, or None: the inference stages
    (layout.INFERENCE_STAGES) with engine=bigdl run BigDL's graphs on its MKL-DNN engine, so they get
    BigDL's jars, driver class path, confs and driver memory (`imgfeat.engines.bigdl.submit.submit_settings`);
    OpenVINO runs in the Python workers and needs nothing. The operator and `make bench` both use it."""
    from imgfeat.layout import INFERENCE_STAGES

    if engine != "bigdl" or stage not in INFERENCE_STAGES:
        return None
    from imgfeat.engines.bigdl.submit import submit_settings

    return submit_settings(deploy_mode, engine="mkldnn")

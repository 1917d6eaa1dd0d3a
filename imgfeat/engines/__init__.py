"""Inference engines. Each engine runs the same two networks on uint8 NHWC batches:

  detect(batch) -> list of Detections (normalized ymin, xmin, ymax, xmax; COCO ids; scores)
  features(batch) -> float32 [N, 1280] backbone descriptors (not normalized)

Engines are cached per process, so a Spark Python worker loads a model once and reuses it
for every task it runs (Spark reuses Python workers by default).
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


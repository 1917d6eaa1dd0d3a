"""OpenVINO engine: the SSD's network (its raw heads, and the picture's region maxima from its own
backbone) and the pooled backbone (crops), with the SSD's pre- and post-processing in numpy/OpenCV
(imgfeat.engines.ssd, shared with BigDL)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from imgfeat.descriptor import picture, rmac
from imgfeat.engines import ssd
from imgfeat.engines.common import Detections, engine_version
from imgfeat.engines.models import load_manifest


def compile_cache() -> str:
    """OpenVINO's compiled-model cache: cuts the detector's load from ~4.5 s to ~0.8 s in every
    new Python worker. Per node, so a temporary directory is the default."""
    return os.environ.get("IMGFEAT_OPENVINO_CACHE", os.path.join(tempfile.gettempdir(), "imgfeat-openvino-cache"))


def cpu_capabilities() -> list[str]:
    """What this CPU can run natively, as OpenVINO reports it (FP32, BF16, INT8, ...). OpenVINO runs
    a precision hint the CPU lacks in f32, silently."""
    import openvino as ov

    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVinoEngine:
    name = "openvino"

    def __init__(self, model_dir: str | Path, threads: int = 0, precision: str = "f32"):
        import openvino as ov

        self.model_dir = Path(model_dir)
        self.manifest = load_manifest(model_dir)
        self._core = ov.Core()
        self._core.set_property({"CACHE_DIR": compile_cache()})
        # f32 by default: bf16 is faster on CPUs that have it, but then a cluster of mixed
        # CPUs would publish different codes for the same picture.
        # Unpinned: the tasks of one executor each compile their own model, and pinned, their
        # threads are bound to the same cores. Measured on 2 cores, the detector network in two
        # processes at once: 54.9 ms a picture pinned, 28.2 unpinned (one process alone: 26.7-38.1).
        self._config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                        "ENABLE_CPU_PINNING": False}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
        self._detector = self._backbone = None  # compiled on first use: embed never needs the detector
        self._broken = None
        self.version = engine_version("openvino", precision)

    def _compile(self, name: str):
        return self._core.compile_model(str(self.model_dir / f"{name}.xml"), "CPU", self._config)

    def detect(self, batch: np.ndarray) -> list[Detections]:
        if self._broken is not None:  # compiled once, found unusable: fail every call the same way
            raise self._broken
        if self._detector is None:
            detector = self._compile("detector")
            outputs = {n: o for o in detector.outputs for n in o.get_names()}
            wanted = ("box_encodings", "class_logits", "picture_rmac")
            if missing := [k for k in wanted if k not in outputs]:
                self._broken = RuntimeError(f"the detector model has no output {', '.join(missing)}")
                raise self._broken
            self._out = [outputs[k] for k in wanted]
            self._anchors = np.load(self.model_dir / "anchors.npy")
            self._detector = detector
        result = self._detector(ssd.preprocess(batch))
        boxes, logits, pooled = (result[o] for o in self._out)
        return ssd.postprocess(boxes.reshape(len(batch), -1, 4), logits, self._anchors, pictures=picture(pooled))

    def features(self, batch: np.ndarray) -> np.ndarray:
        if self._backbone is None:
            self._backbone = self._compile("backbone")
        return rmac(self._backbone(ssd.preprocess(batch))[0])

"""OpenVINO engine: the converted TF graph (NMS included) and the pooled backbone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgfeat.engines import engine_version
from imgfeat.models import load_manifest


@dataclass
class Detections:
    boxes: np.ndarray  # [n, 4] normalized ymin, xmin, ymax, xmax
    classes: np.ndarray  # [n] COCO ids
    scores: np.ndarray  # [n] descending


class OpenVinoEngine:
    name = "openvino"

    def __init__(self, model_dir: str | Path, threads: int = 0, precision: str = "f32"):
        import openvino as ov

        self.manifest = load_manifest(model_dir)
        core = ov.Core()
        # f32 by default: bf16 is faster on CPUs that have it, but then a cluster of mixed
        # CPUs would publish different codes for the same picture.
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self._detector = core.compile_model(str(Path(model_dir) / "detector.xml"), "CPU", config)
        self._backbone = core.compile_model(str(Path(model_dir) / "backbone.xml"), "CPU", config)
        outputs = {name.split(":")[0]: out for out in self._detector.outputs for name in out.get_names()}
        self._out = [outputs[k] for k in ("detection_boxes", "detection_classes", "detection_scores", "num_detections")]
        self.version = engine_version("openvino", precision)

    def detect(self, batch: np.ndarray) -> list[Detections]:
        result = self._detector(batch)
        boxes, classes, scores, counts = (result[o] for o in self._out)
        return [
            Detections(boxes[i, :n], classes[i, :n].astype(np.int32), scores[i, :n])
            for i, n in enumerate(counts.astype(int))
        ]

    def features(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._backbone(batch)[0], dtype=np.float32)

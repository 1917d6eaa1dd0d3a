"""BigDL engine, the runtime: the networks `convert` saved, loaded and run on BigDL.

The models (BigDL's format, described by `bigdl.json`):
  detector  float NCHW [N,3,300,300] in [-1,1] -> ONE tensor [N, 182115 + 8448, 1, 1]: the 12
            raw prediction heads (box encodings and class logits of the 6 feature maps), each flattened
            (C,H,W), then its own backbone's region maxima over `descriptor.PICTURE_MAPS` (the whole
            picture's descriptor), joined along dim 2. One 4-D output because distributed predict() from Python returns only
            single-tensor outputs, and a 3-D concat gave wrong values on MKL-DNN. `unpack()` turns it
            into box encodings [N,1917,4], class logits [N,1917,91] and the picture's descriptor [N,960].
  backbone  same input -> [N, 1280 x 14, 1, 1]: `Conv_1/Relu6` max-pooled over R-MAC's 14 regions
            of its 10x10 grid (`descriptor.rmac` makes the 1280-d descriptor of them).
imgfeat.engines.ssd's `preprocess` makes the input; box decoding and class-aware NMS run in
numpy/OpenCV (its `postprocess`, shared with OpenVINO). `predict_rdd` is BigDL's distributed predict
(the Spark stages), `BigDLEngine` the in-process engine (tests, bench).

Every BigDL call needs a JVM with the BigDL jars and an initialised engine: `init_spark()`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imgfeat.engines.bigdl.submit import spark_conf
from imgfeat.descriptor import picture, rmac
from imgfeat.engines.common import Detections, read_manifest
from imgfeat.engines.ssd import NUM_CLASSES, postprocess, preprocess

MANIFEST = "bigdl.json"
FORMAT_NCHW = 7  # com.intel.analytics.bigdl.mkl.Memory.Format.nchw


def init_spark(master: str = "local[2]", engine: str = "mkldnn", driver_memory: str = "3g"):
    """Start (or reuse) the SparkContext with BigDL and initialise BigDL's engine.

    Under spark-submit (its JVM is already running) the submitted settings are used as they are:
    submit with `submit.submit_settings()` (the operator does).
    """
    from bigdl.dllib.nncontext import init_nncontext
    from pyspark import SparkContext

    # init_nncontext sets PYTHONHOME, OMP_NUM_THREADS and KMP_* in os.environ: a PYTHONHOME breaks
    # every later subprocess of a virtualenv's Python (pip, airflow), so the environment is restored.
    saved = dict(os.environ)
    try:
        if SparkContext._active_spark_context is not None or os.environ.get("PYSPARK_GATEWAY_PORT"):
            return init_nncontext(redirect_spark_log=False)
        return init_nncontext(spark_conf(master, engine, driver_memory=driver_memory), redirect_spark_log=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def engine_type() -> str:
    """'MklDnn' or 'MklBlas', as the JVM was started."""
    from bigdl.dllib.utils.common import get_bigdl_engine_type
    return get_bigdl_engine_type()


def load_manifest(model_dir: str | Path) -> dict:
    """The BigDL models' manifest (`bigdl.json`, written by `convert`)."""
    return read_manifest(model_dir, MANIFEST)


def load(model_dir: str | Path, which: str):
    """`which` = "detector" or "backbone", from BigDL's format, in evaluation mode.

    Input/output memory formats are set here (they are not saved): MKL-DNN conversion (IR graph,
    distributed predict) otherwise assumes a 2-D output.
    """
    from bigdl.dllib.nn.layer import Model

    model = Model.loadModel(str(Path(model_dir) / load_manifest(model_dir)[which]["file"]))
    model.set_input_formats([FORMAT_NCHW]).set_output_formats([FORMAT_NCHW])
    return model.evaluate()


def to_ir(model):
    """The MKL-DNN form of a static graph (engine mkldnn), for local forward.

    An IR graph keeps the batch size of its first forward (a larger batch later fails with "size
    out of range"; a smaller one gave right values): build one per batch size.
    """
    from bigdl.dllib.nn.layer import Layer

    ir = model.value.toIRgraph()
    if ir is None:
        raise RuntimeError("this graph has layers MKL-DNN cannot convert")
    return Layer.of(ir).evaluate()


def unpack(packed: np.ndarray, heads: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detector output [N, K(,1,1)] -> box encodings [N,1917,4], class logits [N,1917,91] and the
    picture's descriptor [N,960] (`descriptor.picture` of what follows the heads).

    Each head is a flattened NCHW conv output [A*k, H, W]; TF's order is (H, W, A).
    """
    flat = np.asarray(packed, np.float32).reshape(len(packed), -1)
    boxes, logits, start = [], [], 0
    for h in heads:
        size = h["c"] * h["h"] * h["w"]
        x = flat[:, start:start + size].reshape(-1, h["c"], h["h"], h["w"]).transpose(0, 2, 3, 1)
        start += size
        if "BoxEncoding" in h["name"]:
            boxes.append(x.reshape(len(flat), -1, 4))
        else:
            logits.append(x.reshape(len(flat), -1, NUM_CLASSES))
    return np.concatenate(boxes, 1), np.concatenate(logits, 1), picture(flat[:, start:])


def detections(packed: np.ndarray, heads: list[dict], anchors: np.ndarray) -> list[Detections]:
    """Detector output [N, K(,1,1)] -> Detections, each with its picture's descriptor."""
    boxes, logits, pictures = unpack(packed, heads)
    return postprocess(boxes, logits, anchors, pictures=pictures)


def predict_rdd(model, rdd, batch_size: int):
    """BigDL's distributed predict: `rdd` of float32 CHW arrays [3,300,300] -> RDD of one float32
    array per image (the model's single output without its batch dimension).

    BigDL broadcasts the model; on the mkldnn engine each executor converts it to an MKL-DNN IR
    graph (hence load()'s formats) and the RDD is coalesced to one partition per executor.
    `batch_size` is the total per call, a multiple of the RDD's partition count.
    Multi-output models cannot come back this way (the JVM side casts each result to one tensor).
    """
    from bigdl.dllib.utils.common import Sample

    label = np.zeros(1, np.float32)
    samples = rdd.map(lambda x: Sample.from_ndarray(np.asarray(x, np.float32), label))
    return model.predict(samples, batch_size)


class BigDLEngine:
    """Same interface as the OpenVINO engine: detect() and features() on uint8 NHWC batches.

    Runs locally in the driver JVM: the MKL-DNN IR graph when the engine is mkldnn (one per batch
    size, see to_ir), else the static graph.
    """

    name = "bigdl"

    def __init__(self, model_dir: str | Path):
        init_spark()
        self.model_dir = Path(model_dir)
        self.manifest = load_manifest(model_dir)
        self.anchors = np.load(self.model_dir / self.manifest["anchors"]["file"])
        self._models, self._runners = {}, {}
        self._mkldnn = engine_type() == "MklDnn"

    def _forward(self, which: str, x: np.ndarray) -> np.ndarray:
        if which not in self._models:
            self._models[which] = load(self.model_dir, which)
        key = (which, len(x))
        if key not in self._runners:
            self._runners[key] = to_ir(self._models[which]) if self._mkldnn else self._models[which]
        return np.asarray(self._runners[key].forward(x), np.float32)

    def detect(self, batch: np.ndarray) -> list[Detections]:
        return detections(self._forward("detector", preprocess(batch)), self.manifest["detector"]["heads"], self.anchors)

    def features(self, batch: np.ndarray) -> np.ndarray:
        return rmac(self._forward("backbone", preprocess(batch)))

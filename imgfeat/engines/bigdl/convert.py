"""BigDL engine, the conversion (`make setup`): the frozen TF graph rebuilt from Intel BigDL dllib's
stock layers and saved in BigDL's format, with `bigdl.json` (read by `runtime.load_manifest`).

`convert()` reads the frozen TF graph without TensorFlow (the GraphDef protobuf classes come from
the small `tensorboard` wheel), folds the batch-norms into the conv weights and rebuilds the network
as a BigDL static graph in NCHW, from layers that BigDL's MKL-DNN engine can run:
  - Conv2D -> SpatialConvolution; DepthwiseConv2dNative -> SpatialConvolution(n_group=C);
    TF "SAME" -> pad -1 (BigDL then pads like TF, bottom/right first), 1x1 -> pad 0;
  - ReLU6 -> ReLU, 1x1 depthwise conv (w -1, b 6), ReLU, same conv again (= min(max(x, 0), 6)):
    BigDL's ReLU6 has no MKL-DNN implementation;
  - residual Add -> CAddTable.
The two models it saves (detector: the raw prediction heads; backbone: the region maxima of
R-MAC, as the OpenVINO backbone packs them) are
described in `runtime`. The frozen graph's anchors are saved next to them (`anchors.npy`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgfeat.engines.bigdl.runtime import MANIFEST, init_spark, load_manifest
from imgfeat.engines.common import INPUT_SIZE
from imgfeat.engines.ssd import BOX_SCALES, IOU_THRESHOLD, MAX_PER_CLASS, MAX_TOTAL, SCORE_THRESHOLD

INPUT_NODE = "Preprocessor/sub"  # replaced by the model input: preprocessing happens in numpy
BACKBONE_NODE = "FeatureExtractor/MobilenetV2/Conv_1/Relu6"
HEAD_NODES = [f"BoxPredictor_{i}/{kind}/BiasAdd"
              for i in range(6) for kind in ("BoxEncodingPredictor", "ClassPredictor")]
ANCHOR_NODE = "Concatenate/concat"
# 4: the detector's output ends in the region maxima of descriptor.PICTURE_MAPS, not of the backbone's;
# 3: the detector's output ends in its backbone's R-MAC region maxima; 2: the backbone ends in them;
# 1 (unrecorded): average-pooled.
FORMAT = 4


# --------------------------------------------------------------------------- GraphDef reading

_DTYPES = {1: np.float32, 3: np.int32, 9: np.int64, 10: np.bool_}


def _read_graph(path: Path) -> dict:
    from tensorboard.compat.proto import graph_pb2  # GraphDef classes without TensorFlow

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(Path(path).read_bytes())
    return {n.name: n for n in graph.node}


def _const(tensor) -> np.ndarray:
    dtype = _DTYPES[tensor.dtype]
    shape = [d.size for d in tensor.tensor_shape.dim]
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, dtype).reshape(shape).copy()
    vals = {np.float32: tensor.float_val, np.int32: tensor.int_val, np.int64: tensor.int64_val,
            np.bool_: tensor.bool_val}[dtype]
    return np.full(shape, vals[0], dtype) if len(vals) == 1 else np.array(vals, dtype).reshape(shape)


def _strided_slice(n, x, begin, end, strides):
    a = n.attr
    assert not a["ellipsis_mask"].i and not a["new_axis_mask"].i, n.name
    idx = []
    for i, (b, e, s) in enumerate(zip(begin, end, strides)):
        if a["shrink_axis_mask"].i >> i & 1:
            idx.append(int(b))
        else:
            idx.append(slice(None if a["begin_mask"].i >> i & 1 else int(b),
                             None if a["end_mask"].i >> i & 1 else int(e), int(s)))
    return x[tuple(idx)]


# Constant folding in numpy: enough for the batch-norm parameters and the anchor generator.
_CONST_OPS = {
    "Identity": lambda n, x: x,
    "Add": lambda n, a, b: a + b, "AddV2": lambda n, a, b: a + b, "Sub": lambda n, a, b: a - b,
    "Mul": lambda n, a, b: a * b, "RealDiv": lambda n, a, b: a / b,
    "Minimum": lambda n, a, b: np.minimum(a, b), "Maximum": lambda n, a, b: np.maximum(a, b),
    "Rsqrt": lambda n, x: (1 / np.sqrt(x)).astype(x.dtype), "Sqrt": lambda n, x: np.sqrt(x),
    "Equal": lambda n, a, b: a == b, "All": lambda n, x, axes: np.all(x, tuple(np.atleast_1d(axes))),
    "Assert": lambda n, *xs: None,
    "Cast": lambda n, x: x.astype(_DTYPES[n.attr["DstT"].type]),
    "Reshape": lambda n, x, shape: x.reshape(shape),
    "ExpandDims": lambda n, x, axis: np.expand_dims(x, int(axis)),
    "ConcatV2": lambda n, *xs: np.concatenate(xs[:-1], int(xs[-1])),
    "Pack": lambda n, *xs: np.stack(xs, n.attr["axis"].i),
    "Fill": lambda n, shape, value: np.full(shape, value),
    "Tile": lambda n, x, reps: np.tile(x, reps),
    "Range": lambda n, a, b, d: np.arange(a, b, d, dtype=_DTYPES[n.attr["Tidx"].type]),
    "Slice": lambda n, x, begin, size: x[tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size))],
    "StridedSlice": _strided_slice,
}


def _topo_order(nodes: dict, outputs: list[str], stop: set[str]) -> list[str]:
    """Ancestors of `outputs` (not above `stop`), inputs first; iterative: the graph is ~400 deep."""
    order, done, stack = [], set(), [(o, False) for o in reversed(outputs)]
    while stack:
        name, expanded = stack.pop()
        if name in done:
            continue
        if expanded:
            done.add(name)
            order.append(name)
            continue
        stack.append((name, True))
        if name not in stop:
            stack.extend((_src(i), False) for i in reversed(nodes[name].input) if not i.startswith("^"))
    return order


def _src(inp: str) -> str:
    name, _, port = inp.partition(":")
    if port not in ("", "0"):
        raise NotImplementedError(f"multi-output op input {inp}")
    return name


def _evaluate(nodes: dict, name: str) -> np.ndarray:
    vals = {}
    for n in map(nodes.get, _topo_order(nodes, [name], set())):
        args = [vals[_src(i)] for i in n.input if not i.startswith("^")]
        vals[n.name] = _const(n.attr["value"].tensor) if n.op == "Const" else _CONST_OPS[n.op](n, *args)
    return vals[name]


# --------------------------------------------------------------------------- network rebuilding

@dataclass
class _T:
    """A BigDL graph node and the shape (C, H, W) of the tensor it produces."""
    node: object
    c: int
    h: int
    w: int


@dataclass
class _Conv:
    """A convolution not yet turned into a layer, so that following Mul/Add (batch-norm, bias) fold in."""
    name: str
    src: _T
    w: np.ndarray  # TF layout: [kh, kw, in, out], or [kh, kw, C, 1] for depthwise
    b: np.ndarray
    stride: int
    same: bool
    depthwise: bool
    out: _T | None = None

    def scaled(self, c):  # per-output-channel factor: the depthwise weight has channels on axis 2
        w = self.w * (c.reshape(-1, 1) if self.depthwise else c)
        return _Conv(self.name, self.src, w, self.b * c, self.stride, self.same, self.depthwise)

    def shifted(self, c):
        return _Conv(self.name, self.src, self.w, self.b + c, self.stride, self.same, self.depthwise)

    def tensor(self) -> _T:
        from bigdl.dllib.nn.layer import SpatialConvolution

        if self.out is None:
            kh, kw, cin, cout = self.w.shape
            pad = -1 if self.same and kh > 1 else 0
            if self.depthwise:  # BigDL weight: [groups, out/groups, in/groups, kh, kw]
                cout, groups, weight = cin, cin, self.w.transpose(2, 3, 0, 1)[:, :, None]
            else:
                groups, weight = 1, self.w.transpose(3, 2, 0, 1)[None]
            layer = SpatialConvolution(cin, cout, kw, kh, self.stride, self.stride, pad, pad, n_group=groups,
                                       init_weight=np.ascontiguousarray(weight, np.float32),
                                       init_bias=self.b.astype(np.float32)).set_name(self.name)
            if self.same:
                h, w = -(-self.src.h // self.stride), -(-self.src.w // self.stride)
            else:
                h, w = (self.src.h - kh) // self.stride + 1, (self.src.w - kw) // self.stride + 1
            self.out = _T(layer(self.src.node), cout, h, w)
        return self.out


def _tensor(v) -> _T:
    return v.tensor() if isinstance(v, _Conv) else v


def _affine_6_minus(name: str, c: int):
    """y = 6 - x per channel, as a depthwise 1x1 convolution (MKL-DNN has no ReLU6)."""
    from bigdl.dllib.nn.layer import SpatialConvolution

    return SpatialConvolution(c, c, 1, 1, n_group=c, init_weight=-np.ones((c, 1, 1, 1, 1), np.float32),
                              init_bias=np.full(c, 6.0, np.float32)).set_name(name)


def _relu6(name: str, x: _T) -> _T:
    from bigdl.dllib.nn.layer import ReLU

    node = ReLU().set_name(f"{name}/relu")(x.node)
    node = _affine_6_minus(f"{name}/6-x", x.c)(node)
    node = ReLU().set_name(f"{name}/relu_6-x")(node)
    node = _affine_6_minus(f"{name}/min6", x.c)(node)
    return _T(node, x.c, x.h, x.w)


def _op(n, args, name: str):
    """One TF node -> a numpy constant, a pending _Conv or a _T (BigDL node)."""
    from bigdl.dllib.nn.layer import CAddTable

    consts = [a for a in args if isinstance(a, np.ndarray)]
    if n.op == "Const":
        return _const(n.attr["value"].tensor)
    if len(consts) == len(args) and n.op in _CONST_OPS:
        return _CONST_OPS[n.op](n, *args)
    if n.op == "Identity":
        return args[0]
    if n.op in ("Conv2D", "DepthwiseConv2dNative"):
        x, w = _tensor(args[0]), args[1]
        strides, dil = list(n.attr["strides"].list.i), list(n.attr["dilations"].list.i)
        assert n.attr["data_format"].s == b"NHWC" and strides[1] == strides[2] and set(dil) == {1}, name
        depthwise = n.op == "DepthwiseConv2dNative"
        assert not depthwise or w.shape[3] == 1, name
        return _Conv(name.rsplit("/", 1)[0], x, w, np.zeros(w.shape[2] if depthwise else w.shape[3], np.float32),
                     strides[1], n.attr["padding"].s == b"SAME", depthwise)
    if len(consts) == 1 and len(args) == 2:  # conv * scale, conv + shift: batch-norm and bias fold in
        x = args[0] if args[1] is consts[0] else args[1]
        if isinstance(x, _Conv) and n.op == "Mul":
            return x.scaled(consts[0])
        if isinstance(x, _Conv) and n.op in ("Add", "AddV2", "BiasAdd"):
            return x.shifted(consts[0])
    if n.op == "Relu6":
        return _relu6(name, _tensor(args[0]))
    if n.op in ("Add", "AddV2") and not consts:  # residual connection
        a, b = _tensor(args[0]), _tensor(args[1])
        return _T(CAddTable().set_name(name)([a.node, b.node]), a.c, a.h, a.w)
    raise NotImplementedError(f"{n.op} node {name} is not supported by this converter")


def _rebuild(nodes: dict, outputs: list[str]) -> tuple[list, list[_T]]:
    """The graph's input nodes and the rebuilt tensors of `outputs`."""
    from bigdl.dllib.nn.layer import Input

    inp = _T(Input(), 3, INPUT_SIZE, INPUT_SIZE)
    vals = {INPUT_NODE: inp}
    for name in _topo_order(nodes, outputs, {INPUT_NODE}):
        if name not in vals:
            n = nodes[name]
            vals[name] = _op(n, [vals[_src(i)] for i in n.input if not i.startswith("^")], name)
    return [inp.node], [_tensor(vals[o]) for o in outputs]


def _rmac_levels(feat: _T, levels: tuple | None = None, prefix: str = "rmac") -> list:
    """A map max-pooled over each of R-MAC's `levels` (default `descriptor.RMAC_LEVELS`), each
    level flattened channel-major: the OpenVINO models' packing, which `descriptor.rmac` reads."""
    from bigdl.dllib.nn.layer import Reshape, SpatialMaxPooling

    from imgfeat.descriptor import RMAC_LEVELS, rmac_regions

    levels = levels or RMAC_LEVELS
    return [Reshape([feat.c * k, 1, 1], True).set_name(f"{prefix}/{w}x{w}/flat")(
                SpatialMaxPooling(w, w, st, st).set_name(f"{prefix}/{w}x{w}")(feat.node))
            for (w, st), k in zip(levels, rmac_regions(feat.w, levels))]


def build_detector(nodes: dict):
    """The detector model and its heads' metadata (name, C, H, W), in output order; after the heads,
    its own backbone's region maxima over `descriptor.PICTURE_MAPS` (the whole picture's
    descriptor, `runtime.unpack`)."""
    from bigdl.dllib.nn.layer import JoinTable, Model, Reshape

    from imgfeat.descriptor import PICTURE_MAPS

    inputs, outs = _rebuild(nodes, HEAD_NODES + [name for name, *_ in PICTURE_MAPS])
    heads, maps = outs[:len(HEAD_NODES)], outs[len(HEAD_NODES):]
    flat = [Reshape([h.c * h.h * h.w, 1, 1], True).set_name(f"{name}/flat")(h.node)
            for name, h in zip(HEAD_NODES, heads)]
    pictures = [level for i, (feat, (_, _, _, levels)) in enumerate(zip(maps, PICTURE_MAPS))
                for level in _rmac_levels(feat, levels, f"picture{i}")]
    packed = JoinTable(2, 0).set_name("heads")(flat + pictures)  # 4-D channel concat: exact on MKL-DNN
    return Model(inputs, [packed]), [(name, h.c, h.h, h.w) for name, h in zip(HEAD_NODES, heads)]


def build_backbone(nodes: dict):
    """The backbone model: `Conv_1/Relu6` max-pooled over R-MAC's regions (`_rmac_levels`), joined."""
    from bigdl.dllib.nn.layer import JoinTable, Model

    inputs, (feat,) = _rebuild(nodes, [BACKBONE_NODE])
    return Model(inputs, [JoinTable(2, 0).set_name("rmac")(_rmac_levels(feat))])


def _check_postprocess_constants(nodes: dict) -> None:
    """The frozen graph's own postprocessing parameters must be the ones `postprocess` uses."""
    p = "Postprocessor/BatchMultiClassNonMaxSuppression/map/while/MultiClassNonMaxSuppression/"
    found = {"score": _evaluate(nodes, p + "FilterGreaterThan/Greater/y"),
             "iou": _evaluate(nodes, p + "non_max_suppression/iou_threshold"),
             "per_class": _evaluate(nodes, p + "Minimum/x"),
             "logit_scale": _evaluate(nodes, "Postprocessor/scale_logits/y")}
    expected = {"score": SCORE_THRESHOLD, "iou": IOU_THRESHOLD, "per_class": MAX_PER_CLASS, "logit_scale": 1.0}
    bad = {k: float(v) for k, v in found.items() if not np.isclose(v, expected[k])}
    if bad:
        raise ValueError(f"postprocessing constants differ from imgfeat.engines.ssd's: {bad}")


def convert(graph_pb: Path, out_dir: Path) -> None:
    """Rebuild the frozen graph as BigDL models in `out_dir` (idempotent; atomic via rename).

    Needs the BigDL JVM: starts `init_spark()` when no SparkContext is active.
    """
    graph_pb, out_dir = Path(graph_pb), Path(out_dir)
    digest = hashlib.sha256(graph_pb.read_bytes()).hexdigest()
    done = load_manifest(out_dir) if (out_dir / MANIFEST).exists() else {}
    if (done.get("graph_sha256"), done.get("format")) == (digest, FORMAT):
        return
    init_spark()
    from bigdl.dllib.version import __version__ as bigdl_version

    from imgfeat.descriptor import picture_size, rmac_regions

    nodes = _read_graph(graph_pb)
    _check_postprocess_constants(nodes)
    anchors = _evaluate(nodes, ANCHOR_NODE).astype(np.float32)
    detector, heads = build_detector(nodes)
    backbone = build_backbone(nodes)
    n_anchors = sum(c // 4 * h * w for name, c, h, w in heads if "BoxEncoding" in name)
    if anchors.shape != (n_anchors, 4):
        raise ValueError(f"anchors {anchors.shape} do not match the {n_anchors} predicted boxes")

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    detector.saveModel(str(tmp / "detector.bigdl"), over_write=True)  # BigDL's own protobuf format
    backbone.saveModel(str(tmp / "backbone.bigdl"), over_write=True)
    np.save(tmp / "anchors.npy", anchors)
    (tmp / MANIFEST).write_text(json.dumps({
        "source": graph_pb.name, "graph_sha256": digest, "bigdl": bigdl_version, "format": FORMAT,
        "input": {"shape": [-1, 3, INPUT_SIZE, INPUT_SIZE], "layout": "NCHW", "dtype": "float32",
                  "range": [-1, 1], "preprocess": "x / 127.5 - 1 (RGB)"},
        "detector": {"file": "detector.bigdl",
                     "output": [-1, sum(c * h * w for _, c, h, w in heads) + picture_size(), 1, 1],
                     "picture": "after the heads: region maxima of imgfeat.descriptor.PICTURE_MAPS (descriptor.picture)",
                     "heads": [{"name": n, "c": c, "h": h, "w": w} for n, c, h, w in heads]},
        "backbone": {"file": "backbone.bigdl", "output": [-1, 1280 * sum(rmac_regions()), 1, 1],
                     "node": BACKBONE_NODE, "pooling": "R-MAC region maxima (imgfeat.descriptor.rmac)"},
        "anchors": {"file": "anchors.npy", "shape": list(anchors.shape), "node": ANCHOR_NODE,
                    "layout": "ymin, xmin, ymax, xmax"},
        "postprocess": {"box_scales": BOX_SCALES.tolist(), "score_threshold": SCORE_THRESHOLD,
                        "iou_threshold": IOU_THRESHOLD, "max_per_class": MAX_PER_CLASS, "max_total": MAX_TOTAL},
    }, indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)

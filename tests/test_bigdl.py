"""The BigDL engine: the SSD and its backbone rebuilt from BigDL's stock layers (MKL-DNN engine),
against the OpenVINO engine on real photos; BigDL's own format and a Caffe round trip."""

import numpy as np
import pytest

from imgfeat import decode, descriptor
from imgfeat.engines import INPUT_SIZE

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def bigdl_engine(spark, model_dir):
    from imgfeat.engines import get_engine

    return get_engine("bigdl", model_dir)


@pytest.fixture(scope="module")
def real_photos() -> dict:
    """The 18 real photos of the sample sources and their mirror images: 36 network inputs."""
    from imgfeat import sample_photos

    photos, _, _ = sample_photos.catalogue(sample_photos.fetch_sources())
    out = {}
    for path, name in photos:
        rgb = decode.decode_rgb(path.read_bytes())
        out[name] = decode.resize(rgb, INPUT_SIZE)
        out[f"{name} (mirrored)"] = decode.resize(np.ascontiguousarray(rgb[:, ::-1]), INPUT_SIZE)
    return out


def _iou(a, b) -> float:
    iy, ix = max(0, min(a[2], b[2]) - max(a[0], b[0])), max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iy * ix
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_the_engines_agree_on_real_photos(engine, bigdl_engine, real_photos):
    names = sorted(real_photos)
    batch = np.stack([real_photos[n] for n in names])
    ov, bd = engine.detect(batch), bigdl_engine.detect(batch)
    compared = 0
    for name, a, b in zip(names, ov, bd):
        if not len(a.scores):
            assert not len(b.scores) or b.scores[0] < 0.32, name
            continue
        compared += 1
        assert len(b.scores), name
        assert b.classes[0] == a.classes[0], name
        assert _iou(a.boxes[0], b.boxes[0]) >= 0.9, name
        assert abs(float(a.scores[0]) - float(b.scores[0])) <= 0.02, name
    assert compared >= 20
    fa = descriptor.l2_normalize(engine.features(batch))
    fb = descriptor.l2_normalize(bigdl_engine.features(batch))
    assert fa.shape == fb.shape == (len(names), 1280)
    assert float(np.min(np.sum(fa * fb, axis=1))) >= 0.99
    ca, cb = descriptor.binary_codes(fa, 64), descriptor.binary_codes(fb, 64)
    assert max(descriptor.hamming(x.tobytes(), y.tobytes()) for x, y in zip(ca, cb)) <= 2


def test_known_photos_through_bigdl(bigdl_engine, photos):
    from imgfeat import coco

    batch = np.stack([decode.resize(photos[n], INPUT_SIZE) for n in ("chelsea", "coffee", "astronaut")])
    top = [coco.label_name(d.classes[0]) for d in bigdl_engine.detect(batch)]
    assert top == ["cat", "cup", "person"]


def test_a_caffe_model_saved_by_bigdl_loads_back_with_the_same_outputs(bigdl_engine, model_dir, tmp_path, real_photos):
    from imgfeat.engines import bigdl
    from imgfeat.engines.models import BIGDL_DIR, fetch_graph
    from imgfeat import paths

    nodes = bigdl._read_graph(fetch_graph(paths.cache_dir()))
    backbone = bigdl.build_backbone(nodes, caffe=True)
    bigdl.save_caffe(backbone, tmp_path / "backbone.prototxt", tmp_path / "backbone.caffemodel")
    assert (tmp_path / "backbone.prototxt").read_text().count("type: CONVOLUTION") >= 52  # V1 layer names
    # Both run as MKL-DNN IR graphs, as the stages run them.
    loaded = bigdl.to_ir(bigdl.load_caffe(tmp_path / "backbone.prototxt", tmp_path / "backbone.caffemodel"))
    x = bigdl.preprocess(np.stack([real_photos[n] for n in sorted(real_photos)[:4]]))
    caffe_out = np.asarray(loaded.forward(x)).reshape(4, -1)
    saved = bigdl.to_ir(bigdl.load(f"{model_dir}/{BIGDL_DIR}", "backbone"))  # BigDL's own format
    own_out = np.asarray(saved.forward(x)).reshape(4, -1)
    assert caffe_out.shape == (4, 1280)
    assert np.max(np.abs(caffe_out - own_out)) < 1e-4

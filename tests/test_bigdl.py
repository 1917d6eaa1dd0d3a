"""The BigDL engine: the SSD and its backbone rebuilt from BigDL's stock layers (MKL-DNN engine),
against the OpenVINO engine on real photos."""

import numpy as np
import pytest

from conftest import hamming
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
    from devtools import sample_photos

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
    assert max(hamming(x.tobytes(), y.tobytes()) for x, y in zip(ca, cb)) <= 2
    # the whole picture's descriptor, from each detector's own backbone: BigDL's is OpenVINO's
    pa = descriptor.l2_normalize(np.stack([d.picture for d in ov]))
    pb = descriptor.l2_normalize(np.stack([d.picture for d in bd]))
    assert pa.shape == pb.shape == (len(names), descriptor.PICTURE_DIM)
    assert float(np.min(np.sum(pa * pb, axis=1))) >= 0.99
    cpa, cpb = descriptor.binary_codes(pa, 64), descriptor.binary_codes(pb, 64)
    assert max(hamming(x.tobytes(), y.tobytes()) for x, y in zip(cpa, cpb)) <= 2


def test_known_photos_through_bigdl(bigdl_engine, photos):
    from imgfeat import coco

    batch = np.stack([decode.resize(photos[n], INPUT_SIZE) for n in ("chelsea", "coffee", "astronaut")])
    top = [coco.label_name(d.classes[0]) for d in bigdl_engine.detect(batch)]
    assert top == ["cat", "cup", "person"]

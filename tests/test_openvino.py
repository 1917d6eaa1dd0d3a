"""The OpenVINO engine runs only the SSD's network; imgfeat.engines.ssd does TF's resize and NMS in
numpy/OpenCV. Against the whole converted TF graph (its own preprocessing and NMS loops) on the 18
real photos of the sample sources and their mirror images: the same detections and features."""

from __future__ import annotations

import numpy as np
import pytest

from imgfeat import decode, descriptor
from imgfeat.engines import INPUT_SIZE


@pytest.fixture(scope="module")
def whole_graph():
    """The frozen graph as one OpenVINO model (detector with NMS), its pooled backbone and its
    picture's region maxima."""
    import openvino as ov

    from imgfeat import paths
    from imgfeat.engines.models import picture_pooling, pooled_backbone

    model = ov.convert_model(str(paths.cache_dir() / "downloads" / "frozen_inference_graph.pb"))
    backbone = pooled_backbone(model)  # with the graph's own resize loop in front
    pictures = ov.Model([picture_pooling(model)], model.get_parameters())
    core = ov.Core()
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}  # as the engine runs (a bf16 CPU's default may differ)
    return (core.compile_model(model, "CPU", f32), core.compile_model(backbone, "CPU", f32),
            core.compile_model(pictures, "CPU", f32))


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    from devtools import sample_photos

    photos, _, _ = sample_photos.catalogue(sample_photos.fetch_sources())
    rgbs = [decode.decode_rgb(path.read_bytes()) for path, _ in photos]
    rgbs += [np.ascontiguousarray(rgb[:, ::-1]) for rgb in rgbs]
    return np.stack([decode.resize(rgb, INPUT_SIZE) for rgb in rgbs])


def test_the_network_with_numpy_pre_and_postprocessing_detects_what_the_whole_graph_does(engine, whole_graph, batch):
    detector = whole_graph[0]
    assert len(batch) == 36
    result = detector(batch)
    outputs = {n.split(":")[0]: result[o] for o in detector.outputs for n in o.get_names()}
    ours = engine.detect(batch)
    found = 0
    for i, d in enumerate(ours):
        n = int(outputs["num_detections"][i])
        assert len(d.scores) == n
        np.testing.assert_array_equal(d.classes, outputs["detection_classes"][i, :n].astype(np.int32))
        np.testing.assert_allclose(d.boxes, outputs["detection_boxes"][i, :n], atol=1e-5)
        np.testing.assert_allclose(d.scores, outputs["detection_scores"][i, :n], atol=1e-5)
        found += n
    assert found > 36  # real objects were found, not empty lists compared


def test_the_backbone_gives_the_whole_graphs_features(engine, whole_graph, batch):
    _, backbone, whole_pictures = whole_graph
    expected = descriptor.rmac(backbone(batch)[0])
    got = engine.features(batch)
    assert got.shape == (36, 1280)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # The detector's own backbone describes the whole picture in the same inference: the whole
    # graph's values of the same maps.
    pictures = np.stack([d.picture for d in engine.detect(batch)])
    assert pictures.shape == (36, descriptor.PICTURE_DIM)
    np.testing.assert_allclose(pictures, descriptor.picture(whole_pictures(batch)[0]), rtol=1e-4, atol=1e-5)


def test_the_backbone_packs_the_max_of_each_rmac_region_of_the_last_feature_map(batch):
    """Against numpy over the ReLU6 map itself: the windows are where descriptor.RMAC_LEVELS says."""
    import openvino as ov

    from imgfeat import paths
    from imgfeat.engines import ssd
    from imgfeat.engines.models import pooled_backbone

    core = ov.Core()
    detector = core.read_model(str(paths.model_dir() / "detector.xml"))
    relu6 = [op for op in detector.get_ops()
             if op.get_type_name() == "Clamp" and str(op.output(0).get_partial_shape()) == "[?,1280,10,10]"][0]
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    maps = core.compile_model(ov.Model([relu6.output(0)], detector.get_parameters()), "CPU", f32)
    backbone = core.compile_model(pooled_backbone(detector), "CPU", f32)
    x = ssd.preprocess(batch[:4])
    m = maps(x)[0]
    expected = [m.max((2, 3))[:, :, None]]
    for window, starts in ((6, (0, 4)), (4, (0, 3, 6))):
        expected.append(np.stack([m[:, :, i:i + window, j:j + window].max((2, 3)) for i in starts for j in starts], 2))
    packed = np.concatenate([e.reshape(len(x), -1) for e in expected], 1)
    np.testing.assert_allclose(backbone(x)[0], packed, rtol=1e-5, atol=1e-6)


def test_the_detector_packs_the_max_of_each_region_of_the_pictures_maps(batch):
    """Against numpy over block 13's expansion (576x19x19) and block 10's depthwise output
    (384x19x19): the windows are where descriptor.PICTURE_MAPS says, whole map first."""
    import openvino as ov

    from imgfeat import paths
    from imgfeat.engines import ssd
    from imgfeat.engines.models import picture_maps

    core = ov.Core()
    detector = core.read_model(str(paths.model_dir() / "detector.xml"))
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    maps = core.compile_model(ov.Model(picture_maps(detector), detector.get_parameters()), "CPU", f32)
    compiled = core.compile_model(detector, "CPU", f32)
    x = ssd.preprocess(batch[:4])
    m576, m384 = (maps(x)[i] for i in range(2))
    assert m576.shape == (4, 576, 19, 19) and m384.shape == (4, 384, 19, 19)
    expected = [m576.max((2, 3))[:, :, None]]
    for window, starts in ((12, (0, 7)), (9, (0, 5, 10))):
        expected.append(np.stack([m576[:, :, i:i + window, j:j + window].max((2, 3)) for i in starts for j in starts], 2))
    expected.append(m384.max((2, 3))[:, :, None])
    packed = np.concatenate([e.reshape(len(x), -1) for e in expected], 1)
    np.testing.assert_allclose(compiled(x)["picture_rmac"], packed, rtol=1e-5, atol=1e-6)
    # block 13's expansion is the map the SSD's first head reads: besides the picture's pooling, its
    # ReLU6 feeds the head's two convolutions and block 13's depthwise one
    readers = [t.get_node().get_type_name() for t in picture_maps(detector)[0].get_target_inputs()]
    assert sorted(r for r in readers if r != "MaxPool") == ["Convolution", "Convolution", "GroupConvolution"]


def test_the_compiled_networks_leave_their_threads_unpinned(engine, batch):
    """An executor's tasks each compile their own networks: pinned, their threads would share cores."""
    engine.detect(batch[:1])
    engine.features(batch[:1])
    assert [m.get_property("ENABLE_CPU_PINNING") for m in (engine._detector, engine._backbone)] == [False, False]

"""Stage logic on real photos with the real model, batch by batch (no Spark)."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from conftest import hamming, jpeg
from devtools import badfiles
from imgfeat import decode, descriptor, schemas
from imgfeat.engines import INPUT_SIZE
from imgfeat.stages import crop, detect, embed, ingest

# Hand-labelled boxes (x1, y1, x2, y2) of each photo's main object, drawn by looking at it.
MAIN_OBJECT = {
    "chelsea": ("cat", (0, 0, 420, 300)),
    "astronaut": ("person", (15, 15, 365, 512)),
    "coffee": ("cup", (175, 15, 410, 255)),
}


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def ingested(photos, names):
    rows = [ingest.ingest_file(f"{n}.jpg", jpeg(photos[n])) for n in names]
    return pd.DataFrame(rows)


def test_ingest_reads_a_local_partition_under_exact_relative_paths(tmp_path, photos):
    data = jpeg(photos["coffee"])
    for name in ("a/b%20c.jpg", "p#1.jpg", "gone.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "gone.jpg").unlink()  # listed, then deleted before it was read
    out = ingest.read_and_ingest_batch(pd.DataFrame({"image_id": ["a/b%20c.jpg", "p#1.jpg", "gone.jpg"]}),
                                       str(tmp_path)).set_index("image_id")
    assert list(out.columns) == schemas.columns(schemas.INGEST)[1:]
    assert out.loc["a/b%20c.jpg", "content"] == data and out.loc["p#1.jpg", "content"] == data
    assert out.loc["gone.jpg", "quarantine_reason"] == "unreadable: No such file or directory"


def test_ingest_fingerprints_and_measures(photos):
    data = jpeg(photos["coffee"])
    row = ingest.ingest_file("shelf/Coffee.JPEG", data)
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    assert (row["width"], row["height"], row["format"]) == (600, 400, "JPEG")
    assert row["size_bytes"] == len(data) and row["content"] == data
    assert row["quarantine_stage"] is None


def test_ingest_quarantines_every_bad_file_with_its_reason(photos):
    files = badfiles.build(photos["chelsea"])
    batch = pd.DataFrame({"image_id": [f"x/{n}" for n in files], "content": list(files.values())})
    out = ingest.ingest_batch(batch).set_index("image_id")
    assert len(out) == len(files)
    for name, code in badfiles.EXPECTED.items():
        row = out.loc[f"x/{name}"]
        if code is None:
            assert row["quarantine_stage"] is None and row["content"] is not None
        else:
            assert row["quarantine_stage"] == "ingest"
            assert row["quarantine_reason"].split(":")[0] == code
            assert row["content"] is None and row["sha256"] == hashlib.sha256(files[name]).hexdigest()


def test_detect_finds_each_photos_main_object(photos, engine):
    names = list(MAIN_OBJECT)
    out = detect.detect_batch(ingested(photos, names), engine, threshold=0.3)
    for name, row in zip(names, out.to_dict("records")):
        label, box = MAIN_OBJECT[name]
        best = row["detections"][0]
        assert best["label"] == label, (name, best)
        assert best["score"] > 0.7
        got = (best["x1"], best["y1"], best["x2"], best["y2"])
        assert iou(got, box) > 0.7, (name, got, box)
        assert all(d["score"] >= 0.3 for d in row["detections"])
    # and each whole picture's descriptor, from the same inference over the pixels detect decoded
    pixels = np.stack([decode.resize(decode.decode_rgb(c, min_size=INPUT_SIZE), INPUT_SIZE) for c in out["content"]])
    expected = descriptor.l2_normalize(np.stack([d.picture for d in engine.detect(pixels)]))
    assert expected.shape == (len(names), descriptor.PICTURE_DIM)
    np.testing.assert_allclose(np.stack(out["picture_embedding"]), expected, atol=1e-5)


def test_detect_on_a_large_picture_decoded_small_keeps_original_pixel_boxes(photos, engine):
    from PIL import Image

    # Chelsea at 4x (1804 x 1200): detect decodes it at 1/4 scale; boxes are in the 4x pixels.
    big = np.asarray(Image.fromarray(photos["chelsea"]).resize((1804, 1200), Image.BICUBIC))
    row = ingest.ingest_file("big.jpg", jpeg(big))
    assert (row["width"], row["height"]) == (1804, 1200)
    out = detect.detect_batch(pd.DataFrame([row]), engine, threshold=0.3).iloc[0]
    best = out["detections"][0]
    got = (best["x1"], best["y1"], best["x2"], best["y2"])
    label, box = MAIN_OBJECT["chelsea"]
    assert best["label"] == label and iou(got, tuple(4 * v for v in box)) > 0.7, got
    # The same as detecting on the full-size decode.
    full = engine.detect(decode.resize(decode.decode_rgb(jpeg(big)), INPUT_SIZE)[None])[0]
    ref = detect.to_pixels(full, 1804, 1200, 0.3)[0]
    assert ref["label"] == label and iou(got, (ref["x1"], ref["y1"], ref["x2"], ref["y2"])) > 0.95


def test_detect_threshold_and_pixel_boxes(photos, engine):
    high = detect.detect_batch(ingested(photos, ["coffee"]), engine, threshold=0.9).iloc[0]
    low = detect.detect_batch(ingested(photos, ["coffee"]), engine, threshold=0.5).iloc[0]
    assert [d["label"] for d in high["detections"]] == ["cup"]
    assert len(low["detections"]) > 1 and low["detections"][0] == high["detections"][0]
    for d in low["detections"]:
        assert 0 <= d["x1"] < d["x2"] <= 600 and 0 <= d["y1"] < d["y2"] <= 400


def test_to_pixels_clamps_and_drops_empty_boxes():
    from imgfeat.engines import Detections

    d = Detections(np.array([[-0.1, 0.5, 1.2, 0.75], [0.2, 0.2, 0.2, 0.4]], np.float32),
                   np.array([47, 1]), np.array([0.9, 0.8], np.float32))
    assert detect.to_pixels(d, 200, 100, 0.5) == [
        {"label_id": 47, "label": "cup", "score": pytest.approx(0.9), "x1": 100, "y1": 0, "x2": 150, "y2": 100}]


def test_crop_keeps_the_best_object_with_a_margin(photos):
    row = {"image_id": "coffee.jpg", "sha256": "s", "width": 600, "height": 400,
           "content": jpeg(photos["coffee"]), "quarantine_stage": None, "quarantine_reason": None,
           "detections": [{"label": "cup", "score": 0.95, "x1": 100, "y1": 50, "x2": 300, "y2": 250},
                          {"label": "spoon", "score": 0.5, "x1": 0, "y1": 0, "x2": 10, "y2": 10}]}
    out = crop.crop_row(row)
    assert (out["label"], out["x1"], out["y1"], out["x2"], out["y2"]) == ("cup", 100, 50, 300, 250)
    assert decode.decode_rgb(out["crop"]).shape == (232, 232, 3)  # 200 + 2 * 16 px margin
    # the whole picture's descriptor (detect's) passes through to embed
    row["picture_embedding"] = [0.6, 0.8]
    assert crop.crop_row(row)["picture_embedding"] == [0.6, 0.8]


def test_crop_clamps_at_the_border_and_keeps_the_whole_picture_without_detection(photos):
    assert crop.padded((0, 10, 600, 390), 600, 400) == (0, 0, 600, 400)
    row = {"image_id": "rocket.jpg", "sha256": "s", "width": 640, "height": 427,
           "content": jpeg(photos["rocket"]), "quarantine_stage": None, "quarantine_reason": None,
           "detections": []}
    out = crop.crop_row(row)
    assert (out["label"], out["score"], out["x1"], out["y1"], out["x2"], out["y2"]) == (None, 0.0, 0, 0, 640, 427)
    assert decode.decode_rgb(out["crop"]).shape == (427, 640, 3)


def test_crop_passes_quarantined_rows_through():
    row = {"image_id": "bad.jpg", "sha256": "s", "width": None, "height": None, "content": None,
           "detections": None, "quarantine_stage": "ingest", "quarantine_reason": "truncated: x"}
    out = crop.crop_batch(pd.DataFrame([row])).iloc[0]
    assert (out["quarantine_stage"], out["quarantine_reason"], out["crop"], out["picture_embedding"]) == (
        "ingest", "truncated: x", None, None)


def test_reused_rows_skip_inference(photos, engine):
    row = {"image_id": "dup.jpg", "sha256": "s", "width": 451, "height": 300, "content": jpeg(photos["chelsea"]),
           "reused_from": "dt=2026-11-01/cat.jpg", "quarantine_stage": None, "quarantine_reason": None}
    det = detect.detect_batch(pd.DataFrame([row]), engine, 0.3).iloc[0]
    assert (det["detections"], det["content"], det["picture_embedding"], det["reused_from"]) == (
        None, None, None, "dt=2026-11-01/cat.jpg")
    out = crop.crop_batch(pd.DataFrame([det.to_dict()])).iloc[0]
    assert (out["label"], out["crop"], out["reused_from"], out["quarantine_stage"]) == (
        None, None, "dt=2026-11-01/cat.jpg", None)
    emb = embed.embed_batch(pd.DataFrame([out.to_dict()]), engine, 64).iloc[0]
    assert (emb["code"], emb["embedding"], emb["picture_code"], emb["picture_embedding"], emb["reused_from"]) == (
        None, None, None, None, "dt=2026-11-01/cat.jpg")


def _crop_rows(images: dict, engine) -> pd.DataFrame:
    """Crop-stage rows of whole pictures, each with its picture's descriptor as detect gives it."""
    pictures = engine.detect(np.stack([decode.resize(v, INPUT_SIZE) for v in images.values()]))
    return pd.DataFrame([{"image_id": k, "sha256": "s", "width": v.shape[1], "height": v.shape[0],
                          "label": None, "score": 0.0, "x1": 0, "y1": 0, "x2": v.shape[1], "y2": v.shape[0],
                          "crop": decode.encode_png(v), "picture_embedding": descriptor.l2_normalize(d.picture[None])[0],
                          "quarantine_stage": None, "quarantine_reason": None}
                         for (k, v), d in zip(images.items(), pictures)])


def test_embed_gives_unit_descriptors_and_packed_codes(photos, engine):
    cat = photos["chelsea"]
    images = {"cat": cat, "cat-recompressed": decode.decode_rgb(jpeg(cat, 60)),
              "cat-flipped": cat[:, ::-1].copy(), "cat-cropped": cat[20:280, 30:420].copy(), "rocket": photos["rocket"], "coffee": photos["coffee"]}
    out = embed.embed_batch(_crop_rows(images, engine), engine, coder=64).set_index("image_id")
    emb = {k: np.array(v, np.float32) for k, v in out["embedding"].items()}
    for v in emb.values():
        assert v.shape == (1280,) and abs(np.linalg.norm(v) - 1) < 1e-5
    assert all(len(c) == 8 for c in out["code"]) and set(out["code_bits"]) == {64}
    codes = out["code"].to_dict()
    near = max(hamming(codes["cat"], codes[k]) for k in ("cat-recompressed", "cat-flipped", "cat-cropped"))
    far = min(hamming(codes["cat"], codes[k]) for k in ("rocket", "coffee"))
    # R-MAC descriptors, projected: the copies 9 (re-compressed), 5 and 3 bits away, the others 29
    # and 33 (average pooling, before: 6, 2, 6 and 20, 32): the margin between them grew
    assert near <= 9 and far >= 24, (near, far)
    assert emb["cat"] @ emb["cat-flipped"] > emb["cat"] @ emb["rocket"]
    # The picture's descriptor (detect's) passes through, and is coded by the projection too; the
    # copies of the cat are nearer to it than the other pictures are.
    given = _crop_rows(images, engine).set_index("image_id")["picture_embedding"]
    for k, r in out.iterrows():
        np.testing.assert_array_equal(np.array(r["picture_embedding"], np.float32), given[k])
        assert r["picture_code"] == descriptor.binary_codes(given[k][None], 64)[0].tobytes(), k
    pcodes = out["picture_code"].to_dict()
    near = max(hamming(pcodes["cat"], pcodes[k]) for k in ("cat-recompressed", "cat-flipped", "cat-cropped"))
    far = min(hamming(pcodes["cat"], pcodes[k]) for k in ("rocket", "coffee"))
    # measured: the copies 4 bits away at most, the others 18 at least
    assert near <= 6 and far >= 14, (near, far)


def test_embed_codes_the_picture_with_its_own_coder(photos, engine):
    rows = _crop_rows({"cat": photos["chelsea"]}, engine)
    rows["crop"] = [decode.encode_png(photos["chelsea"][50:250, 100:300])]  # an object, not the picture
    w = np.zeros((1280, 8), np.float32)
    learned = descriptor.Coder(8, "deepbit8-test", w, np.array([1, -1] * 4, np.float32))  # 10101010 whatever x
    r = embed.embed_batch(rows, engine, learned, picture_coder=8).iloc[0]
    assert (r["code"], r["code_bits"]) == (bytes([0b10101010]), 8)
    assert r["picture_code"] == descriptor.binary_codes(np.array([r["picture_embedding"]], np.float32), 8)[0].tobytes()
    assert len(r["embedding"]) == 1280 and len(r["picture_embedding"]) == descriptor.PICTURE_DIM  # two descriptors


def test_codes_are_deterministic_and_sized_by_k():
    import os
    import subprocess
    import sys

    from imgfeat import paths

    x = descriptor.l2_normalize(np.random.RandomState(1).rand(3, 1280))
    # Another process (another executor, the next run) derives its own projection from the same
    # embeddings: its codes must be the same bytes.
    other = subprocess.run(
        [sys.executable, "-c", "import sys, numpy as np; from imgfeat import descriptor;"
         "x = np.frombuffer(sys.stdin.buffer.read(), np.float32).reshape(3, 1280);"
         "print(' '.join(descriptor.binary_codes(x, k).tobytes().hex() for k in (32, 64, 128)))"],
        input=x.tobytes(), cwd=paths.REPO, env={**os.environ, "PYTHONHASHSEED": "1"},
        capture_output=True, check=True).stdout.decode().split()
    assert len(other) == 3
    for k, theirs in zip((32, 64, 128), other):
        a = descriptor.binary_codes(x, k)
        assert a.shape == (3, k // 8) and a.tobytes().hex() == theirs, k
        assert len({row.tobytes() for row in a}) == 3  # three different embeddings, three codes
    with pytest.raises(ValueError, match="^code_bits must be a multiple of 8, got 12$"):
        descriptor.binary_codes(x, 12)

"""The five stages in one local SparkSession, on real photos with planted bad files."""

import json
from pathlib import Path

import pytest

from conftest import jpeg
from imgfeat import badfiles
from imgfeat.layout import STAGES, Warehouse
from imgfeat.spark.runner import StageFailed, parse, run

pytestmark = pytest.mark.spark
DATE = "2026-11-03"
LABELS = {"photos/chelsea.jpg": "cat", "photos/coffee.jpg": "cup", "photos/deep/er/astronaut.jpg": "person",
          "photos/rocket.jpg": None}


@pytest.fixture(scope="module")
def partition(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("input")
    part = root / f"dt={DATE}"
    for image_id in LABELS:
        (part / image_id).parent.mkdir(parents=True, exist_ok=True)
        (part / image_id).write_bytes(jpeg(photos[Path(image_id).stem]))
    expected_bad = badfiles.write(part / "bad", photos["chelsea"], prefix="bad/")
    return root, expected_bad


@pytest.fixture(scope="module")
def warehouse(spark, partition, model_dir, tmp_path_factory):
    root, _ = partition
    wh = tmp_path_factory.mktemp("warehouse")
    args = parse("ingest", ["--partition-date", DATE, "--input-root", str(root), "--warehouse-root", str(wh),
                            "--model-dir", model_dir, "--images-per-task", "4"])
    args.model_manifest = parse("detect", ["--partition-date", DATE, "--input-root", str(root),
                                           "--warehouse-root", str(wh), "--model-dir", model_dir]).model_manifest
    metas = {stage: run(spark, stage, args) for stage in STAGES}
    return wh, args, metas


def test_every_input_file_is_published_or_quarantined_exactly_once(spark, partition, warehouse):
    _, expected_bad = partition
    wh, _, _ = warehouse
    features = spark.read.parquet(str(wh / "features" / f"dt={DATE}")).collect()
    quarantine = spark.read.parquet(str(wh / "quarantine" / f"dt={DATE}")).collect()
    ids = [r.image_id for r in features] + [r.image_id for r in quarantine]
    assert sorted(ids) == sorted(list(LABELS) + list(expected_bad))
    assert {r.image_id: r.reason.split(":")[0] for r in quarantine} == {
        k: v for k, v in expected_bad.items() if v is not None}
    assert {r.stage for r in quarantine} == {"ingest"}


def test_published_rows_carry_labels_boxes_codes(spark, warehouse):
    wh, _, _ = warehouse
    rows = {r.image_id: r for r in spark.read.parquet(str(wh / "features" / f"dt={DATE}")).collect()}
    for image_id, label in LABELS.items():
        r = rows[image_id]
        assert r.label == label, image_id
        assert 0 <= r.x1 < r.x2 <= r.width and 0 <= r.y1 < r.y2 <= r.height
        assert len(r.code) == 8 and r.code_bits == 64 and len(r.embedding) == 1280
        assert r.model.startswith("ssd_mobilenet_v2_coco_2018_03_29+mobilenet_v2_gap1280;engine=openvino-")
    assert rows["photos/rocket.jpg"].score == 0.0
    assert (rows["photos/rocket.jpg"].x2, rows["photos/rocket.jpg"].y2) == (640, 427)
    # Valid-but-awkward files (CMYK, 16-bit, alpha, gray, GIF) of the cat photo are all cats.
    for name in ("cmyk.jpg", "gray16.png", "alpha.png", "grayscale.JPG", "animated.gif"):
        assert rows[f"bad/{name}"].label == "cat", name


def test_manifest_counts(warehouse):
    wh, _, metas = warehouse
    m = json.loads((wh / "runs" / f"dt={DATE}" / "manifest.json").read_text())
    assert m == metas["publish"]
    assert (m["images_in"], m["published"], m["quarantined"]) == (15, 9, 6)
    assert m["quarantined_by_reason"] == {"empty_file": 1, "too_many_pixels": 1, "too_small": 1,
                                          "truncated": 1, "undecodable": 1, "unsupported_extension": 1}
    assert m["top_labels"]["cat"] == 6
    assert set(m["stages"]) == set(STAGES) and all(s["duration_s"] > 0 for s in m["stages"].values())
    for stage in ("ingest", "detect", "crop", "embed"):
        assert (m["stages"][stage]["rows"], m["stages"][stage]["quarantined"]) == (15, 6)


def test_rerunning_a_stage_gives_the_same_rows(spark, warehouse):
    wh, args, _ = warehouse
    path = str(wh / "embed" / f"dt={DATE}")
    key = lambda r: r.image_id  # noqa: E731
    before = sorted(spark.read.parquet(path).select("image_id", "code", "label", "x1").collect(), key=key)
    run(spark, "embed", args)
    after = sorted(spark.read.parquet(path).select("image_id", "code", "label", "x1").collect(), key=key)
    assert after == before


def test_a_stage_refuses_to_run_without_its_predecessor(spark, warehouse, model_dir):
    wh, args, _ = warehouse
    other = parse("detect", ["--partition-date", "2026-11-04", "--input-root", args.input_root,
                             "--warehouse-root", str(wh), "--model-dir", model_dir])
    with pytest.raises(StageFailed, match=r"ingest checkpoint .*dt=2026-11-04 is not committed"):
        run(spark, "detect", other)
    assert not (wh / "detect" / "dt=2026-11-04").exists()

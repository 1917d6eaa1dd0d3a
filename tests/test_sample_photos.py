"""Sample partitions from real photos: files, records, boxes and determinism.

Uses the default cache (<repo>/.cache or $IMGFEAT_CACHE); the first run fetches the sources
from Debian and scikit-image (~80 MB download, a few seconds here).
"""

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from devtools import sample_photos as sp

COUNT = 12


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sources() -> Path:
    return sp.fetch_sources()


@pytest.fixture(scope="module")
def partition(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("part") / "day=2024-01-01"
    return out, sp.build_partition(out, COUNT, seed=7)


def test_files_and_records(partition):
    out, records = partition
    files = _digests(out)
    assert len(files) == COUNT == len(records)
    assert sorted(r["image_id"] for r in records) == sorted(files)  # nothing but the images
    assert len(set(files.values())) == COUNT  # distinct contents
    assert {Path(i).parent.as_posix() for i in files} >= {"photos", "composed/shelf-a"}
    assert sorted(r["kind"] for r in records) == ["composed"] * 6 + ["photo"] * 6
    for r in records:
        with Image.open(out / r["image_id"]) as im:
            im.load()
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (r["width"], r["height"]))


def test_boxes_and_groups(partition):
    _, records = partition
    groups = defaultdict(list)
    for r in records:
        if r["kind"] == "photo":
            assert r["box"] is None and r["object"] is None
            continue
        x1, y1, x2, y2 = r["box"]
        assert 0 <= x1 < x2 <= r["width"] and 0 <= y1 < y2 <= r["height"]
        # the object's longer relative side spans 20-60% of the picture (1 px of rounding)
        rel = max((x2 - x1) / r["width"], (y2 - y1) / r["height"])
        assert 0.2 - 2 / r["height"] <= rel <= 0.6 + 2 / r["height"]
        assert r["object"] is not None  # COCO cut-outs come first
        groups[r["group"]].append(r)
    assert len(groups) == 2
    for members in groups.values():  # the same cut-out on different backgrounds
        assert len(members) == sp.GROUP_SIZE
        assert len({m["source"] for m in members}) == 1
        assert len({m["background"] for m in members}) == sp.GROUP_SIZE


def test_same_seed_same_bytes(partition, tmp_path):
    out, records = partition
    again = sp.build_partition(tmp_path / "again", COUNT, seed=7)
    assert again == records
    assert _digests(tmp_path / "again") == _digests(out)
    sp.build_partition(tmp_path / "other", COUNT, seed=8)
    assert _digests(tmp_path / "other") != _digests(out)


def test_refuses_non_empty_out_dir(partition, sources):
    import re

    out, _ = partition
    before = _digests(out)
    with pytest.raises(FileExistsError, match=f"^{re.escape(str(out))} is not empty; a partition is written into a new folder$"):
        sp.build_partition(out, 2, cache_dir=sources.parent)
    assert _digests(out) == before  # left as it was


def test_paste_box_is_the_alpha_bbox(sources):
    cutout = sp.load_cutout(sources / "qabcs" / "food" / "donut.png")
    # on a flat colour, the pixels the paste changed are exactly the visible object
    flat = Image.new("RGB", (640, 480), (255, 0, 255))
    img, box = sp.paste(flat, cutout, 100, 50, 300)
    changed = np.argwhere(np.any(np.asarray(img) != np.asarray(flat), axis=-1))
    (y1, x1), (y2, x2) = changed.min(0), changed.max(0) + 1
    assert box == [x1, y1, x2, y2]
    assert 295 <= box[2] - box[0] <= 300
    # on a real background nothing outside the box changes
    bg = sp.load_rgb(sources / "wallpapers" / "mate-backgrounds" / "Wood.jpg", (800, 600))
    bg = bg.resize((800, 600))
    img, box = sp.paste(bg, cutout, 400, 300, 320)
    diff = np.any(np.asarray(img) != np.asarray(bg), axis=-1)
    inside = np.zeros_like(diff)
    inside[box[1]:box[3], box[0]:box[2]] = True
    assert diff[inside].mean() > 0.5 and not diff[~inside].any()


def test_cli_writes_truth_outside(tmp_path, sources, capsys):
    out, truth = tmp_path / "part", tmp_path / "truth.json"
    assert sp.main(["--out", str(out), "--count", "3", "--seed", "1",
                    "--cache", str(sources.parent), "--truth", str(truth)]) == 0
    records = json.loads(truth.read_text())
    assert sorted(r["image_id"] for r in records) == sorted(_digests(out))
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        sp.main(["--out", str(tmp_path / "p2"), "--count", "1",
                 "--truth", str(tmp_path / "p2" / "truth.json")])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().endswith(
        "python -m devtools.sample_photos: error: --truth must be outside --out: the pipeline reads the whole partition")
    assert not (tmp_path / "p2").exists()  # refused before anything was written


def test_distractors_are_distinct_pairs_of_cutout_and_background_tile(sources):
    """make eval's store-scale pictures: each an evaluation cut-out on a tile of an evaluation
    background, no (cut-out, tile) twice, the same bytes for the same seed."""
    import io

    from devtools import eval_corpus

    items = eval_corpus.distractors(sources.parent, 40)
    pairs = [(c, t) for *_, c, t in items]
    assert len(items) == 40 and len(set(pairs)) == 40 and len({k for k, *_ in items}) == 40
    for _, jpeg, _, _ in items:
        with Image.open(io.BytesIO(jpeg)) as im:
            assert im.format == "JPEG" and im.size in sp.BACKGROUND_SIZES
    assert [j for _, j, *_ in eval_corpus.distractors(sources.parent, 40)] == [j for _, j, *_ in items]


def test_the_held_out_junk_pairs_are_each_composite_and_its_own_background_whole(sources):
    """make eval's ambiguous held-out pairs: a composite group (the evaluation cut-outs, first) and
    the group of the background photo whole it was composed on (the backgrounds, after them)."""
    from devtools import eval_corpus

    pairs = eval_corpus.held_out_junk(sources.parent)
    groups = {g for _, _, g, _ in eval_corpus.held_out(sources.parent)}
    composites, backgrounds = [a for a, _ in pairs], {b for _, b in pairs}
    assert composites == [f"held{i:03d}" for i in range(len(pairs))]  # one pair a composite
    assert backgrounds <= groups - set(composites) and len(groups) - len(composites) == 10  # the 10 backgrounds


def test_the_second_held_out_split_uses_no_background_both_ways(sources):
    """`held_new`: the same 14 cut-outs, composed on every other evaluation background, and the
    other 5 backgrounds whole: no composite's background is a group of its own."""
    from devtools import eval_corpus

    items = eval_corpus.held_new(sources.parent)
    groups = sorted({g for _, _, g, _ in items})
    assert groups == [f"new{i:03d}" for i in range(14 + 5)] and len(items) == 6 * len(groups)
    _, backgrounds_of = eval_corpus._held_out_originals(sources.parent, 18 + 40, 2, slice(0, None, 2), slice(1, None, 2))
    assert backgrounds_of == {}
    # while in the first held-out split every composite's background is whole too
    _, backgrounds_of = eval_corpus._held_out_originals(sources.parent, 18 + 40, 1)
    assert len(backgrounds_of) == 14

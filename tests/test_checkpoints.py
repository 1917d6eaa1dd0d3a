"""Airflow's view of checkpoints (no Spark): committed, current, stale. (Writable: test_storage.py.)"""

import json

import pytest

from imgfeat import checkpoints, schemas, storage
from imgfeat.layout import STAGES

DATE = "2026-11-07"


def commit(root, stage, commit_id, upstream):
    d = root / stage / f"dt={DATE}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "_SUCCESS").write_text("")
    (d / "_stage.json").write_text(json.dumps({"commit_id": commit_id, "upstream_commit": upstream,
                                               "schema": schemas.digest(stage)}))


def test_committed_chain_is_current_and_a_remade_upstream_makes_downstream_stale(tmp_path):
    up = None
    for stage in STAGES[:-1]:
        commit(tmp_path, stage, f"c-{stage}", up)
        up = f"c-{stage}"
    (tmp_path / "runs" / f"dt={DATE}").mkdir(parents=True)
    (tmp_path / "runs" / f"dt={DATE}" / "manifest.json").write_text(
        json.dumps({"commit_id": "c-publish", "upstream_commit": "c-embed"}))
    for stage in STAGES:
        ok, why = checkpoints.current(str(tmp_path), stage, DATE)
        assert ok, why
    commit(tmp_path, "detect", "c-detect-2", "c-ingest")  # detect re-made
    assert checkpoints.current(str(tmp_path), "detect", DATE)[0]
    ok, why = checkpoints.current(str(tmp_path), "crop", DATE)
    assert not ok and why == f"crop dt={DATE}: checkpoint is stale (detect was re-made since)"
    assert checkpoints.current(str(tmp_path), "ingest", DATE)[0]


def test_ingest_is_current_only_while_the_input_partition_is_unchanged(tmp_path):
    inp, wh = tmp_path / "input", tmp_path / "warehouse"
    part = inp / f"dt={DATE}"
    (part / "a" / "b").mkdir(parents=True)
    (part / "x.jpg").write_bytes(b"12345")
    (part / "a" / "b" / "y.jpg").write_bytes(b"")
    listing = checkpoints.input_listing(str(inp), DATE)
    assert listing.startswith("2:")
    commit(wh, "ingest", "c-ingest", None)
    meta = wh / "ingest" / f"dt={DATE}" / "_stage.json"
    meta.write_text(json.dumps({"commit_id": "c-ingest", "upstream_commit": None, "input_listing": listing,
                                "schema": schemas.digest("ingest")}))
    assert checkpoints.current(str(wh), "ingest", DATE, str(inp))[0]
    # Names Spark's scan skips do not count: hidden files, in-flight copies, underscore folders.
    (part / ".x.jpg.swp").write_bytes(b"1")
    (part / "z.jpg._COPYING_").write_bytes(b"1")
    (part / "_tmp").mkdir()
    (part / "_tmp" / "w.jpg").write_bytes(b"1")
    assert checkpoints.current(str(wh), "ingest", DATE, str(inp))[0]
    (part / "a" / "new.jpg").write_bytes(b"1")
    assert checkpoints.current(str(wh), "ingest", DATE, str(inp)) == (
        False, f"ingest dt={DATE}: the input partition has changed since it was ingested")
    (part / "a" / "new.jpg").unlink()
    (part / "x.jpg").write_bytes(b"123456")  # replaced by different content
    assert not checkpoints.current(str(wh), "ingest", DATE, str(inp))[0]


def test_missing_or_uncommitted_checkpoints(tmp_path):
    assert checkpoints.current(str(tmp_path), "ingest", DATE) == (False, f"ingest dt={DATE}: no committed checkpoint")
    d = tmp_path / "ingest" / f"dt={DATE}"
    d.mkdir(parents=True)
    (d / "_stage.json").write_text("{}")  # no _SUCCESS: a foreign or half-copied directory
    assert checkpoints.stage_meta(str(tmp_path), "ingest", DATE) is None


def test_file_uris_are_local(tmp_path):
    (tmp_path / "dt=2026-11-07").mkdir()
    assert checkpoints.input_exists(f"file://{tmp_path}", DATE)
    assert checkpoints.input_exists(f"file:{tmp_path}", DATE)
    assert not checkpoints.input_exists(str(tmp_path), "2026-11-08")
    assert not checkpoints.input_exists(f"file://{tmp_path}", "2026-11-08")
    # a file: URI is read and written at its local path, not sent to WebHDFS
    storage.write_json(f"file://{tmp_path}/runs/m.json", {"commit_id": "c1"})
    assert json.loads((tmp_path / "runs" / "m.json").read_text()) == {"commit_id": "c1"}
    assert storage.read_json(f"file:{tmp_path}/runs/m.json") == {"commit_id": "c1"}
    assert storage.list_names(f"file://{tmp_path}") == ["dt=2026-11-07", "runs"]


def test_an_unreachable_namenode_is_one_line(monkeypatch):
    monkeypatch.setenv("IMGFEAT_WEBHDFS_URL", "http://127.0.0.1:9")
    with pytest.raises(storage.StorageError) as e:
        checkpoints.current("hdfs://127.0.0.1:8020/warehouse", "ingest", DATE)
    assert str(e.value) == ("NameNode of hdfs://127.0.0.1:8020/warehouse/ingest/dt=2026-11-07/_SUCCESS is "
                            "unreachable (WebHDFS http://127.0.0.1:9 refused the connection)")


def test_a_checkpoint_made_with_other_shaping_params_is_not_current(tmp_path):
    from argparse import Namespace

    from imgfeat import params

    commit(tmp_path, "ingest", "c-ingest", None)
    d = tmp_path / "detect" / f"dt={DATE}"
    d.mkdir(parents=True)
    (d / "_SUCCESS").write_text("")
    made = Namespace(engine="openvino", score_threshold=0.3, reuse=True, weights="2a8d8a89d695", code_bits=64)
    meta = {"commit_id": "c-detect", "upstream_commit": "c-ingest", "params": params.shaping("detect", made),
            "schema": schemas.digest("detect")}
    (d / "_stage.json").write_text(json.dumps({**meta, "reused": 0}))
    assert checkpoints.current(str(tmp_path), "detect", DATE, shaping=params.shaping("detect", made))[0]
    # code_bits and reuse shape detect only through its reused rows: it has none
    for name, value in (("code_bits", 128), ("reuse", False)):
        asked = params.shaping("detect", Namespace(**{**vars(made), name: value}))
        assert checkpoints.current(str(tmp_path), "detect", DATE, shaping=asked)[0]
    (d / "_stage.json").write_text(json.dumps({**meta, "reused": 3}))
    for name, value in (("score_threshold", 0.5), ("engine", "bigdl"), ("reuse", False), ("weights", "0123"),
                        ("code_bits", 128)):
        asked = params.shaping("detect", Namespace(**{**vars(made), name: value}))
        ok, why = checkpoints.current(str(tmp_path), "detect", DATE, shaping=asked)
        old = vars(made)[name]
        assert not ok and why == f"detect dt={DATE}: checkpoint was made with {name}={old}, this run asks {name}={value}"
    # a checkpoint of an older version, without recorded params, is recomputed
    assert checkpoints.current(str(tmp_path), "ingest", DATE, shaping={})[0]
    (d / "_stage.json").write_text(json.dumps({"commit_id": "c-detect", "upstream_commit": "c-ingest"}))
    assert not checkpoints.current(str(tmp_path), "detect", DATE, shaping=params.shaping("detect", made))[0]


def test_a_checkpoint_written_with_another_schema_is_made_again(tmp_path):
    commit(tmp_path, "ingest", "c-ingest", None)
    commit(tmp_path, "detect", "c-detect", "c-ingest")
    commit(tmp_path, "crop", "c-crop", "c-detect")
    assert checkpoints.current(str(tmp_path), "crop", DATE)[0]
    # a crop checkpoint of an earlier version: its rows have no `picture`, which embed describes
    d = tmp_path / "crop" / f"dt={DATE}" / "_stage.json"
    d.write_text(json.dumps({**json.loads(d.read_text()), "schema": "0123456789ab"}))
    assert checkpoints.current(str(tmp_path), "crop", DATE) == (
        False, f"crop dt={DATE}: checkpoint was written with another schema (by another version)")
    assert schemas.digest("crop") != schemas.digest("embed") and len(schemas.digest("crop")) == 12


def test_a_checkpoint_of_another_picture_descriptor_is_made_again(tmp_path, monkeypatch):
    """The picture's descriptor changed its values, not its column type: detect, crop and embed
    checkpoints made with the earlier one are not current; ingest's has no such column."""
    from imgfeat import descriptor

    for stage, upstream in (("ingest", None), ("detect", "c-ingest"), ("crop", "c-detect"), ("embed", "c-crop")):
        commit(tmp_path, stage, f"c-{stage}", upstream)
    made = {s: schemas.digest(s) for s in ("ingest", "detect", "crop", "embed")}
    monkeypatch.setattr(descriptor, "PICTURE_DESCRIPTOR", "another")
    assert {s: schemas.digest(s) == made[s] for s in made} == {"ingest": True, "detect": False, "crop": False, "embed": False}
    assert checkpoints.current(str(tmp_path), "ingest", DATE)[0]
    assert checkpoints.current(str(tmp_path), "detect", DATE) == (
        False, f"detect dt={DATE}: checkpoint was written with another schema (by another version)")


def test_changed_since_ingest_names_the_earlier_partitions_that_gained_files(tmp_path):
    inp, wh = tmp_path / "input", tmp_path / "warehouse"
    days = ["2026-11-04", "2026-11-05", "2026-11-06"]
    for d in days:
        (inp / f"dt={d}").mkdir(parents=True)
        (inp / f"dt={d}" / "a.jpg").write_bytes(b"123")
        ck = wh / "ingest" / f"dt={d}"
        ck.mkdir(parents=True)
        (ck / "_SUCCESS").write_text("")
        (ck / "_stage.json").write_text(json.dumps({"commit_id": d, "input_listing": checkpoints.input_listing(str(inp), d)}))
    (inp / "dt=2026-11-03").mkdir()  # never ingested: not a revisit
    (inp / "dt=2026-11-03" / "b.jpg").write_bytes(b"1")
    assert checkpoints.changed_since_ingest(str(inp), str(wh), DATE, 4) == []
    (inp / "dt=2026-11-05" / "late.jpg").write_bytes(b"12")
    (inp / "dt=2026-11-05" / "_SUCCESS").write_text("")  # markers are not input files
    (inp / "dt=2026-11-04" / "late.jpg").write_bytes(b"12")  # outside a 2-day lookback
    assert checkpoints.changed_since_ingest(str(inp), str(wh), DATE, 2) == [
        {"partition_date": "2026-11-05", "files_then": 1, "files_now": 2}]
    assert [c["partition_date"] for c in checkpoints.changed_since_ingest(str(inp), str(wh), DATE, 3)] == [
        "2026-11-04", "2026-11-05"]
    assert checkpoints.changed_since_ingest(str(inp), str(wh), DATE, 0) == []

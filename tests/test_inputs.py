"""The input listing: what is read and what is quarantined before a byte is read (no Spark)."""

import os

from devtools import badfiles
from imgfeat import checkpoints, inputs

DATE = "2026-11-07"


def test_names_links_and_special_files_are_decided_from_the_listing(tmp_path, photos):
    part = tmp_path / "in" / f"dt={DATE}"
    expected = badfiles.write_names_and_links(part, photos["coffee"], tmp_path / "outside")
    (part / ".hidden.jpg").write_bytes(b"x")  # hidden names are not input files
    (part / "_tmp").mkdir()
    (part / "_tmp" / "a.jpg").write_bytes(b"x")
    listed = {e.image_id: e for e in inputs.list_local(str(part))}
    assert set(listed) == set(expected)
    assert {k: (e.problem or "").split(":")[0] or None for k, e in listed.items()} == expected
    # exact relative paths, never URL-decoded; a non-UTF-8 name is escaped losslessly
    assert {"names/p#1.jpg", "names/photo%20one.jpg", "names/photo one.jpg", "names/tab\there.jpg",
            "names/new\nline.jpg", "names/12:30:00.jpg", "names/caf\\xe9-latin1.jpg"} <= set(listed)
    jpeg_size = (part / "names" / "cat.jpg").stat().st_size
    assert listed["links/inside.jpg"].size == jpeg_size and listed["links/broken.jpg"].size == 0
    assert listed["big/huge.jpg"].size == inputs.MAX_FILE_BYTES + 1
    # Airflow's digest of the partition is the same listing, and it survives all of the above
    assert checkpoints.input_listing(str(tmp_path / "in"), DATE) == inputs.digest(list(listed.values()))
    assert inputs.digest(list(listed.values())).startswith(f"{len(expected)}:")


def test_check_decides_by_extension_and_size():
    assert inputs.check("a/b.JPEG", 10) is None
    assert inputs.check("a/b.jpg", 0).startswith("empty_file")
    assert inputs.check("a/b.mov", 10).startswith("unsupported_extension")
    assert inputs.check("a/b.png", inputs.MAX_FILE_BYTES + 1).startswith("too_large")
    assert inputs.check("a/b.png", inputs.MAX_FILE_BYTES) is None


def test_a_missing_partition_lists_as_none(tmp_path):
    assert inputs.list_local(str(tmp_path / "nope")) is None
    assert checkpoints.input_listing(str(tmp_path), DATE) is None


def test_a_link_to_a_file_inside_the_partition_reads_its_target(tmp_path):
    part = tmp_path / "p"
    (part / "a").mkdir(parents=True)
    (part / "a" / "x.png").write_bytes(b"123")
    os.symlink(part / "a" / "x.png", part / "y.png")
    assert [(e.image_id, e.size, e.problem) for e in inputs.list_local(str(part))] == [
        ("a/x.png", 3, None), ("y.png", 3, None)]
    assert inputs.read_local(str(part / "y.png")) == b"123"


def test_a_directory_that_cannot_be_listed_is_one_quarantine_row(tmp_path, monkeypatch):
    # Root reads every directory, so the refusal is injected where os.walk lists one.
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.jpg").write_bytes(b"1")
    (tmp_path / "a" / "y.jpg").write_bytes(b"12")
    scandir = os.scandir

    def refuse(path):
        if os.fsdecode(path).endswith("/a/b"):
            raise PermissionError(13, "Permission denied", path)
        return scandir(path)
    monkeypatch.setattr(os, "scandir", refuse)
    assert [(e.image_id, e.size, e.problem) for e in inputs.list_local(str(tmp_path))] == [
        ("a/b", 0, "unreadable_directory: Permission denied"), ("a/y.jpg", 2, None)]

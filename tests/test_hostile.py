"""A hostile partition through one `airflow dags test` run: odd names, links, special and huge
files, broken pictures. The run succeeds and every file ends exactly once in features or
quarantine, under its exact relative path."""

import json

import pytest

from conftest import jpeg
from devtools import badfiles, fuzz
from devtools.local import airflow_env, dags_test, ensure_airflow_db
from imgfeat import checkpoints, decode

pytestmark = [pytest.mark.airflow, pytest.mark.slow]
DATE = "2026-11-09"
FUZZ_CASES = 40


def _table(path):
    import pyarrow.parquet as pq

    return pq.read_table(str(path)).to_pylist()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, photos, airflow_home, model_dir):
    root = tmp_path_factory.mktemp("hostile")
    part = root / "input" / f"dt={DATE}"
    expected = badfiles.write_names_and_links(part, photos["chelsea"], root / "outside")
    expected |= badfiles.write(part / "planted", photos["coffee"], prefix="planted/")
    (part / "astronaut.jpg").write_bytes(jpeg(photos["astronaut"]))
    expected["astronaut.jpg"] = None
    # seeded mutations of real photos in every format: published exactly when decode accepts them
    (part / "fuzz").mkdir()
    fuzzed = {}
    for case, name, _, data in fuzz.cases(seed=12, n=FUZZ_CASES):
        image_id = f"fuzz/{case.split(':')[1]}-{name}"
        (part / image_id).write_bytes(data)
        outcome = fuzz.check(data, max_pixels=decode.MAX_PIXELS)
        assert not outcome.startswith("FAIL"), (image_id, outcome)
        fuzzed[image_id] = None if outcome == "ok" else outcome
    warehouse = root / "warehouse"
    conf = {"partition_date": DATE, "input_root": str(root / "input"), "warehouse_root": str(warehouse)}
    env = airflow_env(airflow_home)
    ensure_airflow_db(env)
    log = airflow_home / "hostile.log"
    rc = dags_test("image_features", DATE, conf, env, log_file=log)
    return {"rc": rc, "log": log.read_text(), "expected": expected | fuzzed, "fuzzed": fuzzed,
            "warehouse": warehouse, "conf": conf}


def test_the_run_succeeds(hostile):
    assert hostile["rc"] == 0, hostile["log"][-3000:]


def test_every_file_ends_exactly_once_under_its_exact_path(hostile):
    wh = hostile["warehouse"]
    features = _table(wh / "features" / f"dt={DATE}")
    quarantine = _table(wh / "quarantine" / f"dt={DATE}")
    ids = [r["image_id"] for r in features] + [r["image_id"] for r in quarantine]
    assert sorted(ids) == sorted(hostile["expected"])
    assert {r["image_id"]: r["reason"].split(":")[0] for r in quarantine} == {
        k: v for k, v in hostile["expected"].items() if v is not None}
    labels = {r["image_id"]: r["label"] for r in features}
    # the same cat under every odd name, the link inside the partition included
    for name in ("names/p#1.jpg", "names/photo%20one.jpg", "names/tab\there.jpg", "names/new\nline.jpg",
                 "names/12:30:00.jpg", "names/café-日本.jpg", "names/[x]{a,b}*.jpg", "links/inside.jpg"):
        assert labels[name] == "cat", name
    assert labels["astronaut.jpg"] == "person"
    # the mutated files: some of each kind, so the assertions above covered both outcomes
    outcomes = list(hostile["fuzzed"].values())
    assert outcomes.count(None) >= 5 and len(outcomes) - outcomes.count(None) >= 5


def test_the_manifest_counts_every_file_and_airflow_sees_the_same_listing(hostile):
    wh = hostile["warehouse"]
    m = json.loads((wh / "runs" / f"dt={DATE}" / "manifest.json").read_text())
    n_bad = sum(v is not None for v in hostile["expected"].values())
    assert (m["images_in"], m["quarantined"]) == (len(hostile["expected"]), n_bad)
    ingest = json.loads((wh / "ingest" / f"dt={DATE}" / "_stage.json").read_text())
    assert ingest["input_listing"] == checkpoints.input_listing(hostile["conf"]["input_root"], DATE)

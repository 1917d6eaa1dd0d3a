"""End to end through Airflow: the similarity index and near-duplicates of a published partition,
the `similar` command, and BigDL's distributed training of the DeepBit layer that the next run uses."""

import json
import re
import shutil
from collections import Counter

import numpy as np
import pytest

from conftest import E2E_DATE, hamming, jpeg
from devtools import badfiles
from devtools.local import dags_test
from imgfeat import descriptor, search
from imgfeat.layout import STAGES
from imgfeat.spark.index import default_radius

pytestmark = [pytest.mark.airflow, pytest.mark.slow]
DATE = E2E_DATE


def _table(path):
    import pyarrow.parquet as pq

    return pq.read_table(str(path)).to_pylist()


def _copy(local_run, tmp_path_factory, name):
    assert local_run["rc"] == 0
    warehouse = tmp_path_factory.mktemp(name) / "warehouse"
    shutil.copytree(local_run["warehouse"], warehouse)
    return warehouse


@pytest.fixture(scope="module")
def indexed(local_run, tmp_path_factory):
    """The partition as `make run` left it: feature_index ran after the DAG (as a manual run naming
    the partition), one spark-submit of spark_apps/index.py. A copy of its warehouse."""
    warehouse = _copy(local_run, tmp_path_factory, "indexed")
    log = local_run["index_log"].read_text()
    assert f"spark_apps/index.py --warehouse-root {local_run['warehouse']} --partition-date {DATE}" in log
    return {**local_run, "warehouse": warehouse, "features": _table(warehouse / "features" / f"dt={DATE}")}


def test_the_index_holds_every_published_code(indexed):
    meta = json.loads((indexed["warehouse"] / "duplicates" / f"dt={DATE}" / "_stage.json").read_text())
    index = search.load_index(str(indexed["warehouse"]), code=meta["code"])
    codes = {r["image_id"]: r["code"] for r in indexed["features"]}
    assert meta["code"] == descriptor.code_name(64) and index.bits == 64  # no layer trained: the projection
    [shard] = index.shards  # the partition's shard, in image_id order
    assert shard.date == DATE and [index.key(shard, i) for i in range(len(shard))] == [f"dt={DATE}/{i}" for i in sorted(codes)]
    assert [bytes(c) for c in shard.codes] == [codes[i] for i in sorted(codes)]
    shard_meta = json.loads((indexed["warehouse"] / "index" / meta["code"] / "shards" / f"dt={DATE}" / "_stage.json").read_text())
    # the features it was written from: those `make run` published (later tests re-publish the same rows)
    assert (shard_meta["rows"], shard_meta["features_commit"]) == (len(codes), indexed["features_commit"])


def test_duplicates_give_each_image_its_group_and_nearest_match(indexed):
    from test_duplicates import _oracle

    rows = indexed["features"]
    # the whole pictures' codes (no layer trained: the projection), at its radius
    radius = default_radius(descriptor.code_name(64), 64, "picture")
    got = sorted(_table(indexed["warehouse"] / "duplicates" / f"dt={DATE}"), key=lambda r: r["image_id"])
    assert got == _oracle({DATE: [(r["image_id"], r["picture_code"]) for r in rows]}, DATE, radius)
    # the sample's copy of the coffee photo is a near-duplicate of it, in one group named by the first
    groups = {r["image_id"]: r["group_id"] for r in got}
    assert groups["sample/photos/img_0000.jpg"] == groups["shop/coffee.jpg"] == min(
        f"dt={DATE}/{i}" for i, g in groups.items() if g == groups["shop/coffee.jpg"])
    assert "shop/chelsea.jpg" not in groups
    meta = json.loads((indexed["warehouse"] / "duplicates" / f"dt={DATE}" / "_stage.json").read_text())
    assert (meta["rows"], meta["groups"], meta["radius"]) == (len(got), len(set(groups.values())), radius)
    assert (meta["described"], meta["code"]) == ("picture", descriptor.code_name(64))
    # the index job wrote the run report again, with the groups: a row each, every picture drawn
    # (the page as make run left it: the copy's may be a later re-publish's)
    html = indexed["report"]
    sizes = Counter(groups.values())
    assert html.count('class="group"') == min(len(sizes), 12) and f"within Hamming distance {radius}" in html
    assert html.count('class="dupthumb"') == sum(min(n, 6) for _, n in sizes.most_common(12))
    coffee = next(r for r in got if r["image_id"] == "sample/photos/img_0000.jpg")
    assert re.search(r'<code>sample/photos/img_0000\.jpg</code> · hamming <span class="hamming">'
                     rf'{coffee["hamming"]}</span> to <code>dt={DATE}/{re.escape(coffee["match_image_id"])}</code>', html)


def _similar(indexed, *args):
    """`python -m imgfeat.cli similar ...`, in this process (the command is its `main`)."""
    import contextlib
    import io
    from types import SimpleNamespace

    from imgfeat import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["similar", "--warehouse", str(indexed["warehouse"]), *args])
    return SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


def test_similar_by_image_id_ranks_by_hamming_distance(indexed):
    out = _similar(indexed, "--image-id", "shop/coffee.jpg", "-k", "5", "--json")
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)["hits"]
    codes = {r["image_id"]: r["code"] for r in indexed["features"]}
    assert len(hits) == 5 and f"dt={DATE}/shop/coffee.jpg" not in [h["key"] for h in hits]
    assert [h["hamming"] for h in hits] == sorted(
        hamming(codes["shop/coffee.jpg"], c) for i, c in codes.items() if i != "shop/coffee.jpg")[:5]
    assert all(h["hamming"] == hamming(codes["shop/coffee.jpg"], codes[h["key"].split("/", 1)[1]]) for h in hits)


def test_similar_by_picture_file_finds_the_published_original(indexed, photos, tmp_path):
    query = tmp_path / "coffee-copy.jpg"
    query.write_bytes(jpeg(photos["coffee"], quality=70))  # a re-compressed copy
    out = _similar(indexed, "--image", str(query), "-k", "3", "--rerank", "--json")
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)["hits"]
    # the partition's copies of the coffee photo: the original, the sample's and the planted valid files
    coffee = {"shop/coffee.jpg", "sample/photos/img_0000.jpg"} | {
        f"planted/{name}" for name, reason in badfiles.EXPECTED.items() if reason is None}
    assert {h["key"].split("/", 1)[1] for h in hits} <= coffee
    assert f"dt={DATE}/shop/coffee.jpg" in [h["key"] for h in hits] and hits[0]["label"] == "cup"
    assert hits[0]["cosine"] > 0.95 and [h["cosine"] for h in hits] == sorted((h["cosine"] for h in hits), reverse=True)


@pytest.mark.parametrize("args,message", [
    (["--image", "/nonexistent/query.jpg"], "error: --image: cannot read /nonexistent/query.jpg: No such file or directory"),
    (["--image", "TEXT"], "error: cannot use query.jpg as a query: undecodable"),
    (["--image-id", "shop/unknown.jpg"], "error: image_id 'shop/unknown.jpg' is not in the index of simhash64c-s20160626"),
    (["--image-id", "shop/coffee.jpg", "--code-bits", "32"], "error: no index of 32-bit codes under"),
    (["--image-id", "shop/coffee.jpg", "--code-bits", "12"], "error: --code-bits: expected a multiple of 8"),
])
def test_similar_refuses_bad_queries_with_a_clear_error(indexed, tmp_path, args, message):
    if "TEXT" in args:
        (tmp_path / "query.jpg").write_text("not a picture")
        args = ["--image", str(tmp_path / "query.jpg")]
    out = _similar(indexed, *args)
    assert out.returncode == 2 and out.stderr.strip().startswith(message), out.stderr


def test_train_descriptor_learns_a_layer_with_bigdl_that_the_next_run_uses(local_run, tmp_path_factory, spark, photos):
    warehouse = _copy(local_run, tmp_path_factory, "trained")
    log = warehouse.parent / "train.log"
    rc = dags_test("train_descriptor", DATE, {"warehouse_root": str(warehouse), "code_bits": 8, "rounds": 2, "epochs": 2},
                   local_run["env"], log_file=log)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "spark_apps/train_descriptor.py" in text and "-Dbigdl.engineType=mklblas" in text
    assert "DistriOptimizer" in text  # BigDL's distributed optimizer did the training
    version = json.loads((warehouse / "descriptors" / "deepbit8" / "current.json").read_text())["version"]
    model = json.loads((warehouse / "descriptors" / "deepbit8" / f"{version}.json").read_text())
    rows = _table(warehouse / "features" / f"dt={DATE}")
    published = {r["sha256"] for r in rows}
    assert model["bits"] == 8 and model["crops"] == len(published)
    assert model["trained_on"] == [f"{warehouse}/features/dt={DATE}"]
    # and a layer of the whole pictures, from the same sample, beside it
    picture_version = json.loads((warehouse / "descriptors" / "picture-deepbit8" / "current.json").read_text())["version"]
    picture = json.loads((warehouse / "descriptors" / "picture-deepbit8" / f"{picture_version}.json").read_text())
    assert picture_version.startswith("picture-deepbit8-") and picture["version"] == picture_version
    assert (picture["described"], model["described"], picture["crops"], picture["bits"]) == (
        "picture", "object", len(published), 8)
    assert len(picture["objective_by_round"]) == 2

    # The optimizer learned: each round lowered its objective (the mean squared error between its
    # binary targets and the layer's outputs, over every crop and view)...
    rounds = model["objective_by_round"]
    assert len(rounds) == 2 and all(after < before for before, after in rounds), rounds
    assert rounds[-1][1] < rounds[0][0], rounds
    # ...and moved the layer off its start. The start's columns span 8 whitened principal axes of
    # the sample's views, so the share of the layer outside that span measures how far it moved.
    # The sample is the published crops (one per sha256), cut from the ingested bytes as the app
    # cuts them; their views are described here as its workers describe them.
    import base64

    from imgfeat import deepbit, paths
    from imgfeat.engines import get_engine
    from imgfeat.stages import crop

    w = np.frombuffer(base64.b64decode(model["weights"]), "<f4").reshape(model["dim"], 8).astype(np.float64)
    c = np.frombuffer(base64.b64decode(model["bias"]), "<f4").astype(np.float64)
    content = {r["image_id"]: r["content"] for r in _table(warehouse / "ingest" / f"dt={DATE}") if r["content"]}
    crops = {r["sha256"]: crop.cut(content[r["image_id"]], (r["x1"], r["y1"], r["x2"], r["y2"])) for r in rows}
    views = deepbit.view_descriptors(list(crops.values()), get_engine("openvino", str(paths.model_dir())))
    x0 = views[0].astype(np.float64)
    np.testing.assert_allclose(x0, [{r["sha256"]: r["embedding"] for r in rows}[k] for k in crops], atol=1e-5)
    axes = np.linalg.svd(deepbit.whitened_init(views, 8)[0].astype(np.float64), full_matrices=False)[0]

    def off_start(weights):
        return np.linalg.norm(weights - axes @ (axes.T @ weights)) / np.linalg.norm(weights)

    assert off_start(deepbit.whitened_init(views, 8)[0]) < 1e-3  # the measure puts the start at 0
    assert off_start(w) > 0.05, off_start(w)
    # The recorded report is the saved layer's, on that sample.
    y = 1 / (1 + np.exp(-(x0 @ w + c)))
    assert abs(np.mean((y - (y > 0.5)) ** 2) - model["quantization_loss"]) < 1e-3

    # The next run asks 8 bits: the current layer is its code, so embed onward are recomputed.
    conf = {**local_run["conf"], "warehouse_root": str(warehouse), "code_bits": 8}
    log = warehouse.parent / "run.log"
    assert dags_test("image_features", DATE, conf, local_run["env"], log_file=log) == 0, log.read_text()[-3000:]
    assert {s for s in STAGES if f"spark_apps/{s}.py --partition-date {DATE}" in log.read_text()} == {"embed", "publish"}
    before = {r["image_id"]: r for r in _table(local_run["warehouse"] / "features" / f"dt={DATE}")}
    after = _table(warehouse / "features" / f"dt={DATE}")
    assert {r["image_id"] for r in after} == set(before)
    pw = np.frombuffer(base64.b64decode(picture["weights"]), "<f4").reshape(picture["dim"], 8).astype(np.float64)
    pc = np.frombuffer(base64.b64decode(picture["bias"]), "<f4").astype(np.float64)
    for r in after:
        assert r["model"].endswith(f";picture_code={picture_version};code={version}") and r["code_bits"] == 8
        # the saved layers' bits, computed here: bit k (MSB first) is on when w_k . x + c_k > 0
        # (in float64; an output within 1e-4 of 0 may round either way in the product's float32)
        for code, x, (lw, lc) in ((r["code"], r["embedding"], (w, c)), (r["picture_code"], r["picture_embedding"], (pw, pc))):
            z = np.asarray(x) @ lw + lc
            assert len(code) == 1, code
            assert all((code[0] >> (7 - k) & 1) == (z[k] > 0) for k in range(8) if abs(z[k]) > 1e-4), (code, z)
        assert r["label"] == before[r["image_id"]]["label"]

    # The index of the learned codes keeps each crop's vector from the layer (index.refresh, the
    # index app's work), and `similar` re-ranks the nearest codes by them: a re-compressed copy of
    # the coffee photo finds the published copies of the coffee photo first.
    from imgfeat.layout import Warehouse
    from imgfeat.spark.index import refresh

    refresh(spark, Warehouse(str(warehouse)), DATE)
    shard = warehouse / "index" / version / "shards" / f"dt={DATE}"
    assert json.loads((shard / "_stage.json").read_text())["vectors"] is True
    vectors = {r["image_id"]: np.frombuffer(r["vector"], "<f2") for r in _table(shard)}
    for r in after:
        z = np.asarray(r["embedding"]) @ w + c
        np.testing.assert_allclose(vectors[r["image_id"]], z / np.linalg.norm(z), atol=2e-3)
    query = warehouse.parent / "coffee-copy.jpg"
    query.write_bytes(jpeg(photos["coffee"], quality=70))
    out = _similar({"warehouse": warehouse}, "--image", str(query), "-k", "2", "--json")
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)["hits"]
    coffee = {"shop/coffee.jpg", "sample/photos/img_0000.jpg"} | {
        f"planted/{name}" for name, reason in badfiles.EXPECTED.items() if reason is None}
    assert [h["reranked_by"] for h in hits] == ["vectors", "vectors"] and hits[0]["cosine"] > 0.95
    assert {h["key"].split("/", 1)[1] for h in hits} <= coffee

"""Near-duplicates as Spark joins (`imgfeat.spark.duplicates`): exactly what brute force gives."""

import numpy as np
import pytest

from conftest import hamming
from test_codes import ROWS

pytestmark = pytest.mark.spark


def _history(spark, rows: dict, upto: str):
    return spark.createDataFrame([(date, r[0], bytearray(r[1])) for date, rs in rows.items() if date <= upto
                                  for r in rs], "dt string, image_id string, code binary")


def _run(spark, rows, date, bits, radius, method=None):
    from imgfeat.spark.duplicates import near_duplicates

    got = near_duplicates(_history(spark, rows, date), date, bits, radius, method=method).collect()
    return sorted((r.asDict() for r in got), key=lambda r: r["image_id"])


def test_each_image_gets_its_group_and_nearest_match_in_this_or_an_earlier_partition(spark):
    assert _run(spark, ROWS, "2026-11-02", 16, 1) == [
        {"image_id": "b.jpg", "group_id": "dt=2026-11-01/a.jpg", "match_partition": "2026-11-01",
         "match_image_id": "a.jpg", "hamming": 1},
        {"image_id": "c.jpg", "group_id": "dt=2026-11-02/c.jpg", "match_partition": "2026-11-02",
         "match_image_id": "d.jpg", "hamming": 1},
        {"image_id": "d.jpg", "group_id": "dt=2026-11-02/c.jpg", "match_partition": "2026-11-02",
         "match_image_id": "c.jpg", "hamming": 1},
    ]  # dt=2026-11-03/a.jpg is within 1 of b.jpg but later: it is 11-03's duplicate, not 11-02's
    assert _run(spark, ROWS, "2026-11-02", 16, 0) == []
    assert [r["image_id"] for r in _run(spark, ROWS, "2026-11-03", 16, 2)] == ["a.jpg"]


def _oracle(rows: dict, date: str, radius: int) -> list[dict]:
    """Brute force: every pair (image of `date`, other image up to `date`) within the radius; groups
    are the connected components of those pairs, named by their least key."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    keys = sorted((f"dt={d}/{r[0]}", r[1]) for d, rs in rows.items() if d <= date for r in rs)
    pairs = [(i, j, hamming(a, b)) for i, (ka, a) in enumerate(keys) if ka.startswith(f"dt={date}/")
             for j, (kb, b) in enumerate(keys) if j != i and hamming(a, b) <= radius]
    if not pairs:
        return []
    n = len(keys)
    _, comp = connected_components(coo_matrix((np.ones(len(pairs)), ([p[0] for p in pairs], [p[1] for p in pairs])),
                                              shape=(n, n)), directed=False)
    members = {p for pair in pairs for p in pair[:2]}
    name = {}
    for i in sorted(members):
        name.setdefault(comp[i], keys[i][0])
    best = {}
    for i, j, d in pairs:
        best[i] = min(best.get(i, (d, keys[j][0])), (d, keys[j][0]))
    return sorted(({"image_id": keys[i][0][len(f"dt={date}/"):], "group_id": name[comp[i]],
                    "match_partition": m[3:13], "match_image_id": m[14:], "hamming": d}
                   for i, (d, m) in best.items()), key=lambda r: r["image_id"])


@pytest.mark.parametrize("method", ["mih", "scan"])
def test_both_methods_find_exactly_the_brute_force_duplicates(spark, method, monkeypatch):
    """Three partitions of random 32-bit codes with planted near-copies, exact copies and chains."""
    from imgfeat.spark import duplicates

    monkeypatch.setattr(duplicates, "ROWS_PER_BATCH", 50)  # the probing codes go in many small batches
    rng = np.random.RandomState(11)
    base = rng.randint(0, 256, (120, 4), dtype=np.uint8)
    rows = {}
    for day in range(3):
        date = f"2026-11-0{day + 1}"
        picks = rng.choice(len(base), 90, replace=True)  # repeats: exact copies within and across days
        noise = (rng.rand(90, 32) < rng.choice([0, 0.03, 0.08], 90)[:, None]).reshape(90, 4, 8)
        codes = base[picks] ^ (noise @ (1 << np.arange(7, -1, -1))).astype(np.uint8)
        rows[date] = [(f"p{day}/{i:03d}.jpg", bytes(c)) for i, c in enumerate(codes)]
    for radius in (0, 2, 4):
        expected = _oracle(rows, "2026-11-03", radius)
        assert len(expected) > 20
        assert _run(spark, rows, "2026-11-03", 32, radius, method) == expected, radius


def test_chance_pairs_grow_with_the_store_at_a_fixed_radius():
    from imgfeat.spark.index import chance_pairs

    # 64 bits within 11: 5.03e-8 a pair; a partition of 100,000 against 1M and 10M indexed codes
    # (the scale bench at r = 11 found 6,738 and 40,319 pictures with a match, 2,000 of them planted)
    assert round(chance_pairs(64, 11, 100_000, 1_000_000)) == 5_029
    assert round(chance_pairs(64, 11, 100_000, 10_000_000)) == 50_293
    assert chance_pairs(64, 5, 100_000, 10_000_000) == pytest.approx(0.450, abs=1e-3)
    assert chance_pairs(128, 27, 100_000, 10_000_000) == pytest.approx(14.93, rel=1e-3)
    assert chance_pairs(16, 16, 3, 4) == 12  # every pair is within the full length


def test_the_index_job_warns_when_the_radius_matches_many_pictures_by_chance():
    from imgfeat.spark.index import chance_warning

    meta = {"radius": 11, "own_images": 100_000, "indexed_images": 10_000_000, "chance_pairs_if_random": 50292.899}
    assert chance_warning(meta) == (
        "at radius 11, even random codes would match 50,293 pairs of this partition's 100,000 pictures by chance "
        "against 10,000,000 indexed; set duplicate_radius lower or use longer codes (README: Duplicates)")
    assert chance_warning({**meta, "radius": 5, "chance_pairs_if_random": 0.45}) is None
    # verified by the pictures' vectors, pairs within the radius are candidates, not matches
    assert chance_warning({**meta, "similarity": 0.86}) is None
    assert chance_warning({**meta, "similarity": -1.0}) == chance_warning({**meta, "similarity": None}) is not None
    assert chance_warning({**meta, "own_images": 0, "chance_pairs_if_random": 0.0}) is None


def test_the_plan_probes_at_small_radii_and_scans_at_large_ones():
    from imgfeat.spark.duplicates import plan

    # 64-bit codes, a partition of 100,000 against a store of a million (the scale bench)
    assert plan(64, 5, 100_000, 1_000_000) == {"method": "mih", "m": 3, "s": 1, "rows": 100_000 * 3 * 22}
    assert plan(64, 5, 100_000, 10_000_000)["method"] == "mih"
    # r = 11 (learned 64-bit picture codes): 1,562 to 1,794 probes a substring; a scan compares
    # 10^11 pairs at a million rows
    assert plan(64, 11, 100_000, 1_000_000) == {"method": "scan", "pairs": 100_000 * 1_000_000}
    assert plan(64, 11, 100_000, 100_000_000)["method"] == "scan"
    assert plan(64, 8, 100_000, 10_000_000)["method"] == "scan"


@pytest.mark.parametrize("method", ["mih", "scan"])
def test_a_similarity_keeps_the_pairs_whose_vectors_agree(spark, method):
    """Four pictures within 2 bits of a.jpg; their vectors decide which are its duplicates."""
    from imgfeat import descriptor
    from imgfeat.spark.duplicates import near_duplicates

    unit = np.eye(4, dtype=np.float32)
    vec = descriptor.pack_vectors(np.stack([unit[0], unit[0] + 0.1 * unit[1], unit[1], 0.6 * unit[0] + 0.8 * unit[1]]))
    rows = [("2026-11-01", "a.jpg", b"\x00\x00", vec[0]),
            ("2026-11-02", "b.jpg", b"\x00\x01", vec[1]),  # cosine 0.995 with a.jpg
            ("2026-11-02", "c.jpg", b"\x00\x06", vec[2]),  # 0: a picture whose code happens to be near
            ("2026-11-02", "d.jpg", b"\x00\x18", vec[3]),  # 0.6
            ("2026-11-02", "e.jpg", b"\x00\x60", None)]  # no vector (a partition coded without one)
    history = spark.createDataFrame([(d, i, bytearray(c), bytearray(v) if v else None) for d, i, c, v in rows],
                                    "dt string, image_id string, code binary, vector binary")

    def matches(similarity):
        got = near_duplicates(history, "2026-11-02", 16, 2, method=method, similarity=similarity).collect()
        return sorted((r.image_id, r.match_image_id, r.hamming) for r in got)

    assert matches(None) == [("b.jpg", "a.jpg", 1), ("c.jpg", "a.jpg", 2), ("d.jpg", "a.jpg", 2), ("e.jpg", "a.jpg", 2)]
    assert matches(0.5) == [("b.jpg", "a.jpg", 1), ("d.jpg", "a.jpg", 2), ("e.jpg", "a.jpg", 2)]
    assert matches(0.9) == [("b.jpg", "a.jpg", 1), ("e.jpg", "a.jpg", 2)]


def _publish(spark, wh, date, rows, code_name, commit_id, picture_code=None):
    """A published features partition as publish leaves it (the columns the index reads); rows
    (image_id, code[, picture's code[, picture's embedding[, crop's embedding]]]); without
    `picture_code`, as published before pictures had one."""
    import json
    from pathlib import Path

    from imgfeat import schemas

    cols = schemas.columns(schemas.FEATURES)
    named = f";picture_code={picture_code}" if picture_code else ""
    data = [tuple({"image_id": r[0], "label": "cup", "code": bytearray(r[1]), "code_bits": len(r[1]) * 8,
                   "picture_code": bytearray(r[2]) if len(r) > 2 and r[2] is not None else None,
                   "picture_embedding": [float(x) for x in r[3]] if len(r) > 3 and r[3] is not None else None,
                   "embedding": [float(x) for x in r[4]] if len(r) > 4 else None,
                   "model": f"m;engine=openvino;min_score=0.3{named};code={code_name}"}.get(k) for k in cols)
            for r in rows]
    target = Path(wh.table("features", date))
    spark.createDataFrame(data, schemas.FEATURES).coalesce(1).write.mode("overwrite").parquet(str(target))
    (target / "_stage.json").write_text(json.dumps({"commit_id": commit_id}))


def test_refresh_adds_one_shard_per_partition_and_rewrites_it_only_when_republished(spark, tmp_path):
    import json

    from imgfeat import search
    from imgfeat.layout import Warehouse
    from imgfeat.spark.index import refresh

    wh = Warehouse(str(tmp_path))
    code = "simhash16c-test"
    _publish(spark, wh, "2026-11-01", [("a.jpg", ROWS["2026-11-01"][0][1])], code, "c1")
    _publish(spark, wh, "2026-11-02", [(r[0], r[1]) for r in ROWS["2026-11-02"]], code, "c2")
    first = refresh(spark, wh, "2026-11-01", radius=1)
    info = refresh(spark, wh, "2026-11-02", radius=1)
    assert (first["rows"], info["rows"], info["groups"], info["indexed_images"]) == (0, 3, 2, 4)
    assert (info["described"], info["code"]) == ("object", code)  # published before pictures had a code
    shard_meta = lambda d: json.loads((tmp_path / "index" / code / "shards" / f"dt={d}" / "_stage.json").read_text())  # noqa: E731
    before = shard_meta("2026-11-01")
    assert (before["rows"], before["features_commit"]) == (1, "c1")
    # a refresh with nothing re-published keeps the shard; a re-publish replaces it
    refresh(spark, wh, "2026-11-01", radius=1)
    assert shard_meta("2026-11-01") == before
    _publish(spark, wh, "2026-11-01", [("a.jpg", ROWS["2026-11-01"][0][1]), ("z.jpg", b"\xff\xff")], code, "c3")
    refresh(spark, wh, "2026-11-01", radius=1)
    assert (shard_meta("2026-11-01")["rows"], shard_meta("2026-11-01")["features_commit"]) == (2, "c3")
    assert [(s.date, len(s)) for s in search.load_index(str(tmp_path)).shards] == [("2026-11-01", 2), ("2026-11-02", 3)]
    # re-published with another code: the partition's shard moves to that code's index
    _publish(spark, wh, "2026-11-02", [(r[0], r[1] + b"\x00") for r in ROWS["2026-11-02"]], "simhash24c-test", "c4")
    refresh(spark, wh, "2026-11-02", radius=1)
    assert not (tmp_path / "index" / code / "shards" / "dt=2026-11-02").exists()
    assert [s.date for s in search.load_index(str(tmp_path), code="simhash24c-test").shards] == ["2026-11-02"]


def test_duplicates_compare_the_pictures_codes_of_partitions_coded_alike(spark, tmp_path):
    import json

    from imgfeat.layout import Warehouse
    from imgfeat.spark.index import refresh

    wh = Warehouse(str(tmp_path))
    code = "simhash16c-test"
    far = [b"\x00\x00", b"\xff\xff", b"\x0f\x0f", b"\xf0\xf0"]  # the crops' codes: 8 bits or more apart
    # 11-01 and 11-02 code their pictures alike; 10-31 with another picture code
    _publish(spark, wh, "2026-10-31", [("x.jpg", far[3], b"\xab\xcd")], code, "c0", picture_code="simhash16c-old")
    _publish(spark, wh, "2026-11-01", [("a.jpg", far[0], b"\xab\xcd")], code, "c1", picture_code="simhash16c-p")
    _publish(spark, wh, "2026-11-02", [("b.jpg", far[1], b"\xab\xcc"), ("c.jpg", far[2], b"\x54\x32")],
             code, "c2", picture_code="simhash16c-p")
    for d in ("2026-10-31", "2026-11-01"):
        refresh(spark, wh, d, radius=1)
    info = refresh(spark, wh, "2026-11-02", radius=1)
    # b.jpg's picture is 1 bit from a.jpg's (their crops 16 apart); x.jpg's picture, the same bits
    # under another code, is not compared
    assert _table(tmp_path / "duplicates" / "dt=2026-11-02") == [
        {"image_id": "b.jpg", "group_id": "dt=2026-11-01/a.jpg", "match_partition": "2026-11-01",
         "match_image_id": "a.jpg", "hamming": 1}]
    assert (info["described"], info["code"], info["radius"], info["indexed_images"], info["method"]) == (
        "picture", "simhash16c-p", 1, 3, "scan")
    # 2 pictures against 3 indexed, 16-bit codes within 1 bit: 17 / 65,536 a pair
    assert (info["own_images"], info["chance_pairs_if_random"]) == (2, round(6 * 17 / 65536, 3))
    shard = json.loads((tmp_path / "index" / code / "shards" / "dt=2026-11-02" / "_stage.json").read_text())
    assert (shard["code"], shard["picture_code"]) == (code, "simhash16c-p")
    meta = json.loads((tmp_path / "duplicates" / "dt=2026-11-02" / "_stage.json").read_text())
    assert (meta["described"], meta["code"]) == ("picture", "simhash16c-p")


def _table(path):
    import pyarrow.parquet as pq

    return sorted(pq.read_table(str(path)).to_pylist(), key=lambda r: r["image_id"])


def _identity_layer(root, layer: str, dim: int):
    """A learned 16-bit layer `layer` (picture-deepbit16-.. or deepbit16-..) under `root`'s descriptors
    whose vector of a descriptor is its first 16 dimensions, normalised; returns a function that
    makes a `dim`-float descriptor of its first values."""
    from imgfeat import descriptor

    weights = np.zeros((dim, 16), np.float32)
    weights[:16] = np.eye(16)
    path = root / "descriptors" / layer.rsplit("-", 2)[0] / f"{layer}.json"
    path.parent.mkdir(parents=True)
    path.write_text(descriptor.model_json(layer, weights, np.zeros(16, np.float32)))
    return lambda *xs: np.pad(np.array(xs, np.float32), (0, dim - len(xs)))


def test_learned_picture_codes_are_verified_by_their_vectors(spark, tmp_path, monkeypatch):
    """The shard keeps each picture's vector from the layer that coded it; the duplicates job keeps
    a match within the radius only when the vectors agree (`index.DUPLICATE_SIMILARITY`)."""
    import json

    import pyarrow.parquet as pq

    from imgfeat import descriptor
    from imgfeat.layout import Warehouse
    from imgfeat.spark import index

    monkeypatch.setitem(index.DUPLICATE_SIMILARITY, 16, 0.9)
    wh = Warehouse(str(tmp_path))
    layer = "picture-deepbit16-20261203T000000-test"
    emb = _identity_layer(tmp_path, layer, descriptor.PICTURE_DIM)
    code = "simhash16c-test"
    _publish(spark, wh, "2026-11-01", [("a.jpg", b"\x00\x00", b"\x00\x00", emb(1, 0))], code, "c1", picture_code=layer)
    _publish(spark, wh, "2026-11-02", [("b.jpg", b"\xff\xff", b"\x00\x01", emb(1, 0.1)),  # cosine 0.995
                                       ("c.jpg", b"\x0f\x0f", b"\x00\x06", emb(0, 1))],  # cosine 0
             code, "c2", picture_code=layer)
    index.refresh(spark, wh, "2026-11-01", radius=2)
    info = index.refresh(spark, wh, "2026-11-02", radius=2)
    assert _table(tmp_path / "duplicates" / "dt=2026-11-02") == [
        {"image_id": "b.jpg", "group_id": "dt=2026-11-01/a.jpg", "match_partition": "2026-11-01",
         "match_image_id": "a.jpg", "hamming": 1}]  # c.jpg is 2 bits from a.jpg, but another picture
    assert (info["described"], info["similarity"], info["radius"]) == ("picture", 0.9, 2)
    shard = tmp_path / "index" / code / "shards" / "dt=2026-11-02"
    assert json.loads((shard / "_stage.json").read_text())["picture_vectors"] is True
    vectors = {r["image_id"]: np.frombuffer(r["picture_vector"], "<f2") for r in pq.read_table(str(shard)).to_pylist()}
    assert vectors["c.jpg"].tolist() == [0, 1] + [0] * 14
    assert np.allclose(vectors["b.jpg"][:2], [1 / np.sqrt(1.01), 0.1 / np.sqrt(1.01)], atol=1e-3)
    # no radius given: the vectors verify, so the candidates' wider radius (`VERIFIED_RADIUS`);
    # -1 keeps every pair within the radius, so the radius of the code alone
    monkeypatch.setitem(index.VERIFIED_RADIUS, 16, 4)
    info = index.refresh(spark, wh, "2026-11-02")
    assert (info["similarity"], info["radius"]) == (0.9, 4)
    assert [r["image_id"] for r in _table(tmp_path / "duplicates" / "dt=2026-11-02")] == ["b.jpg"]
    info = index.refresh(spark, wh, "2026-11-02", similarity=-1.0)
    assert (info["similarity"], info["radius"]) == (-1.0, index.default_radius(layer, 16, "picture")) == (-1.0, 3)
    assert [r["image_id"] for r in _table(tmp_path / "duplicates" / "dt=2026-11-02")] == ["b.jpg", "c.jpg"]


def test_the_shard_keeps_the_crops_vectors_from_the_layer_that_coded_them(spark, tmp_path):
    """What the search re-ranks by: each crop's vector (`Coder.vectors`, float16) beside its code;
    null for a row without an embedding, and no vectors for the projection's codes."""
    import json

    import pyarrow.parquet as pq

    from imgfeat import descriptor
    from imgfeat.layout import Warehouse
    from imgfeat.spark import index

    wh = Warehouse(str(tmp_path))
    layer = "deepbit16-20261204T000000-test"
    emb = _identity_layer(tmp_path, layer, descriptor.EMBEDDING_DIM)
    _publish(spark, wh, "2026-11-01", [("a.jpg", b"\x00\x01", None, None, emb(3, 4)),
                                       ("b.jpg", b"\x00\x02", None, None, emb(0, 0, 2))], layer, "c1")
    _publish(spark, wh, "2026-11-02", [("c.jpg", b"\x00\x01")], layer, "c2")  # no embedding
    index.refresh(spark, wh, "2026-11-01", radius=0)
    index.refresh(spark, wh, "2026-11-02", radius=0)
    shard = tmp_path / "index" / layer / "shards"
    meta = json.loads((shard / "dt=2026-11-01" / "_stage.json").read_text())
    assert (meta["vectors"], meta["picture_vectors"]) == (True, False)
    rows = {r["image_id"]: r for r in pq.read_table(str(shard / "dt=2026-11-01")).to_pylist()}
    assert np.frombuffer(rows["a.jpg"]["vector"], "<f2").tolist() == pytest.approx([0.6, 0.8] + [0] * 14, abs=1e-3)
    assert np.frombuffer(rows["b.jpg"]["vector"], "<f2").tolist() == [0, 0, 1] + [0] * 13
    assert rows["a.jpg"]["picture_vector"] is None and rows["a.jpg"]["code"] == b"\x00\x01"
    assert pq.read_table(str(shard / "dt=2026-11-02")).column("vector").to_pylist() == [None]


def test_the_default_radius_widens_only_where_vectors_verify_the_matches():
    from imgfeat.spark.index import default_radius

    assert default_radius("picture-deepbit64-x", 64, "picture") == 11  # the code alone: 0.1% on make eval
    assert default_radius("picture-deepbit64-x", 64, "picture", verified=True) == 14
    assert default_radius("picture-deepbit128-x", 128, "picture", verified=True) == 30
    # the projection and the crops' codes have no vectors
    assert default_radius("picture-simhash64c-x", 64, "picture", verified=True) == 4
    assert default_radius("deepbit64-x", 64, "object", verified=True) == 10

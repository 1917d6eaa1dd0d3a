"""Binary codes: the learned DeepBit layer's pieces, coders, the search index and duplicates."""

import json

import numpy as np
import pytest

from imgfeat import deepbit, descriptor, search
from imgfeat.layout import Warehouse


def _sample(n=200, dim=1280, seed=0):
    rng = np.random.RandomState(seed)
    return descriptor.l2_normalize(np.abs(rng.standard_normal((n, dim))) * rng.uniform(0.5, 2, dim))


def test_pca_init_gives_unit_variance_principal_outputs():
    x = _sample()
    w, c = deepbit.pca_init(x, 32)
    z = x @ w + c
    assert w.shape == (1280, 32) and c.shape == (32,)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=0), 1, rtol=1e-3)
    # the first output is the first principal component: no other direction has more variance
    assert np.var(x @ (w[:, 0] / np.linalg.norm(w[:, 0]))) >= np.var(x @ (w[:, 5] / np.linalg.norm(w[:, 5])))


def test_pca_init_needs_more_crops_than_bits():
    with pytest.raises(ValueError, match="need more than 64 distinct crops to learn 64 bits, got 64"):
        deepbit.pca_init(_sample(64), 64)


def test_targets_put_every_bit_on_for_half_the_sample():
    x = _sample(200)
    w, c = deepbit.pca_init(x, 64)
    b = deepbit.targets(x, w, c)
    assert set(np.unique(b)) == {0.0, 1.0}
    assert (b.sum(axis=0) == 100).all()


def test_report_measures_the_three_objectives():
    x = _sample(100)
    w, c = deepbit.pca_init(x, 16)
    rotated = np.stack([x, x, x])
    rep = deepbit.report(x, rotated, w, c, ["original", "a", "b"])
    assert rep["view_bit_flip_rate"] == 0.0 and rep["bit_flip_rate_by_view"] == {"a": 0.0, "b": 0.0}  # identical views flip nothing
    flipped = deepbit.report(x, np.stack([x, x, -x]), w, c, ["original", "a", "b"])
    assert flipped["bit_flip_rate_by_view"]["a"] == 0.0 and flipped["bit_flip_rate_by_view"]["b"] > 0.5
    assert 0 < rep["quantization_loss"] < 0.25
    assert rep["bit_balance_max_deviation"] <= 0.1


def test_objective_is_the_mean_squared_error_of_every_rotation_against_the_targets():
    b = np.array([[1.0], [0.0]])  # two crops, one bit
    flat = np.zeros((1, 2, 2))  # one angle, outputs sigmoid(c) = 0.75 for both crops
    assert deepbit.objective(flat, b, np.zeros((2, 1)), np.array([np.log(3)])) == pytest.approx(
        (0.25 ** 2 + 0.75 ** 2) / 2)
    # the crops' own descriptors hit their targets; their "rotations" (zero vectors) output 0.5
    rotated = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    w = np.array([[100.0], [-100.0]])
    assert deepbit.objective(rotated[:1], b, w, np.zeros(1)) == pytest.approx(0, abs=1e-12)
    assert deepbit.objective(rotated, b, w, np.zeros(1)) == pytest.approx((0 + 0 + 0.25 + 0.25) / 4)


def test_rmac_normalises_each_region_then_sums_them():
    from imgfeat import descriptor

    assert descriptor.rmac_regions() == [1, 4, 9]
    # dim 2: the global region is (0, 5), the 13 others (3, 4); levels packed channel-major
    levels = [np.array([[0.0], [5.0]])] + [np.tile([[3.0], [4.0]], (1, k)) for k in (4, 9)]
    packed = np.concatenate([lv.ravel() for lv in levels])[None]
    np.testing.assert_allclose(descriptor.rmac(packed, dim=2), [[13 * 0.6, 1 + 13 * 0.8]], rtol=1e-6)
    # a region's scale does not matter; an all-zero region adds nothing
    levels[1][:, 0] = (30.0, 40.0)
    levels[2][:, 0] = 0.0
    packed = np.concatenate([lv.ravel() for lv in levels])[None]
    np.testing.assert_allclose(descriptor.rmac(packed, dim=2), [[12 * 0.6, 1 + 12 * 0.8]], rtol=1e-6)
    with pytest.raises(ValueError, match="expected 28"):
        descriptor.rmac(np.zeros((1, 30)), dim=2)


def test_learned_coder_round_trips_through_its_model_file_and_uses_the_sign_of_the_layer():
    x = _sample(50)
    w, c = deepbit.pca_init(x, 32)
    version = deepbit.version(32, w, c)
    assert version.startswith("deepbit32-") and len(version.split("-")[-1]) == 8
    coder = descriptor.learned_coder(json.loads(descriptor.model_json(version, w, c, crops=50)))
    assert coder.name == version and coder.bits == 32 and coder.learned
    codes = coder.codes(x)
    assert codes.shape == (50, 4) and codes.dtype == np.uint8
    np.testing.assert_array_equal(np.unpackbits(codes, axis=1), (x @ w + c > 0).astype(np.uint8))


def test_load_coder_falls_back_to_the_projection_and_follows_current(tmp_path):
    wh = Warehouse(str(tmp_path))
    files = {}
    read = files.get
    proj = descriptor.load_coder(read, wh, 64)
    assert not proj.learned and proj.name == descriptor.code_name(64)
    np.testing.assert_array_equal(proj.codes(_sample(5)), descriptor.binary_codes(_sample(5), 64))
    x = _sample(100)
    w, c = deepbit.pca_init(x, 64)
    files[wh.descriptor_model(64, "deepbit64-v1")] = descriptor.model_json("deepbit64-v1", w, c)
    files[wh.current_descriptor(64)] = json.dumps({"version": "deepbit64-v1"})
    assert descriptor.load_coder(read, wh, 64).name == "deepbit64-v1"
    assert descriptor.load_coder(read, wh, 64, descriptor.code_name(64)).name == descriptor.code_name(64)
    assert not descriptor.load_coder(read, wh, 32).learned  # no layer for 32 bits
    with pytest.raises(FileNotFoundError, match="deepbit64-gone.json does not exist"):
        descriptor.load_coder(read, wh, 64, "deepbit64-gone")
    # the pictures' layer lives beside the crops', and is current on its own
    assert descriptor.load_coder(read, wh, 64, described="picture").name == descriptor.code_name(64)
    # a current pictures' layer learned on the crops' 1280-d descriptor (before the picture had its
    # own) is passed over for the projection; named, it is refused
    stale = deepbit.version(64, w, c, prefix="picture-")
    files[wh.descriptor_model(64, stale, "picture")] = descriptor.model_json(stale, w, c)
    files[wh.current_descriptor(64, "picture")] = json.dumps({"version": stale})
    assert descriptor.load_coder(read, wh, 64, described="picture").name == descriptor.code_name(64)
    with pytest.raises(ValueError, match="takes 1280-d descriptors, the picture descriptor has 960"):
        descriptor.load_coder(read, wh, 64, stale, described="picture")
    xp = _sample(100, descriptor.PICTURE_DIM)
    wp, cp = deepbit.pca_init(xp, 64)
    name = deepbit.version(64, wp, cp, prefix="picture-")
    assert name.startswith("picture-deepbit64-") and descriptor.code_bits_of(name) == 64
    files[wh.descriptor_model(64, name, "picture")] = descriptor.model_json(name, wp, cp)
    files[wh.current_descriptor(64, "picture")] = json.dumps({"version": name})
    assert wh.current_descriptor(64, "picture") == f"{tmp_path}/descriptors/picture-deepbit64/current.json"
    picture = descriptor.load_coder(read, wh, 64, described="picture")
    assert picture.name == name and descriptor.load_coder(read, wh, 64).name == "deepbit64-v1"
    np.testing.assert_array_equal(np.unpackbits(picture.codes(xp), axis=1), (xp @ wp + cp > 0).astype(np.uint8))


# --- index and duplicates ------------------------------------------------------------------------
def _code(bits_on, bits=16):
    b = np.zeros(bits, np.uint8)
    b[list(bits_on)] = 1
    return np.packbits(b).tobytes()


ROWS = {"2026-11-01": [("a.jpg", _code([]), "cup", 0)],
        "2026-11-02": [("b.jpg", _code([0]), "cup", 0), ("c.jpg", _code([0, 1, 2, 3, 4, 5]), None, 1),
                       ("d.jpg", _code([0, 1, 2, 3, 4, 5, 6]), "cat", 2)],
        "2026-11-03": [("a.jpg", _code([1]), "cup", 3)]}


def write_shards(root, code, rows, embeddings=None):
    """Committed shards (and, for re-ranking, features with embeddings) as spark/index.py leaves them:
    rows (image_id, code, label, embedding's row[, packed vector])."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pathlib import Path

    wh = Warehouse(str(root))
    for date, rs in rows.items():
        shard = Path(wh.index_shard(code, date))
        shard.mkdir(parents=True)
        # small row groups, as the Spark job writes them (SHARD_ROW_GROUP_BYTES): a hit reads one
        pq.write_table(search.shard_table([r[:3] + r[4:] for r in rs]), shard / "part-00000.parquet", row_group_size=64)
        (shard / "_SUCCESS").touch()
        if embeddings is not None:
            features = Path(wh.table("features", date))
            features.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"image_id": [r[0] for r in rs],
                                     "embedding": [embeddings[r[3]].tolist() for r in rs]}),
                           features / "part-00000.parquet")


@pytest.fixture
def index(tmp_path):
    write_shards(tmp_path, "deepbit16-test", ROWS, np.eye(4, dtype=np.float32))
    return search.load_index(str(tmp_path))


def test_search_returns_exact_hamming_neighbours_and_reranks_by_cosine(index):
    hits = index.search(np.frombuffer(_code([]), np.uint8), 3)
    assert [(h["key"], h["hamming"]) for h in hits] == [
        ("dt=2026-11-01/a.jpg", 0), ("dt=2026-11-02/b.jpg", 1), ("dt=2026-11-03/a.jpg", 1)]
    assert [h["label"] for h in hits] == ["cup", "cup", "cup"]
    reranked = index.search(np.frombuffer(_code([]), np.uint8), 2, embedding=np.eye(4)[2])
    assert reranked[0]["key"] == "dt=2026-11-02/d.jpg" and reranked[0]["cosine"] == 1.0
    # the query's own row left out: the next one takes its place
    assert [h["key"] for h in index.search(np.frombuffer(_code([]), np.uint8), 2, exclude="dt=2026-11-01/a.jpg")] == [
        "dt=2026-11-02/b.jpg", "dt=2026-11-03/a.jpg"]


def _vec(*xs):
    return np.array(xs, "<f2").tobytes()


VECTOR_ROWS = {"2026-11-01": [("a.jpg", _code([]), "cup", 0, _vec(1, 0))],
               "2026-11-02": [("b.jpg", _code([0]), "cup", 1, _vec(0, 1)), ("c.jpg", _code([0, 1]), "cat", 2, _vec(0.6, 0.8))]}


def test_search_reranks_the_nearest_codes_by_the_vectors_in_the_shards(tmp_path):
    write_shards(tmp_path, "deepbit16-test", VECTOR_ROWS, np.eye(4, dtype=np.float32))
    index = search.load_index(str(tmp_path))
    query = np.frombuffer(_code([]), np.uint8)
    assert [(h["key"], h["hamming"], "cosine" in h) for h in index.search(query, 3)] == [
        ("dt=2026-11-01/a.jpg", 0, False), ("dt=2026-11-02/b.jpg", 1, False), ("dt=2026-11-02/c.jpg", 2, False)]
    hits = index.search(query, 3, vector=np.array([0, 1], np.float32))
    assert [(h["key"], h["cosine"], h["reranked_by"]) for h in hits] == [
        ("dt=2026-11-02/b.jpg", 1.0, "vectors"), ("dt=2026-11-02/c.jpg", 0.7998, "vectors"), ("dt=2026-11-01/a.jpg", 0.0, "vectors")]
    # only the `candidates` nearest codes are re-ranked: c.jpg (cosine 0.8) is not among 2
    assert [h["key"] for h in index.search(query, 2, vector=np.array([0, 1], np.float32), candidates=2)] == [
        "dt=2026-11-02/b.jpg", "dt=2026-11-01/a.jpg"]
    # the vectors win over the float embeddings when every candidate has one
    hits = index.search(query, 2, vector=np.array([0, 1], np.float32), embedding=np.eye(4)[2])
    assert [(h["key"], h["reranked_by"]) for h in hits] == [("dt=2026-11-02/b.jpg", "vectors"), ("dt=2026-11-02/c.jpg", "vectors")]


def test_search_reranks_by_the_embeddings_only_when_a_candidate_has_no_vector(tmp_path):
    rows = {**VECTOR_ROWS, "2026-11-03": [("d.jpg", _code([2]), "cup", 3)]}  # a shard written before the vectors
    write_shards(tmp_path, "deepbit16-test", rows, np.eye(4, dtype=np.float32))
    index = search.load_index(str(tmp_path))
    query = np.frombuffer(_code([]), np.uint8)
    assert ["cosine" in h for h in index.search(query, 4, vector=np.array([0, 1], np.float32))] == [False] * 4
    read = []
    hits = index.search(query, 2, vector=np.array([0, 1], np.float32), embedding=lambda: read.append(1) or np.eye(4)[3])
    assert [(h["key"], h["cosine"], h["reranked_by"]) for h in hits] == [
        ("dt=2026-11-03/d.jpg", 1.0, "embeddings"), ("dt=2026-11-01/a.jpg", 0.0, "embeddings")] and read == [1]


def test_similar_by_image_id_reranks_by_its_own_vector_unless_told_not_to(tmp_path):
    write_shards(tmp_path, "deepbit16-test", VECTOR_ROWS, np.eye(4, dtype=np.float32))
    _, hits, asked = search.similar(str(tmp_path), 2, image_id="b.jpg")
    assert asked == "dt=2026-11-02/b.jpg"
    assert [(h["key"], h["cosine"]) for h in hits] == [("dt=2026-11-02/c.jpg", 0.7998), ("dt=2026-11-01/a.jpg", 0.0)]
    _, hits, _ = search.similar(str(tmp_path), 2, image_id="b.jpg", rerank=False)
    assert [(h["key"], h["hamming"], "cosine" in h) for h in hits] == [("dt=2026-11-01/a.jpg", 1, False),
                                                                      ("dt=2026-11-02/c.jpg", 1, False)]
    # an index without vectors: by the code alone, unless asked (then by the features' embeddings)
    write_shards(tmp_path / "old", "deepbit16-test", ROWS, np.eye(4, dtype=np.float32))
    _, hits, _ = search.similar(str(tmp_path / "old"), 2, image_id="c.jpg")
    assert ["cosine" in h for h in hits] == [False, False]
    _, hits, _ = search.similar(str(tmp_path / "old"), 1, image_id="c.jpg", rerank=True)
    assert [(h["cosine"], h["reranked_by"]) for h in hits] == [(0.0, "embeddings")]


def test_each_partition_is_a_shard_read_back_in_image_id_order(index):
    assert index.code == "deepbit16-test" and index.bits == 16 and len(index) == 5
    assert [(s.date, len(s)) for s in index.shards] == [("2026-11-01", 1), ("2026-11-02", 3), ("2026-11-03", 1)]
    shard = index.shards[1]
    assert [index.key(shard, i) for i in range(3)] == ["dt=2026-11-02/b.jpg", "dt=2026-11-02/c.jpg", "dt=2026-11-02/d.jpg"]
    assert [bytes(c) for c in shard.codes] == [r[1] for r in ROWS["2026-11-02"]]
    assert [index.label(shard, i) for i in range(3)] == ["cup", None, "cat"]


def test_sharded_search_equals_one_flat_index(tmp_path, monkeypatch):
    """Random 32-bit codes over 4 shards, many ties: every query's top k, by (distance, key), is
    what a brute-force scan of all rows gives, with the key columns of only 2 row groups in memory."""
    from conftest import hamming

    rng = np.random.RandomState(7)
    rows, flat = {}, []
    for day in range(1, 5):
        date = f"2026-11-0{day}"
        ids = [f"img{n:04d}.jpg" for n in rng.choice(5000, 300, replace=False)]
        codes = [bytes(c) for c in rng.randint(0, 256, (300, 4), dtype=np.uint8) & np.uint8(0x0F)]  # few bits: ties
        rows[date] = [(i, c, None) for i, c in zip(ids, codes)]
        flat += [(f"dt={date}/{i}", c) for i, c in zip(ids, codes)]
    write_shards(tmp_path, "simhash32c-test", rows)
    monkeypatch.setattr(search, "CACHED_GROUPS", 2)
    index = search.load_index(str(tmp_path))
    for q in rng.randint(0, 256, (20, 4), dtype=np.uint8) & np.uint8(0x0F):
        expected = sorted((hamming(bytes(q), c), k) for k, c in flat)[:25]
        assert [(h["hamming"], h["key"]) for h in index.search(q, 25)] == expected
        assert len(index._groups) <= 2
    assert all(len(s.row_groups()) == 5 for s in index.shards)  # 300 rows in groups of 64


@pytest.mark.parametrize("key,message", [
    ("nothing.jpg", "image_id 'nothing.jpg' is not in the index of deepbit16-test (5 images)"),
    ("a.jpg", "image_id 'a.jpg' is in 2 partitions: name one as dt=<date>/a.jpg"),
])
def test_unknown_or_ambiguous_image_ids_are_refused(index, key, message):
    with pytest.raises(search.SearchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        index.locate(key)
    shard, row = index.locate("c.jpg")
    assert (shard.date, row) == ("2026-11-02", 1) and index.key(*index.locate("dt=2026-11-03/a.jpg")) == "dt=2026-11-03/a.jpg"


def test_a_query_code_of_another_length_is_refused(index):
    with pytest.raises(search.SearchError, match="a 64-bit query code against the 16-bit index deepbit16-test"):
        index.search(np.zeros(8, np.uint8), 3)


def test_load_index_picks_the_learned_index_and_refuses_another_code_length(tmp_path):
    for code in ("simhash16c-s20160626", "deepbit16-20261101T000000-aaaaaaaa", "deepbit16-20261120T000000-bbbbbbbb"):
        write_shards(tmp_path, code, {"2026-11-01": [("a.jpg", _code([1]), "cup", 0)]})
    # a shard without _SUCCESS (a write in progress) is not part of the index
    (tmp_path / "index" / "deepbit16-20261130T000000-cccccccc" / "shards" / "dt=2026-11-01").mkdir(parents=True)
    assert search.load_index(str(tmp_path)).code == "deepbit16-20261120T000000-bbbbbbbb"
    assert search.load_index(str(tmp_path), code="simhash16c-s20160626").code == "simhash16c-s20160626"
    with pytest.raises(search.SearchError, match="no index of 64-bit codes under .*; it has deepbit16-"):
        search.load_index(str(tmp_path), bits=64)
    with pytest.raises(search.SearchError, match="no similarity index under"):
        search.load_index(str(tmp_path / "empty"))


def test_mih_candidates_contain_every_pair_within_the_radius():
    """Pigeonhole: two codes within r meet on some substring position where one's value is among
    the other's probes (its values' neighbours within r // m), for every m."""
    from imgfeat import mih

    rng = np.random.RandomState(3)
    codes = rng.randint(0, 256, (400, 8), dtype=np.uint8)
    codes[200:] = codes[:200] ^ (rng.rand(200, 64) < 0.06).reshape(200, 8, 8).dot(1 << np.arange(7, -1, -1)).astype(np.uint8)
    bits = mih.unpack(codes)
    dist = (bits[:, None, :] != bits[None, :, :]).sum(axis=2)
    for radius in (0, 3, 5):
        within = {(i, j) for i, j in zip(*np.nonzero(dist <= radius)) if i != j}
        for m in sorted({2, 4, max(2, radius + 1), mih.plan(64, radius, len(codes))[0]}):  # 64 bits: m >= 2
            s = radius // m
            exact = mih.substrings(bits, m)
            found = set()
            for j, probes in mih.probes(bits, m, s):
                bucket = {}
                for k, v in enumerate(exact[:, j].tolist()):
                    bucket.setdefault(v, []).append(k)
                found |= {(i, k) for i, row in enumerate(probes.tolist()) for v in row for k in bucket.get(v, ())
                          if k != i}
            assert within <= found, (radius, m)
    # the cheapest split: probes per code times (1 + the expected bucket size)
    assert mih.plan(64, 5, 10_000_000) == (3, 1) and mih.plan(64, 5, 100) == (6, 0)


# --- evaluation metrics ----------------------------------------------------------------------------
def test_average_precision_at_k_counts_group_members_in_rank_order():
    from devtools.eval import average_precision_at_k

    groups = np.array(["a", "a", "a", "b", "b"])
    # item 0's nearest: 3 (b), then 1 (a), then 2 (a): precisions at the hits 1/2 and 2/3
    dist = np.array([[0, 2, 3, 1, 9], [2, 0, 1, 9, 9], [3, 1, 0, 9, 9], [1, 9, 9, 0, 5], [9, 9, 9, 5, 0]], float)
    ap = average_precision_at_k(dist, groups, k=3)
    assert ap[0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert ap[1] == ap[2] == 1.0  # each finds the other two members of "a" first
    assert ap[3] == 0.5  # "b": item 0 is nearer than its partner 4, which comes second
    assert ap[4] == 1.0


def test_recall_at_false_match_rate_stays_below_the_first_allowed_false_match():
    from devtools.eval import recall_at_false_match_rate

    groups = np.array(["a", "a", "b", "b", "c"])
    d = np.full((5, 5), 10.0)
    d[0, 1] = d[1, 0] = 2  # a pair
    d[2, 3] = d[3, 2] = 6  # b pair
    d[0, 4] = d[4, 0] = 4  # the nearest false match
    recall, radius = recall_at_false_match_rate(d, groups, np.ones(5, bool), rate=0.0)
    assert (recall, radius) == (0.5, 2.0)  # within 4 a false match would count: radius 2 keeps 1 of 2 pairs
    recall, radius = recall_at_false_match_rate(d, groups, np.ones(5, bool), rate=0.2)  # 8 negatives: 1 allowed
    assert (recall, radius) == (1.0, 6.0)


def test_junk_pairs_count_neither_as_matches_nor_as_false_matches():
    """The held-out split scored with its ambiguous pairs of groups ignored (`held_junk`)."""
    from devtools.eval import junk_mask, score, score_verified

    groups = np.array(["a", "a", "b", "b", "c"])
    ignore = junk_mask(groups, [("c", "a")])
    assert ignore.tolist() == [[False, False, False, False, True], [False, False, False, False, True],
                               [False] * 5, [False] * 5, [True, True, False, False, False]]
    d = np.full((5, 5), 10.0)
    d[0, 1] = d[1, 0] = 2  # a pair
    d[2, 3] = d[3, 2] = 6  # b pair
    d[0, 4] = d[4, 0] = 4  # the nearest false match: a junk pair
    split = {"ids": np.array([f"{g}/x.jpg" for g in groups]), "groups": groups, "kinds": np.array(["near_duplicate"] * 5)}
    assert score(d, split)["recall@0.1%"]["recall"] == 0.5  # within 4 the junk pair would be a false match
    junk = score(d, {**split, "ignore": ignore})
    assert (junk["recall@0.1%"]["recall"], junk["recall@0.1%"]["radius"]) == (1.0, 6.0)
    # left out of the rankings: item 4's only other group member is none, item 0 finds 1 first either way
    sim = 1 - d / 10
    assert score_verified(d, sim, split)["recall@0.1%"]["recall"] == 0.5
    assert score_verified(d, sim, {**split, "ignore": ignore})["recall@0.1%"]["recall"] == 1.0


def test_store_scale_verifies_the_codes_candidates_down_to_the_rate():
    """8-bit codes of an identity layer (a bit: a dimension's sign); the vectors' cosine verifies."""
    from devtools.eval import store_scale
    from imgfeat.descriptor import Coder

    coder = Coder(8, "learned", np.eye(8, dtype=np.float32), np.zeros(8, np.float32))
    one = np.ones(8, np.float32)
    flip = np.where(np.arange(8) == 7, -1, 1).astype(np.float32)  # 1 bit off, cosine 0.75
    # four distinct pictures: two pairs 1 bit apart (cosine 0.75), the rest 7 or 8 bits apart
    distractors = {"picture": np.stack([one, flip, -one, -flip]), "cutout": np.arange(4), "tile": np.arange(4)}
    # two near-duplicate pairs: one with the same code (cosine 0.99), one 1 bit apart (cosine 0.35)
    nudged, far = one.copy(), one.copy()
    nudged[0], far[7] = 1.3, -3
    split = {"picture": np.stack([one, nudged, one, far]), "groups": np.array(["p", "p", "q", "q"]),
             "kinds": np.array(["near_duplicate"] * 4)}
    got = store_scale(coder, 1, distractors, {"tuning": split})
    assert (got["distinct_pairs"], got["false_match_rate"], got["recall"]) == (6, 2 / 6, {"tuning": 1.0})
    # no false match allowed among 6 pairs: verification needs more than 0.75; the code alone, radius 0
    assert got["at"]["1e-06"] == {"similarity": 0.75, "verified_recall": {"tuning": 0.5},
                                  "code_alone": {"radius": 0, "recall": {"tuning": 0.5}}}
    assert coder.vectors(one[None])[0] == pytest.approx(one / np.sqrt(8))


def test_verified_recall_picks_the_radius_and_similarity_that_keep_the_most_pairs():
    """Three near-duplicate pairs; no false match allowed among 12 pairs of different groups."""
    from devtools.eval import score_verified

    ids = np.array([f"{g}/{e}.jpg" for g in "abc" for e in ("original", "flipped")])
    split = {"ids": ids, "groups": np.repeat(np.array(list("abc")), 2), "kinds": np.array(["near_duplicate"] * 6)}
    dist, sim = np.full((6, 6), 8.0), np.zeros((6, 6))
    for (i, j), d, s in [((0, 1), 1, 0.9), ((2, 3), 3, 0.95), ((4, 5), 3, 0.5),  # the pairs
                         ((0, 2), 1, 0.6), ((1, 4), 3, 0.8)]:  # two false matches within 3 bits
        dist[i, j] = dist[j, i] = d
        sim[i, j] = sim[j, i] = s
    np.fill_diagonal(dist, 0)
    got = score_verified(dist, sim, split)
    # radius 1 keeps (0, 1) above (0, 2)'s 0.6: 1 of 3; radius 3 keeps (0, 1) and (2, 3) above 0.8
    assert {k: got["recall@1%"][k] for k in ("recall", "radius", "similarity", "per_edit")} == {
        "recall": 0.6667, "radius": 3, "similarity": 0.8, "per_edit": {"flipped": 0.667}}
    assert got["recall@0.1%"]["recall"] == 0.6667
    # mAP: the vectors' order; picture 4's nearest is 1 (0.8), its duplicate second
    assert got["map_near_duplicate"] == round(5.5 / 6, 4)


def test_reranked_orders_the_codes_nearest_by_the_float_and_puts_the_rest_after():
    from devtools.eval import reranked

    dist = np.array([[0, 1, 2, 3], [1, 0, 1, 1], [2, 1, 0, 1], [3, 1, 1, 0]], float)
    float_dist = np.array([[0, 0.5, 0.1, 0.0], [0.5, 0, 0.2, 0.3], [0.1, 0.2, 0, 0.4], [0.0, 0.3, 0.4, 0]])
    got = reranked(dist, float_dist, 2)
    # picture 0: codes 1 and 2 are its two nearest, 2 is nearer by the float; 3 (float 0.0) is left out
    assert got[0].tolist() == [np.inf, 0.5, 0.1, np.inf]
    # picture 1: three codes at 1 bit, the first two by position
    assert got[1].tolist() == [0.5, np.inf, 0.2, np.inf]


def test_recall_interval_resamples_groups_and_brackets_the_recall():
    from devtools.eval import recall_interval

    # four groups of 3 (3 pairs each): groups a and b match fully, c has 1 of 3 pairs, d none
    groups = np.repeat(np.array(["a", "b", "c", "d"]), 3)
    d = np.full((12, 12), 9.0)
    for g in range(4):
        idx = range(3 * g, 3 * g + 3)
        for i in idx:
            for j in idx:
                d[i, j] = 1.0 if g < 2 else 9.0
    d[6, 7] = d[7, 6] = 1.0
    lo, hi = recall_interval(d, groups, np.ones(12, bool), threshold=1.0, reps=2000)
    assert lo < 7 / 12 < hi  # the recall itself: 7 of 12 pairs
    assert 0.0 <= lo and hi <= 1.0 and hi - lo > 0.2  # 4 groups say little: a wide interval
    # every group alike: no spread
    assert recall_interval(np.zeros((12, 12)), groups, np.ones(12, bool), 0.0) == (1.0, 1.0)


def test_recall_per_edit_counts_original_to_edit_pairs_only():
    from devtools.eval import recall_per_edit

    ids = np.array(["g1/original.jpg", "g1/flipped.jpg", "g1/cropped.jpg",
                    "g2/original.jpg", "g2/flipped.jpg", "g2/cropped.jpg"])
    groups = np.array([i.split("/")[0] for i in ids])
    d = np.full((6, 6), 9.0)
    d[0, 1] = d[1, 0] = 1  # g1: flipped matches its original
    d[1, 2] = d[2, 1] = 1  # an edit-to-edit match is not an original-to-edit one
    d[3, 4] = d[4, 3] = d[3, 5] = d[5, 3] = 1  # g2: both match
    assert recall_per_edit(d, ids, groups, 1.0) == {"cropped": 0.5, "flipped": 1.0}


def test_goals_are_met_only_at_their_values():
    from devtools.eval import goals

    def row(split, method, bits, r1, r01, mapso):
        return {"split": split, "method": method, "bits": bits, "map_same_object": mapso,
                "recall@1%": {"recall": r1}, "recall@0.1%": {"recall": r01}}

    rows = [row("tuning", "float", 2048, 0.99, 0.7, 0.3), row("tuning", "learned", 64, 0.95, 0.79, 0.225),
            row("tuning", "projection", 64, 0.9, 0.7, 0.1),
            row("tuning", "itq", 64, 0.96, 0.7, 0.1),
            row("held_out", "learned", 64, 0.97, 0.85, None), row("held_out", "projection", 64, 0.5, 0.4, None),
            row("held_out", "itq", 64, 0.5, 0.4, None)]
    got = {g["goal"]: (g["value"], g["met"]) for g in goals(rows)}
    assert got["object tuning: learned 64-bit near-duplicate recall@1% >= 0.95"] == (0.95, True)
    assert got["object tuning: learned 64-bit near-duplicate recall@0.1% >= 0.8"] == (0.79, False)
    assert got["object held_out: learned 64-bit near-duplicate recall@0.1% >= 0.8"] == (0.85, True)
    assert got["object tuning: learned 64-bit mAP@10 same-object >= 0.225"] == (0.225, True)
    # the search's goal row is what `similar` returns by default: re-ranked by the layer's vectors
    reranks = [{"split": "tuning", "bits": 64, "by": by, "candidates": 100, "map_same_object": m}
               for by, m in (("vectors", 0.22), ("float", 0.3))]
    searched = [(g["goal"], g["value"], g["met"]) for g in goals(rows, reranks) if "search" in g["goal"]]
    assert searched == [("object tuning: search (64-bit code's 100 nearest re-ranked by its vectors) mAP@10 "
                         "same-object >= 0.225", 0.22, False)]
    # a recall goal says what bounds it: the float descriptor's recall at that rate, the weakest edit
    rows[1]["recall@0.1%"]["per_edit"] = {"cropped": 0.4, "flipped": 0.9}
    bound = {g["goal"]: (g["ceiling"], g["weakest_edit"]) for g in goals(rows) if "ceiling" in g}
    assert bound["object tuning: learned 64-bit near-duplicate recall@0.1% >= 0.8"] == (0.7, ["cropped", 0.4])
    assert bound["object held_out: learned 64-bit near-duplicate recall@1% >= 0.95"] == (None, None)
    # itq's recall@1% is higher: the learned layer is not ahead on the tuning split
    assert got["object tuning: learned 64-bit ahead of projection and itq on every recall and same-object mAP"] == (-0.01, False)
    assert got["object held_out: learned 64-bit ahead of projection and itq on every recall"] == (0.45, True)
    # the held-out goals say their value with the split's junk pairs ignored, when measured
    junk = [{**r, "split": "held_junk", "recall@0.1%": {"recall": 0.9}} for r in rows if r["split"] == "held_out"]
    junk[0]["recall@0.1%"] = {"recall": 0.95}
    got = {g["goal"]: g.get("junk_ignored") for g in goals(rows + junk)}
    assert got["object held_out: learned 64-bit near-duplicate recall@0.1% >= 0.8"] == 0.95
    assert got["object held_out: learned 64-bit ahead of projection and itq on every recall"] == 0.05
    assert got["object tuning: learned 64-bit near-duplicate recall@0.1% >= 0.8"] is None
    # the second held-out split gets its goal rows when measured
    new = [{**r, "split": "held_new"} for r in rows if r["split"] == "held_out"]
    got = {g["goal"]: g["value"] for g in goals(rows + new)}
    assert got["object held_new: learned 64-bit near-duplicate recall@0.1% >= 0.8"] == 0.85
    assert got["object held_new: learned 64-bit ahead of projection and itq on every recall"] == 0.45
    assert not any("held_new" in g["goal"] for g in goals(rows))
    # rows of another descriptor get their own goal rows
    picture = [{**r, "described": "picture"} for r in rows[:3]]
    got = {g["goal"]: g["value"] for g in goals(rows + picture)}
    assert got["picture tuning: learned 64-bit near-duplicate recall@1% >= 0.95"] == 0.95
    assert got["picture held_out: learned 64-bit near-duplicate recall@1% >= 0.95"] is None


def test_rotation_keeps_the_size_and_angle_zero_is_the_picture():
    from PIL import Image

    from imgfeat import augment

    a = np.zeros((30, 40, 3), np.uint8)
    a[..., 2] = 255  # blue, with a red block in the centre
    a[10:20, 15:25] = (255, 0, 0)
    img = Image.fromarray(a)
    assert augment.rotate(img, 0) is img
    out = np.asarray(augment.rotate(img, 10))
    assert out.shape == (30, 40, 3)
    assert out[15, 20].tolist() == [255, 0, 0]  # the centre stays
    assert out[0, 0].tolist() == out[29, 39].tolist() == [0, 0, 255]  # corners: the edge colour, not black


def test_whitened_init_prefers_the_directions_the_views_keep():
    rng = np.random.RandomState(0)
    x0 = rng.standard_normal((400, 2)) * [2.0, 1.0]  # the crops vary most along axis 0...
    views = np.stack([x0, x0 + rng.standard_normal((400, 2)) * [2.0, 0.0]])  # ...which their views move
    assert abs(deepbit.pca_init(x0, 1)[0][0, 0]) > abs(deepbit.pca_init(x0, 1)[0][1, 0])
    w, c = deepbit.whitened_init(views, 1)
    assert abs(w[1, 0]) > 10 * abs(w[0, 0])  # the start reads axis 1, which no view moves
    z = x0 @ w + c
    assert abs(z.mean()) < 1e-4 and z.std() == pytest.approx(1, rel=1e-4)
    np.testing.assert_allclose(deepbit.whitened_init(views[:1], 1)[0], deepbit.pca_init(x0, 1)[0])
    with pytest.raises(ValueError, match="more than 2"):
        deepbit.whitened_init(views[:, :2], 2)

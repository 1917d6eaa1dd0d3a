"""Near-duplicates of one partition, in Spark: nothing proportional to the store on the driver (at
most the partition's distinct codes).

  1. Distinct codes only: n copies of one picture are one code (they match each other at distance 0).
     Each code's earliest image key ("dt=<date>/<image_id>") is an aggregate over the history; the
     second earliest is needed, and computed, only for the partition's own codes.
  2. Pairs within the radius, by whichever of two exact methods `plan` expects to cost less:
     - multi-index hashing (`imgfeat.mih`): the partition's codes probe the substrings of every code
       of this and earlier partitions; a join on (position, value) pairs them, and the exact Hamming
       distance (bit_count of the codes' 64-bit words, in the JVM) keeps those within the radius
       before anything else touches the candidates. Cheap at small radii; its probes grow with
       the radius combinatorially (1,562 a substring at r = 11 for 64 bits);
     - a scan: the partition's distinct codes (its size, not the store's) are broadcast, and each
       task compares its share of the store's codes with all of them (faiss's exhaustive binary
       range search), whatever the radius; it verifies its pairs (below) itself.
     With a `similarity`, a pair of codes is kept only when its pictures' vectors (`Coder.vectors`
     of the learned layer, each code's earliest image's) have at least that cosine, or either has
     none: the code finds candidates, the vector verifies them.
  3. Groups: connected components of that code graph by min-label propagation (each code starts
     with its earliest image key; each round takes the least label of its neighbours, until none
     changes), so a group is named by its earliest member.
  4. One row per image of the partition that has a near-duplicate: its group and its nearest match
     (least distance, then earliest key), another picture of this or an earlier partition. n copies
     cost n rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from imgfeat import mih

MAX_ROUNDS = 50
ROWS_PER_BATCH = 1_000_000  # probing rows a Python worker hands the JVM at once
# Core-seconds per unit of work of each method, measured on this machine with make bench --scale
# (README): a probing row or candidate through the join; a pair of codes compared by the scan.
SECONDS_PER_PROBING_ROW = 1.4e-6
SECONDS_PER_SCANNED_PAIR = 0.33e-9


def plan(bits: int, radius: int, own: int, indexed: int) -> dict:
    """How to find the pairs within `radius` between `own` probing codes and `indexed` codes:
    {"method": "mih", "m", "s", "rows"} (substrings, neighbour radius, probing rows) or
    {"method": "scan", "pairs"}, whichever is expected to take less time."""
    m, s = mih.plan(bits, radius, indexed)
    if own * indexed * SECONDS_PER_SCANNED_PAIR < own * mih.expected_work(bits, m, s, indexed) * SECONDS_PER_PROBING_ROW:
        return {"method": "scan", "pairs": own * indexed}
    return {"method": "mih", "m": m, "s": s, "rows": own * m * mih.probes_per_substring(bits, m, s)}


def _substrings(codes: DataFrame, bits: int, m: int, s: int, side: str) -> DataFrame:
    """(<side>, pos, value, <side>0..) of each code's substrings, with their neighbours within s when
    s > 0; <side>0.. are the code's 64-bit words, for the exact distance after the join."""
    n_words = math.ceil(bits / 64)
    word_cols = [f"{side}{i}" for i in range(n_words)]

    # Codes per output batch: an Arrow batch of 10,000 codes times 1,794 probes (r = 11) is half a
    # GB, more than two tasks' direct buffers hold.
    step = max(1, ROWS_PER_BATCH // (m * mih.probes_per_substring(bits, m, s)))

    def rows(batches):
        for batch in batches:
            for start in range(0, len(batch), step):
                pdf = batch.iloc[start:start + step]
                codes = list(pdf["code"])
                words = mih.words(codes)
                for pos, values in mih.probes(mih.unpack(codes), m, s):
                    repeat = values.shape[1]
                    out = {side: pdf["code"].repeat(repeat).to_numpy(), "pos": pos, "value": values.reshape(-1)}
                    out.update({c: words[:, i].repeat(repeat) for i, c in enumerate(word_cols)})
                    yield pd.DataFrame(out)

    schema = ", ".join([f"{side} binary", "pos int", "value long", *(f"{c} long" for c in word_cols)])
    return codes.mapInPandas(rows, schema)


def _distance(bits: int):
    return sum(F.bit_count(F.col(f"a{i}").bitwiseXOR(F.col(f"b{i}"))) for i in range(math.ceil(bits / 64)))


def _mih_edges(own_codes: DataFrame, indexed_codes: DataFrame, bits: int, radius: int, m: int, s: int) -> DataFrame:
    probed = _substrings(own_codes, bits, m, s, "a")
    indexed_substrings = _substrings(indexed_codes, bits, m, 0, "b")
    # A sort-merge join: the planner cannot see that probing multiplies the codes' rows (hundreds
    # of times at radius 8), and a broadcast of its underestimate ran a 1 GB driver out of heap.
    return (probed.hint("merge").join(indexed_substrings, ["pos", "value"])
            .where(F.col("a") != F.col("b"))
            .withColumn("d", _distance(bits)).where(F.col("d") <= radius)
            .select("a", "b", "d").distinct())


def _scan_edges(own_codes: DataFrame, indexed_codes: DataFrame, bits: int, radius: int,
                similarity: float | None = None) -> DataFrame:
    """`own_codes`, `indexed_codes`: (code, vector). With a `similarity`, each task verifies its
    pairs by their vectors (as `_verified`) before they leave it: at the learned 64-bit radius,
    unverified candidates are hundreds a picture at a million indexed."""
    width = math.ceil(bits / 8)  # bytes a code; padding bits are 0 in every code
    own = own_codes.collect()  # the partition's distinct codes: 8 bytes each at 64 bits (+ 2 a bit of vector)
    shared = own_codes.sparkSession.sparkContext.broadcast(
        (np.frombuffer(b"".join(bytes(r.code) for r in own), np.uint8).reshape(len(own), width),
         np.array([bytes(r.vector) if r.vector is not None else None for r in own], dtype=object)))

    def scan(batches):
        import faiss

        faiss.omp_set_num_threads(1)  # a Spark task is one core
        own_matrix, own_vectors = shared.value
        index = faiss.IndexBinaryFlat(8 * width)
        index.add(own_matrix)
        own_bytes = np.array([bytes(c) for c in own_matrix], dtype=object)
        for pdf in batches:
            if pdf.empty:
                continue
            codes = pdf["code"].to_numpy()
            lims, d, i = index.range_search(np.frombuffer(b"".join(codes), np.uint8).reshape(len(codes), width),
                                            radius + 1)  # faiss's radius is strict
            src = np.repeat(np.arange(len(codes)), np.diff(lims.astype(np.int64)))
            keep = np.ones(len(src), bool)
            if similarity is not None and len(src):
                keep = _agree(own_vectors[i], pdf["vector"].to_numpy()[src], similarity)
            yield pd.DataFrame({"a": own_bytes[i[keep]], "b": codes[src[keep]], "d": d[keep].astype(np.int32)})

    return indexed_codes.mapInPandas(scan, "a binary, b binary, d int").where(F.col("a") != F.col("b"))


def _agree(a: np.ndarray, b: np.ndarray, similarity: float) -> np.ndarray:
    """Per pair of packed vectors (object arrays, None where a code has none): whether they match,
    a cosine of at least `similarity`, or cannot be told (either is None: the radius decides)."""
    from imgfeat import descriptor

    both = pd.notna(a) & pd.notna(b)
    ok = ~both
    if both.any():
        ok[both] = descriptor.cosines(list(a[both]), list(b[both])) >= similarity
    return ok


def _verified(edges: DataFrame, first: DataFrame, similarity: float) -> DataFrame:
    """The `edges` whose codes' vectors (their earliest images') agree (`_agree`)."""
    vectors = first.where(F.col("vector").isNotNull()).select("code", "vector")
    pairs = (edges.join(vectors.select(F.col("code").alias("a"), F.col("vector").alias("va")), "a", "left")
             .join(vectors.select(F.col("code").alias("b"), F.col("vector").alias("vb")), "b", "left"))

    def keep(batches):
        for pdf in batches:
            yield pdf.loc[_agree(pdf["va"].to_numpy(), pdf["vb"].to_numpy(), similarity), ["a", "b", "d"]]

    return pairs.mapInPandas(keep, "a binary, b binary, d int")


def near_duplicates(history: DataFrame, date: str, bits: int, radius: int, indexed: int | None = None,
                    method: str | None = None, similarity: float | None = None) -> DataFrame:
    """`history`: (dt, image_id, code[, vector]) of every indexed image of partitions up to `date`
    with one code; `indexed`, its number of rows if known (it sizes the work). `method`: "mih" or
    "scan", or None for `plan`'s choice. `similarity`: the least cosine of two codes' vectors (packed
    by `descriptor.pack_vectors`) for a match, or None to match by the radius alone. Returns the
    duplicates rows of partition `date` (schemas.DUPLICATES)."""
    vector = F.col("vector") if "vector" in history.columns else F.lit(None).cast("binary").alias("vector")
    keyed = history.select(F.concat(F.lit("dt="), "dt", F.lit("/"), "image_id").alias("key"), "dt", "image_id",
                           "code", vector)
    # Read several times; on disk, so the JVM's heap does not grow with the store. A code's vector
    # is its earliest image's.
    first = (keyed.groupBy("code").agg(F.min(F.struct("key", "vector")).alias("f"))
             .select("code", F.col("f.key").alias("first"), F.col("f.vector").alias("vector"))
             .persist(StorageLevel.DISK_ONLY))
    own = keyed.where(F.col("dt") == date).select("key", "image_id", "code")
    own_codes = own.select("code").distinct().cache()
    # An own image's same-code match: its code's earliest key, or the second earliest if it is that.
    own_first = own_codes.join(first.select("code", "first"), "code")
    second = (keyed.join(own_first, "code").where(F.col("key") > F.col("first"))
              .groupBy("code").agg(F.min("key").alias("second")))

    indexed = history.count() if indexed is None else indexed
    if (method or plan(bits, radius, own_codes.count(), indexed)["method"]) == "scan":
        edges = _scan_edges(own_codes.join(first.select("code", "vector"), "code"), first.select("code", "vector"),
                            bits, radius, similarity)
    else:
        edges = _mih_edges(own_codes, first.select("code"), bits, radius, *mih.plan(bits, radius, indexed))
        if similarity is not None:
            edges = _verified(edges, first, similarity)
    edges = edges.cache()

    # Groups: min-label propagation over the code graph (both directions of each edge).
    both = edges.select("a", "b").union(edges.select(F.col("b").alias("a"), F.col("a").alias("b")))
    nodes = own_codes.select(F.col("code").alias("a")).union(both.select("a")).distinct()
    labels = nodes.join(first.select(F.col("code").alias("a"), F.col("first").alias("label")), "a").localCheckpoint()
    for _ in range(MAX_ROUNDS):
        offered = both.join(labels, "a").select(F.col("b").alias("a"), "label")
        new = labels.union(offered).groupBy("a").agg(F.min("label").alias("label")).localCheckpoint()
        changed = new.join(labels.withColumnRenamed("label", "old"), "a").where(F.col("label") != F.col("old")).count()
        labels = new
        if changed == 0:
            break
    else:
        raise RuntimeError(f"duplicate groups did not settle in {MAX_ROUNDS} rounds")

    # Each own image's nearest other picture: a same-code copy (distance 0) or the earliest image
    # of the nearest other code.
    nearest_other = (edges.join(first.select(F.col("code").alias("b"), F.col("first").alias("match")), "b")
                     .groupBy("a").agg(F.min(F.struct("d", "match")).alias("other")))
    rows = (own.join(own_first, "code").join(second, "code", "left")
            .withColumn("same", F.when(F.col("first") != F.col("key"), F.col("first")).otherwise(F.col("second")))
            .join(nearest_other.withColumnRenamed("a", "code"), "code", "left")
            .withColumn("best", F.least(F.when(F.col("same").isNotNull(), F.struct(F.lit(0).alias("d"),
                                                                                    F.col("same").alias("match"))),
                                        F.col("other")))
            .where(F.col("best").isNotNull())
            .join(labels.select(F.col("a").alias("code"), F.col("label").alias("group_id")), "code"))
    return rows.select("image_id", "group_id",
                       F.substring("best.match", 4, 10).alias("match_partition"),
                       F.expr("substring(best.match, 15)").alias("match_image_id"),
                       F.col("best.d").cast("int").alias("hamming"))

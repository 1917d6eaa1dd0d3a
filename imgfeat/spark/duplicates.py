"""Near-duplicates of one partition, as Spark joins: nothing proportional to the store on the driver.

  1. Distinct codes only: n copies of one picture are one code (they match each other at distance 0).
  2. Candidates by multi-index hashing (`imgfeat.mih`): the partition's codes probe the substrings
     of every code of this and earlier partitions; a join on (position, value) pairs them, and the
     exact Hamming distance keeps those within the radius.
  3. Groups: connected components of that code graph by min-label propagation (each code starts
     with its earliest image key, "dt=<date>/<image_id>"; each round takes the least label of
     its neighbours, until none changes), so a group is named by its earliest member.
  4. One row per image of the partition that has a near-duplicate: its group and its nearest match
     (least distance, then earliest key), another picture of this or an earlier partition. n copies
     cost n rows.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from imgfeat import mih

MAX_ROUNDS = 50


@pandas_udf("int")
def _hamming(a: pd.Series, b: pd.Series) -> pd.Series:
    return pd.Series(mih.hamming(list(a), list(b)))


def _substrings(codes: DataFrame, m: int, s: int) -> DataFrame:
    """(code, pos, value) of each code's substrings, with their neighbours within s when s > 0."""
    def rows(batches):
        for pdf in batches:
            if pdf.empty:
                continue
            found = mih.probes(mih.unpack(list(pdf["code"])), m, s)
            for pos, values in found:
                yield pd.DataFrame({"code": pdf["code"].repeat(values.shape[1]).to_numpy(), "pos": pos,
                                    "value": values.reshape(-1)})

    return codes.mapInPandas(rows, "code binary, pos int, value long")


def near_duplicates(history: DataFrame, date: str, bits: int, radius: int) -> DataFrame:
    """`history`: (dt, image_id, code) of every indexed image of partitions up to `date` with one
    code. Returns the duplicates rows of partition `date` (schemas.DUPLICATES)."""
    keyed = history.select(F.concat(F.lit("dt="), "dt", F.lit("/"), "image_id").alias("key"), "dt", "image_id",
                           "code")
    # The two earliest keys of each code: an image's same-code match is the first that is not itself.
    ranked = keyed.withColumn("_rank", F.row_number().over(Window.partitionBy("code").orderBy("key")))
    first = (ranked.where(F.col("_rank") <= 2).groupBy("code")
             .agg(F.min(F.when(F.col("_rank") == 1, F.col("key"))).alias("first"),
                  F.min(F.when(F.col("_rank") == 2, F.col("key"))).alias("second"))).cache()
    own = keyed.where(F.col("dt") == date).select("key", "image_id", "code")
    own_codes = own.select("code").distinct().cache()
    m, s = mih.plan(bits, radius, first.count())
    probed = _substrings(own_codes, m, s).withColumnRenamed("code", "a")
    indexed = _substrings(first.select("code"), m, 0).withColumnRenamed("code", "b")
    edges = (probed.join(indexed, ["pos", "value"]).where(F.col("a") != F.col("b"))
             .select("a", "b").distinct()
             .withColumn("d", _hamming("a", "b")).where(F.col("d") <= radius)).cache()

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
    rows = (own.join(first, "code")
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

"""Incremental runs: an image whose content was already published is never inferred again.

Before detect, `mark` looks every valid image's sha256 up in the published features of all
partitions made with the same model, and sets `reused_from = "dt=<date>/<image_id>"` of a source
row: the partition's own earlier row for the same file (a re-run after the partition gained files
carries its rows over, so only the new files are inferred), else the earliest partition that
published those bytes. Such rows skip detect, crop and embed; at publish, `resolve` copies the
source's label, box, codes and embeddings, and `reused_from` names the row where they were computed.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from imgfeat import schemas

PAYLOAD = ("label", "score", "x1", "y1", "x2", "y2", "code", "code_bits", "embedding", "picture_code", "picture_embedding")


def published(spark, features_root: str, model: str) -> DataFrame | None:
    """Every published row made with `model`, with its partition `dt`; None before the first publish."""
    from imgfeat.spark.hadoop import HadoopFS

    if not HadoopFS(spark).is_dir(features_root):
        return None
    return all_published(spark, features_root).where(F.col("model") == model)


def all_published(spark, features_root: str) -> DataFrame:
    """Every published row, with its partition `dt`."""
    # An explicit schema: partitions published before a column existed read it as null, and no
    # schema inference touches every file. A partition replaced meanwhile by a concurrent run is skipped.
    return (spark.read.schema(f"{schemas.FEATURES}, dt string").option("basePath", features_root)
            .option("ignoreMissingFiles", "true").parquet(features_root))


# A partition with at most this many rows is broadcast to the store's scan (its digests, about 100
# bytes a row): the store is then read once and never shuffled. Bigger ones join by shuffling both.
BROADCAST_ROWS = 500_000


def _small(df: DataFrame, rows: int) -> DataFrame:
    return F.broadcast(df) if rows <= BROADCAST_ROWS else df


def mark(ingested: DataFrame, index: DataFrame | None, date: str, own: bool = True) -> DataFrame:
    """`ingested` plus `reused_from` (null: to infer); quarantined rows are never reused.
    `own=False`: the partition's own published rows are not sources (a forced re-run)."""
    if index is not None and not own:
        index = index.where(F.col("dt") != date)
    if index is None:
        return ingested.withColumn("reused_from", F.lit(None).cast("string"))
    # Only the ids and digests are joined; the image bytes join back by image_id.
    wanted = ingested.where(F.col("quarantine_stage").isNull()).select("image_id", "sha256")
    # Only the published rows that share a digest with this partition matter: the store is scanned
    # against the partition's digests, not aggregated whole, so a run costs one scan of the store's
    # digests whatever the number of earlier partitions.
    digests = wanted.select("sha256").distinct()
    matches = index.select("dt", "image_id", "sha256").join(_small(digests, wanted.count()), "sha256")
    own = (matches.where(F.col("dt") == date).select("image_id", "sha256")
           .distinct().withColumn("_own", F.lit(True)))
    first = matches.groupBy("sha256").agg(F.min(F.struct("dt", "image_id")).alias("_first"))
    keys = (wanted.join(own, ["image_id", "sha256"], "left").join(first, "sha256", "left")
            .select("image_id", F.when(F.col("_own"), F.concat(F.lit(f"dt={date}/"), "image_id"))
                    .when(F.col("_first").isNotNull(),
                          F.concat(F.lit("dt="), "_first.dt", F.lit("/"), "_first.image_id"))
                    .alias("reused_from")))
    return ingested.join(keys, "image_id", "left")


def _source_ref(dt_col: str, id_col: str):
    return F.concat(F.lit("dt="), F.col(dt_col), F.lit("/"), F.col(id_col))


def resolve(embedded: DataFrame, index: DataFrame | None, date: str, model: str) -> DataFrame:
    """Final rows of the partition: computed rows with `model`, reused rows with their source's
    values. A reused row whose source is gone meanwhile is quarantined (`reuse_source_missing`)."""
    computed = embedded.where(F.col("reused_from").isNull()).withColumn("model", F.lit(model))
    reused = embedded.where(F.col("reused_from").isNotNull())
    if index is None:
        index = embedded.sparkSession.createDataFrame([], f"{schemas.FEATURES}, dt string")
    # Only the source rows are read: their partitions (pruned by dt), then the rows themselves.
    refs = reused.select(F.col("reused_from").alias("_src")).distinct()
    source_dates = [r[0] for r in refs.select(F.substring("_src", 4, 10)).distinct().collect()]
    src = (index.where(F.col("dt").isin(source_dates))
           .select(_source_ref("dt", "image_id").alias("_src"),
                   *[F.col(c).alias(f"_src_{c}") for c in (*PAYLOAD, "model", "reused_from")])
           .join(_small(refs, embedded.count()), "_src", "left_semi"))
    joined = reused.join(src, reused["reused_from"] == src["_src"], "left")
    missing = F.col("_src").isNull()
    own_row = F.col("reused_from") == F.concat(F.lit(f"dt={date}/"), F.col("image_id"))
    # Where the values were computed: the source's own source if it was a reuse too; nothing
    # when a re-run carries the partition's own row over.
    origin = F.coalesce(F.col("_src_reused_from"), F.when(~own_row, F.col("reused_from")))
    filled = joined.select(
        "image_id", "sha256", "width", "height",
        *[F.when(missing, F.lit(None)).otherwise(F.col(f"_src_{c}")).alias(c) for c in (*PAYLOAD, "model")],
        F.when(missing, F.col("reused_from")).otherwise(origin).alias("reused_from"),
        F.when(missing, F.lit("publish")).alias("quarantine_stage"),
        F.when(missing, F.concat(F.lit("reuse_source_missing: "), F.col("reused_from"))).alias("quarantine_reason"),
    )
    cols = [*schemas.columns(schemas.FEATURES), "quarantine_stage", "quarantine_reason"]
    return computed.select(*cols).unionByName(filled.select(*cols))


def counts(embedded: DataFrame, date: str) -> dict:
    """This run's valid images by where their values come from (for the run manifest)."""
    source = (F.when(F.col("reused_from").isNull(), "inferred")
              .when(F.col("reused_from").startswith(f"dt={date}/"), "reused_this_partition")
              .otherwise("reused_other_partitions"))
    found = {r["s"]: r["count"] for r in
             embedded.where(F.col("quarantine_stage").isNull()).groupBy(source.alias("s")).count().collect()}
    return {k: found.get(k, 0) for k in ("inferred", "reused_this_partition", "reused_other_partitions")}

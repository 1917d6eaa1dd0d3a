"""publish: split the partition's final rows into the features table and the quarantine table."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from imgfeat import schemas

STAGE = "publish"


def features(resolved: DataFrame) -> DataFrame:
    """`resolved`: the final rows (reuse.resolve), with `model` and the quarantine columns."""
    return resolved.where(F.col("quarantine_stage").isNull()).select(*schemas.columns(schemas.FEATURES))


def quarantine(resolved: DataFrame) -> DataFrame:
    return resolved.where(F.col("quarantine_stage").isNotNull()).select(
        "image_id", F.col("quarantine_stage").alias("stage"), F.col("quarantine_reason").alias("reason"))


def summary(features_df: DataFrame, quarantine_df: DataFrame, top: int = 10) -> dict:
    """Counts for the run manifest: published, quarantined by reason code, top labels."""
    code = F.split(F.col("reason"), ":").getItem(0)
    by_reason = {r["code"]: r["count"] for r in quarantine_df.groupBy(code.alias("code")).count().collect()}
    labels = (features_df.groupBy(F.coalesce("label", F.lit("(none)")).alias("label")).count()
              .orderBy(F.desc("count"), "label").limit(top).collect())
    return {
        "published": features_df.count(),
        "quarantined": sum(by_reason.values()),
        "quarantined_by_reason": dict(sorted(by_reason.items())),
        "top_labels": {r["label"]: r["count"] for r in labels},
    }

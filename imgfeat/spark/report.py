"""Writes the run report of a published partition (imgfeat/report.py renders it): the figures
from the published tables and the manifest, and sample thumbnails made by executors from the
ingest checkpoint's bytes. WAREHOUSE/reports/dt=<date>/index.html, thumbs/ beside it."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from pyspark.sql import Window
from pyspark.sql import functions as F

from imgfeat import report
from imgfeat.layout import Warehouse

EXAMPLES = 5  # example image ids per quarantine reason


def _thumbs(it):
    import pandas as pd

    from imgfeat import decode

    for b in it:
        out = []
        for r in b.itertuples(index=False):
            try:
                thumb, crop = report.thumbnails(r.content, r.width, r.height, (r.x1, r.y1, r.x2, r.y2), r.label)
            except decode.BadImage:
                continue  # published, so it decoded before: only a picture replaced meanwhile
            out.append({"image_id": r.image_id, "label": r.label, "score": r.score, "thumb": thumb, "crop": crop})
        yield pd.DataFrame(out, columns=["image_id", "label", "score", "thumb", "crop"])


def write(spark, wh: Warehouse, date: str, manifest: dict) -> str:
    """Write the report of `date` (published, with its `manifest`); returns its path."""
    from imgfeat.spark.checkpoint import is_committed, parent, write_text_atomically
    from imgfeat.spark.hadoop import HadoopFS

    fs = HadoopFS(spark)
    features = spark.read.parquet(wh.table("features", date))
    quarantine = spark.read.parquet(wh.table("quarantine", date))
    b = report.SCORE_BINS
    in_bin = F.least(F.floor(F.col("score") * b), F.lit(b - 1)).cast("int")
    labels, bins = Counter(), Counter()  # both charts from one pass over the features
    for r in features.groupBy(F.coalesce("label", F.lit("(none)")).alias("label"), in_bin.alias("bin")).count().collect():
        labels[r["label"]] += r["count"]
        bins[r["bin"]] += r["count"]
    scores = report.score_bins(bins)
    code = F.split("reason", ":").getItem(0)
    first = Window.partitionBy("code").orderBy("image_id")
    reasons = (quarantine.withColumn("code", code).withColumn("n", F.count("*").over(Window.partitionBy("code")))
               .withColumn("k", F.row_number().over(first)).where(F.col("k") <= EXAMPLES)
               .groupBy("code", "n").agg(F.sort_array(F.collect_list("image_id")).alias("examples"))
               .orderBy(F.desc("n"), "code").collect())
    doubtful = [r[0] for r in features.where(F.col("label").isNull() | (F.col("score") < 0.5))
                .orderBy(F.col("label").isNotNull(), "score", "image_id").select("image_id")
                .limit(report.SAMPLES // 2).collect()]
    shuffled = [r[0] for r in features.orderBy(F.xxhash64(F.lit(date), "image_id"), "image_id")
                .select("image_id").limit(report.SAMPLES).collect()]
    chosen = report.choose_samples(doubtful, shuffled)

    page = wh.report(date)
    fs.delete(f"{parent(page)}/thumbs")
    samples = []
    if chosen and is_committed(fs, wh.checkpoint("ingest", date)):
        # The chosen ids as a filter on the read: Parquet skips the row groups that hold none.
        rows = (spark.read.parquet(wh.checkpoint("ingest", date)).select("image_id", "content")
                .where(F.col("image_id").isin(chosen))
                .join(features.select("image_id", "label", "score", "x1", "y1", "x2", "y2", "width", "height"),
                      "image_id"))
        made = {r["image_id"]: r for r in rows.mapInPandas(_thumbs, "image_id string, label string, score double, "
                                                                    "thumb binary, crop binary").collect()}
        samples = [{"image_id": i, "label": made[i]["label"], "score": made[i]["score"],
                    "thumb": f"thumbs/{k}.jpg", "crop": f"thumbs/{k}-crop.jpg"}
                   for k, i in enumerate(i for i in chosen if i in made)]
        # Small files, one create each: written by a few threads at once (one after the other,
        # they took most of the report's time).
        files = [(f"{parent(page)}/{s[kind]}", made[s["image_id"]][kind]) for s in samples for kind in ("thumb", "crop")]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda f: fs.write_bytes(f[0], bytes(f[1])), files))
    html = report.render(manifest, labels, scores,
                         [{"code": r["code"], "count": r["n"], "examples": list(r["examples"])} for r in reasons],
                         samples, spark.sparkContext.defaultParallelism)
    write_text_atomically(spark, page, html)
    return page

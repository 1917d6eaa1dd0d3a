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
GROUPS, MEMBERS = 12, 6  # near-duplicate groups shown (the largest), pictures shown of each


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


def _groups(spark, wh: Warehouse, date: str) -> tuple[list[dict], dict]:
    """The partition's largest near-duplicate groups (up to MEMBERS of their pictures each, nearest
    first) and the table's metadata (its radius and similarity), from its duplicates table."""
    from imgfeat.spark.checkpoint import read_meta

    path = wh.table("duplicates", date)
    group = Window.partitionBy("group_id")
    rows = (spark.read.parquet(path).withColumn("n", F.count("*").over(group))
            .withColumn("k", F.row_number().over(group.orderBy("hamming", "image_id"))).where(F.col("k") <= MEMBERS)
            .orderBy(F.desc("n"), "group_id", "k").limit(GROUPS * MEMBERS).collect())
    groups: dict[str, dict] = {}
    for r in rows:
        g = groups.setdefault(r["group_id"], {"group_id": r["group_id"], "count": r["n"], "members": []})
        g["members"].append({"image_id": r["image_id"], "hamming": r["hamming"],
                             "match": f"dt={r['match_partition']}/{r['match_image_id']}"})
    return list(groups.values())[:GROUPS], read_meta(spark, path)


def write(spark, wh: Warehouse, date: str, manifest: dict, duplicates: bool = False) -> str:
    """Write the report of `date` (published, with its `manifest`); returns its path. `duplicates`:
    with its near-duplicate groups (the index job, after it committed them; publish's report comes
    before them, and a duplicates table of an earlier publish would be stale)."""
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
    groups, meta = _groups(spark, wh, date) if duplicates else (None, {})
    members = [m["image_id"] for g in groups or [] for m in g["members"]]

    page = wh.report(date)
    fs.delete(f"{parent(page)}/thumbs")
    samples = []
    if (chosen or members) and is_committed(fs, wh.checkpoint("ingest", date)):
        # The chosen ids as a filter on the read: Parquet skips the row groups that hold none.
        rows = (spark.read.parquet(wh.checkpoint("ingest", date)).select("image_id", "content")
                .where(F.col("image_id").isin(sorted(set(chosen + members))))
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
        for k, m in enumerate(m for g in groups or [] for m in g["members"] if m["image_id"] in made):
            m["thumb"] = f"thumbs/d{k}.jpg"
            files.append((f"{parent(page)}/{m['thumb']}", made[m["image_id"]]["thumb"]))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda f: fs.write_bytes(f[0], bytes(f[1])), files))
    html = report.render(manifest, labels, scores,
                         [{"code": r["code"], "count": r["n"], "examples": list(r["examples"])} for r in reasons],
                         samples, spark.sparkContext.defaultParallelism, groups, meta.get("radius"),
                         meta.get("similarity"))
    write_text_atomically(spark, page, html)
    return page


def write_safely(spark, wh: Warehouse, date: str, manifest: dict | None = None, duplicates: bool = False) -> None:
    """`write`, for a job whose result the report is derived from: never fails it. A failure is one
    line in the log, and the next publish (or index) of the partition writes the report again.
    `manifest`: read from the warehouse when not given."""
    import json
    import sys

    try:
        if manifest is None:
            from imgfeat.spark.hadoop import HadoopFS

            manifest = json.loads(HadoopFS(spark).read_text(wh.manifest(date)))
        write(spark, wh, date, manifest, duplicates)
    except Exception as e:  # noqa: BLE001 - any failure of a derived page
        print(f"imgfeat dt={date}: the run report was not written: {type(e).__name__}: "
              f"{' '.join(str(e).split())[:300]}", file=sys.stderr)

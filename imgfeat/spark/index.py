"""index: after a partition is published, refresh the similarity index of its code and write the
partition's near-duplicates table.

  spark-submit spark_apps/index.py --warehouse-root W --partition-date D [--duplicate-radius R]

The index covers every partition published with the same code (`search.Index`), at
WAREHOUSE/index/<code>/index.npz (replaced atomically). The duplicates table of the partition,
WAREHOUSE/duplicates/dt=<date>/, pairs each of its images with the images of this or an earlier
partition within Hamming distance R (`search.duplicates`), committed like a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from imgfeat import params, search
from imgfeat.layout import SUCCESS, Warehouse

# Hamming radius of a near-duplicate, by code kind and length: the largest radius at which the
# false-match rate stays at or below 0.1% on the evaluation corpus (`make eval`, README table).
DUPLICATE_RADIUS = {"deepbit": {32: 2, 64: 8, 128: 21}, "simhash": {32: 1, 64: 5, 128: 14}}


def default_radius(code: str, bits: int) -> int:
    by_bits = DUPLICATE_RADIUS["deepbit" if code.startswith("deepbit") else "simhash"]
    return by_bits.get(bits, round(bits * by_bits[64] / 64))


def build_parser() -> argparse.ArgumentParser:
    from imgfeat.spark.args import Parser, typed

    p = Parser(prog="spark-submit spark_apps/index.py", description=__doc__.split("\n")[0])
    p.add_argument("--warehouse-root", required=True, type=typed(params.warehouse_root))
    p.add_argument("--partition-date", required=True, type=typed(params.partition_date), help="YYYY-MM-DD")
    p.add_argument("--duplicate-radius", type=typed(lambda v: params.non_negative_int(v, "duplicate_radius")),
                   default=None, help="Hamming radius of a near-duplicate (default: by code kind and length, "
                                      f"{DUPLICATE_RADIUS})")
    return p


def code_of(model: str) -> str:
    return model.rsplit("code=", 1)[1]


def refresh(spark, wh: Warehouse, date: str, radius: int | None = None) -> dict:
    from pyspark.sql import functions as F

    from imgfeat import schemas
    from imgfeat.spark.checkpoint import commit, write_text_atomically
    from imgfeat.spark.hadoop import HadoopFS
    from imgfeat.spark import StageFailed
    from imgfeat.spark import reuse

    started = time.time()
    fs = HadoopFS(spark)
    own = wh.table("features", date)
    if not fs.exists(f"{own}/{SUCCESS}"):
        raise StageFailed(f"features {own} are not published: run image_features for dt={date} first")
    first = spark.read.parquet(own).select("model", "code_bits").first()
    if first is None:
        raise StageFailed(f"features {own} hold no image")
    code, bits = code_of(first["model"]), first["code_bits"]
    radius = default_radius(code, bits) if radius is None else radius
    root = wh.features_root()
    rows = (reuse.all_published(spark, root).where(F.col("model").endswith(f"code={code}"))
            .select(F.concat(F.lit("dt="), "dt", F.lit("/"), "image_id").alias("key"), "code", "label", "embedding")
            .collect())
    index = search.build(code, bits, [(r.key, r.code, r.label, r.embedding) for r in rows])
    write_text_atomically(spark, f"{wh.index(code)}/{search.INDEX_FILE}", index.to_bytes())
    dupes = search.duplicates(index, date, radius)
    df = spark.createDataFrame([tuple(d[c] for c in schemas.columns(schemas.DUPLICATES)) for d in dupes],
                               schemas.DUPLICATES).coalesce(1)
    groups = len({d["group_id"] for d in dupes})
    info = commit(spark, df, wh.table("duplicates", date), wh.staging_root("duplicates", date),
                  wh.new_staging("duplicates", date),
                  lambda written: {"rows": written.count(), "images": len({d["image_id"] for d in dupes}),
                                   "groups": groups, "radius": radius, "code": code,
                                   "index": wh.index(code), "indexed_images": len(index),
                                   "duration_s": round(time.time() - started, 3)})
    return info


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from pyspark.sql import SparkSession

    from imgfeat.spark import StageFailed

    spark = SparkSession.builder.appName(f"imgfeat-index-{args.partition_date}").getOrCreate()
    try:
        info = refresh(spark, Warehouse(args.warehouse_root), args.partition_date, args.duplicate_radius)
    except StageFailed as e:
        print(f"imgfeat index failed: {e}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    print(f"imgfeat index dt={args.partition_date}: " + json.dumps(info))
    return 0

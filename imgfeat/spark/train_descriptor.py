"""train_descriptor: learn the DeepBit code layers from a sample of recent pictures, on Spark with BigDL.

  spark-submit spark_apps/train_descriptor.py --warehouse-root W --code-bits 64 [...]

Two layers of K bits: one for the crops' descriptors (`code`) and one for the whole pictures'
(`picture_code`). For each:
1. sample up to --max-crops distinct pictures (by sha256) of those published in the latest
   --partitions partitions: their crops (cut from the ingested bytes with the published box), or
   the ingested pictures whole;
2. Python workers describe each image and its views: rotations and near-duplicate edits
   (`augment.VIEWS`; the run's backbone, OpenVINO);
3. the driver starts the layer from the sample's whitened principal components (the views'
   differences whitened away: `deepbit.whitened_init`); each of --rounds rounds (default none)
   fixes the binary targets and runs BigDL's distributed optimizer (`imgfeat.deepbit` says why);
4. the layer is written to WAREHOUSE/descriptors/deepbit<K>/<version>.json (the pictures':
   picture-deepbit<K>/), then (with --activate) current.json beside it names it: embed uses it
   from the next run on.
BigDL trains on its default engine (`-Dbigdl.engineType=mklblas`): its MKL-DNN engine only runs
inference graphs (the optimizer's IR conversion fails on it).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from imgfeat import deepbit, descriptor, params, paths
from imgfeat.layout import SUCCESS, Warehouse

ENGINE_TYPE = "mklblas"  # the JVM option this app must be submitted with (bigdl.submit.submit_settings)


def build_parser() -> argparse.ArgumentParser:
    from imgfeat.spark.args import Parser, typed

    p = Parser(prog="spark-submit spark_apps/train_descriptor.py", description=__doc__.split("\n")[0])
    p.add_argument("--warehouse-root", required=True, type=typed(params.warehouse_root))
    p.add_argument("--code-bits", type=typed(params.code_bits), default=params.DEFAULTS["code_bits"],
                   help="code length K to learn (multiple of 8)")
    p.add_argument("--partitions", type=typed(lambda v: params.positive_int(v, "partitions")), default=30,
                   help="sample the pictures of this many latest partitions")
    p.add_argument("--max-crops", type=typed(params.max_crops), default=params.MAX_CROPS,
                   help=f"sample at most this many distinct pictures (at most {params.MAX_CROPS})")
    p.add_argument("--rounds", type=typed(lambda v: params.non_negative_int(v, "rounds")), default=0,
                   help="rounds of DeepBit's BigDL optimizer after the whitened start (default 0: measured in "
                        "make eval, the rounds lowered held-out recall)")
    p.add_argument("--epochs", type=typed(lambda v: params.positive_int(v, "epochs")), default=30,
                   help="BigDL epochs per round")
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--batch-size", type=typed(lambda v: params.positive_int(v, "batch_size")), default=128)
    p.add_argument("--activate", type=typed(params.boolean), default=True, metavar="{true,false}",
                   help="make the new layer the current one (default: true)")
    p.add_argument("--model-dir", default=str(paths.model_dir()), help="converted model directory")
    return p


def sample_images(spark, wh: Warehouse, partitions: int, max_crops: int):
    """Distinct images of the pictures published in the latest partitions -> ({"object": crops,
    "picture": pictures}: DataFrames (sha256, image), the features tables sampled). A crop is cut
    from the ingest checkpoint's bytes with the published box, as the crop stage cut it (the crop
    checkpoint has no crop for rows an incremental run copied, so it cannot be the source); a
    picture is those bytes."""
    from pyspark.sql import functions as F

    from imgfeat.spark.checkpoint import is_committed
    from imgfeat.spark.hadoop import HadoopFS
    from imgfeat.spark import reuse

    fs = HadoopFS(spark)
    root = wh.features_root()
    names = fs.list_names(root) if fs.is_dir(root) else []
    dates = sorted((n[3:] for n in names if n.startswith("dt=") and fs.exists(f"{root}/{n}/{SUCCESS}")), reverse=True)
    dates = [d for d in dates if is_committed(fs, wh.checkpoint("ingest", d))][:partitions]
    if not dates:
        raise ValueError(f"no published partition under {root}: run image_features first")
    published = reuse.all_published(spark, root).where(F.col("dt").isin(dates))
    ingested = None
    for d in dates:
        part = (spark.read.parquet(wh.checkpoint("ingest", d)).where(F.col("content").isNotNull())
                .select("image_id", "content").withColumn("dt", F.lit(d)))
        ingested = part if ingested is None else ingested.unionByName(part)
    rows = (published.join(ingested, ["dt", "image_id"]).dropDuplicates(["sha256"])
            .orderBy(F.xxhash64("sha256")).limit(max_crops)
            .select("sha256", "content", "x1", "y1", "x2", "y2"))

    def cut(it):
        import pandas as pd

        from imgfeat.stages import crop

        for b in it:
            yield pd.DataFrame({"sha256": b["sha256"], "image": [
                crop.cut(c, (x1, y1, x2, y2)) for c, x1, y1, x2, y2 in zip(b["content"], b["x1"], b["y1"], b["x2"], b["y2"])]})

    return ({"object": rows.mapInPandas(cut, "sha256 string, image binary"),
             "picture": rows.select("sha256", F.col("content").alias("image"))},
            [wh.table("features", d) for d in dates])


def describe(spark, images, model_dir: str, described: str = "object"):
    """`images`: a DataFrame (sha256, image bytes: crops, or whole pictures when `described` is
    "picture") -> RDD of (sha256, [views, dim] float32): the descriptors of each of an image's
    `augment.VIEWS` (the image itself first), kept on disk for the training rounds."""
    from pyspark import StorageLevel

    from imgfeat import augment

    views = len(augment.VIEWS)

    def fn(it):
        import pandas as pd

        from imgfeat.engines import get_engine

        engine = get_engine("openvino", model_dir)
        for b in it:
            r = deepbit.view_descriptors(list(b["image"]), engine, described)
            yield pd.DataFrame({"sha256": b["sha256"], "rotated": [x.ravel().tolist() for x in r.transpose(1, 0, 2)]})

    rotated = images.mapInPandas(fn, "sha256 string, rotated array<float>").rdd.map(
        lambda r: (r.sha256, np.asarray(r.rotated, np.float32).reshape(views, -1)))
    return rotated.persist(StorageLevel.DISK_ONLY)


def fit(spark, images, bits: int, model_dir: str, rounds: int = 0, epochs: int = 30,
        learning_rate: float = 0.01, batch_size: int = 128, described: str = "object") -> tuple[np.ndarray, np.ndarray, dict]:
    """Learn the K-bit layer from a DataFrame of images (sha256, image) -> (W, c, report)."""
    views = describe(spark, images, model_dir, described)
    try:
        return fit_described(spark, views, bits, rounds, epochs, learning_rate, batch_size)
    finally:
        views.unpersist()


def fit_described(spark, rotated, bits: int, rounds: int = 0, epochs: int = 30, learning_rate: float = 0.01,
                  batch_size: int = 128) -> tuple[np.ndarray, np.ndarray, dict]:
    """`fit` over `describe`'s RDD (so several code lengths can share one description)."""
    from imgfeat import augment

    pairs = rotated.collect()
    if not pairs:
        raise ValueError("no pictures to learn from")
    keys = [k for k, _ in pairs]
    rot = np.stack([v for _, v in pairs]).transpose(1, 0, 2)
    x0 = rot[0]  # the images themselves (crops or pictures)
    w, c = deepbit.whitened_init(rot, bits)
    objective = []  # per round: [before, after] its optimisation, over all its samples
    if rounds:
        w, c = _rounds(spark, rotated, keys, rot, w, c, rounds, epochs, learning_rate, batch_size, objective)
    return w, c, {"crops": len(keys), **deepbit.report(x0, rot, w, c, list(augment.VIEWS)),
                  "objective_by_round": objective}


def _rounds(spark, rotated, keys, rot, w, c, rounds, epochs, learning_rate, batch_size, objective):
    """DeepBit's rounds with BigDL's distributed optimizer, from the layer (w, c) -> the new layer;
    appends each round's [before, after] objective to `objective`."""
    from bigdl.dllib.nn.criterion import MSECriterion
    from bigdl.dllib.nn.layer import Linear, Sequential, Sigmoid
    from bigdl.dllib.optim.optimizer import Adam, MaxEpoch, Optimizer
    from bigdl.dllib.utils.common import Sample

    from imgfeat.engines.bigdl import runtime as bigdl

    bigdl.init_spark(engine=ENGINE_TYPE)
    x0 = rot[0]
    model = Sequential().add(Linear(x0.shape[1], w.shape[1])).add(Sigmoid())
    model.set_weights([w.T.copy(), c.copy()])
    cores = spark.sparkContext.defaultParallelism
    # BigDL: a multiple of the total cores, and no larger than the data (a small sample gets 2+ batches)
    samples_n = len(keys) * rot.shape[0]
    batch = max(cores, min(batch_size, samples_n // 2) // cores * cores)
    for _ in range(rounds):
        b = deepbit.targets(x0, w, c)
        before = deepbit.objective(rot, b, w, c)
        by_key = spark.sparkContext.broadcast(dict(zip(keys, b)))
        samples = rotated.flatMap(lambda kv: [Sample.from_ndarray(x, by_key.value[kv[0]]) for x in kv[1]])
        model = Optimizer.create(model=model, training_set=samples, criterion=MSECriterion(),
                                 optim_method=Adam(learningrate=learning_rate), end_trigger=MaxEpoch(epochs),
                                 batch_size=batch).optimize()
        weight, bias = model.get_weights()
        w, c = weight.T.astype(np.float32), bias.astype(np.float32)
        by_key.unpersist()
        objective.append([before, deepbit.objective(rot, b, w, c)])
    return w, c


def train(spark, args) -> dict:
    """Learn, write and (with --activate) activate the crops' layer, then the pictures'. -> the
    crops' version and report, and the pictures' under "picture"."""
    from imgfeat.layout import DESCRIBED
    from imgfeat.spark.checkpoint import write_text_atomically

    wh = Warehouse(args.warehouse_root)
    samples, sources = sample_images(spark, wh, args.partitions, args.max_crops)
    out = {}
    for described, images in samples.items():
        w, c, rep = fit(spark, images, args.code_bits, args.model_dir, args.rounds, args.epochs,
                        args.learning_rate, args.batch_size, described)
        version = deepbit.version(args.code_bits, w, c, prefix=DESCRIBED[described])
        info = {"described": described, "trained_on": sources, "rounds": args.rounds, "epochs": args.epochs, **rep}
        write_text_atomically(spark, wh.descriptor_model(args.code_bits, version, described),
                              descriptor.model_json(version, w, c, **info))
        out[described] = {"version": version, "active": args.activate, **info}
    if args.activate:  # both at the end: a run starting meanwhile gets the two earlier layers, or both new
        for described, info in out.items():
            write_text_atomically(spark, wh.current_descriptor(args.code_bits, described),
                                  json.dumps({"version": info["version"]}))
    return {**out["object"], "picture": out["picture"]}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("imgfeat-train_descriptor").getOrCreate()
    try:
        info = train(spark, args)
    except ValueError as e:
        print(f"imgfeat train_descriptor failed: {e}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    print("imgfeat train_descriptor: " + json.dumps(info))
    return 0

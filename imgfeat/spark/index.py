"""index: after a partition is published, write its shard of the similarity index and its
near-duplicates table, as Spark jobs (nothing proportional to the store reaches the driver).

  spark-submit spark_apps/index.py --warehouse-root W --partition-date D [--duplicate-radius R]
                                   [--duplicate-similarity S]

The partition's shard, WAREHOUSE/index/<code>/shards/dt=<date>/ (`imgfeat.search`), is its
image_id, code, label, vector, picture_code and picture_vector (`vector` and `picture_vector`: the
learned object and picture layers' outputs before the sign, float16, which re-rank the search and
verify the duplicates; null for the projection's codes) sorted by image_id, written by one executor and
committed like a checkpoint; it is rewritten only when the partition's features were (their commit
id is recorded), and a shard of the same partition under another code is removed. The duplicates
table, WAREHOUSE/duplicates/dt=<date>/, gives each image of the partition that has a near-duplicate
within Hamming distance R of the whole pictures' codes, and, where both have vectors, a cosine of at
least S between them (its metadata says which code, `described`: picture, or object for a partition
published before the pictures had one), in this or an earlier partition its group and nearest
match (`imgfeat.spark.duplicates`). Then the partition's run report is written again, with its
largest duplicate groups (`imgfeat.spark.report`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from contextlib import contextmanager

from imgfeat import mih, params, search
from imgfeat.layout import SUCCESS, Warehouse

# The duplicates job's shuffles are sized by their biggest side, the probing rows of the MIH join
# (about 50 bytes each) or the store's codes for the scan: this many per task keeps each task's sort
# small in a 1 GB driver.
ROWS_PER_SHUFFLE_PARTITION = 1_000_000
# Hamming radius of a near-duplicate, by what is described, code kind and length: the largest radius
# at which the false-match rate stays at or below 0.1% on the evaluation corpus's tuning split
# (`make eval`, README table; R-MAC descriptors, the learned layer without BigDL rounds).
DUPLICATE_RADIUS = {"picture": {"deepbit": {32: 3, 64: 11, 128: 27}, "simhash": {32: 1, 64: 4, 128: 14}},
                    "object": {"deepbit": {32: 3, 64: 10, 128: 26}, "simhash": {32: 2, 64: 8, 128: 17}}}
# The least cosine of two pictures' vectors (the learned picture layer's outputs before the sign,
# `Coder.vectors`) for a match within VERIFIED_RADIUS, by code length: the one at which 1e-6 of the
# pairs of distinct pictures match (`make eval`'s store-scale rows over 12 million pairs, README),
# rounded up. The 64-bit code alone lets 2.7e-4 of them match at its radius 11 (270 pictures a
# picture in a store of a million); verified, 64-bit recall at 1e-6 is 0.702 (the code alone, radius 5: 0.213).
DUPLICATE_SIMILARITY = {32: 0.927, 64: 0.860, 128: 0.772}
# With the vectors verifying, the radius only gathers the candidates; by code length, the one past
# which make eval's verified recall at 1e-6 a pair grows by less than 0.01 (64 bits: 0.702 / 0.706
# at 14, 0.630 / 0.644 at 11; 2.1e-3 of distinct pairs are candidates, 8x radius 11's).
VERIFIED_RADIUS = {32: 6, 64: 14, 128: 30}
# The index job warns when random codes would give this many chance matches a picture.
CHANCE_WARNING = 0.01


def default_radius(code: str, bits: int, described: str = "object", verified: bool = False) -> int:
    """`code`: a code name (`deepbit<K>-..`, `picture-deepbit<K>-..`: learned; else the projection);
    `verified`: the matches are verified by the pictures' vectors (`VERIFIED_RADIUS`)."""
    if verified and described == "picture" and "deepbit" in code and bits in VERIFIED_RADIUS:
        return VERIFIED_RADIUS[bits]
    by_bits = DUPLICATE_RADIUS[described]["deepbit" if "deepbit" in code else "simhash"]
    return by_bits.get(bits, round(bits * by_bits[64] / 64))


def default_similarity(code: str, bits: int, described: str = "picture") -> float | None:
    """The verifying similarity of a partition's matches (`DUPLICATE_SIMILARITY`): for learned
    picture codes of a measured length, else None (the radius alone)."""
    if described != "picture" or "deepbit" not in code:
        return None
    return DUPLICATE_SIMILARITY.get(bits)


def verifies(similarity: float | None) -> bool:
    """Whether a duplicates table's matches are verified by the pictures' vectors (-1 keeps every pair)."""
    return similarity is not None and similarity > -1


def chance_pairs(bits: int, radius: int, own: int, indexed: int) -> float:
    """Pairs within `radius` expected by chance between `own` and `indexed` uniformly random codes:
    a floor for real codes, which are less uniform. A radius is a false-match rate per pair, so these
    grow with the store (64 bits, r = 11: 5.0e-8 a pair, 0.5 a picture against ten million)."""
    return own * indexed * mih.ball(bits, radius) / 2 ** bits


def chance_warning(info: dict) -> str | None:
    """A line for a duplicates table whose radius matches many pictures by chance (`write_duplicates`'s
    meta), else None. Not where the vectors verify the matches: the radius only gathers candidates
    then (make eval measured the verified matches of distinct pictures: 1e-6 a pair)."""
    own = info.get("own_images") or 0
    if not own or verifies(info.get("similarity")) or info["chance_pairs_if_random"] < CHANCE_WARNING * own:
        return None
    return (f"at radius {info['radius']}, even random codes would match {info['chance_pairs_if_random']:,.0f} pairs "
            f"of this partition's {own:,} pictures by chance against {info['indexed_images']:,} indexed; "
            "set duplicate_radius lower or use longer codes (README: Duplicates)")


def build_parser() -> argparse.ArgumentParser:
    from imgfeat.spark.args import Parser, typed

    p = Parser(prog="spark-submit spark_apps/index.py", description=__doc__.split("\n")[0])
    p.add_argument("--warehouse-root", required=True, type=typed(params.warehouse_root))
    p.add_argument("--partition-date", required=True, type=typed(params.partition_date), help="YYYY-MM-DD")
    p.add_argument("--duplicate-radius", type=typed(lambda v: params.non_negative_int(v, "duplicate_radius")),
                   default=None, help="Hamming radius of a near-duplicate (default: by what is described, code kind and length, "
                                      f"{DUPLICATE_RADIUS}; with the vectors verifying, {VERIFIED_RADIUS})")
    p.add_argument("--duplicate-similarity", type=typed(params.similarity), default=None,
                   help="least cosine of two pictures' vectors (of the learned picture layer) for a match within the "
                        "radius; -1 keeps every one, at the code alone's radius (default: by code length, "
                        f"{DUPLICATE_SIMILARITY}; the radius alone for codes without vectors)")
    return p


def codes_of(model: str) -> dict:
    """The codes a `model` value names: {"object": the crop's, "picture": the picture's or None}."""
    fields = dict(f.split("=", 1) for f in model.split(";") if "=" in f)
    return {"object": fields["code"], "picture": fields.get("picture_code")}


def code_of(model: str) -> str:
    return codes_of(model)["object"]


def write_shard(spark, wh: Warehouse, date: str) -> dict:
    """Commit the partition's shard (unless it is current) and drop its shards of other codes;
    returns the partition's codes ({"object": .., "picture": .. or None}) and their bits."""
    from imgfeat import schemas
    from imgfeat.spark import StageFailed
    from imgfeat.spark.checkpoint import commit, is_committed, read_meta
    from imgfeat.spark.hadoop import HadoopFS

    fs = HadoopFS(spark)
    own = wh.table("features", date)
    if not fs.exists(f"{own}/{SUCCESS}"):
        raise StageFailed(f"features {own} are not published: run image_features for dt={date} first")
    # An explicit schema: features published before the picture's code read it as null.
    features = spark.read.schema(schemas.FEATURES).parquet(own)
    first = features.select("model", "code_bits").first()
    if first is None:
        raise StageFailed(f"features {own} hold no image")
    codes, bits = codes_of(first["model"]), first["code_bits"]
    code = codes["object"]
    features_commit = read_meta(spark, own)["commit_id"]
    coders = {"vector": _learned_coder(spark, wh, code, bits, "object"),
              "picture_vector": _learned_coder(spark, wh, codes["picture"], bits, "picture")}
    has = {"vectors": coders["vector"] is not None, "picture_vectors": coders["picture_vector"] is not None}
    shard = wh.index_shard(code, date)
    current = is_committed(fs, shard) and read_meta(spark, shard)
    if not (current and current.get("features_commit") == features_commit
            and all(current.get(k, False) == v for k, v in has.items())):
        rows = (with_vectors(features.select("image_id", "code", "label", "embedding", "picture_code", "picture_embedding"),
                             coders)
                .repartition(1).sortWithinPartitions("image_id"))
        commit(spark, rows, shard, wh.staging_root("index", date), wh.new_staging("index", date),
               lambda written: {"rows": written.count(), "code": code, "picture_code": codes["picture"], "bits": bits,
                                **has, "partition_date": date, "features_commit": features_commit},
               options={"parquet.block.size": search.SHARD_ROW_GROUP_BYTES})
    for other in fs.list_names(wh.index_root()):  # the partition was re-published with another code
        if other != code and fs.exists(wh.index_shard(other, date)):
            fs.delete(wh.index_shard(other, date))
    return {**codes, "bits": bits}


def _learned_coder(spark, wh: Warehouse, name: str | None, bits: int, described: str):
    """The learned layer that coded the crops or pictures (named in the `model` column), or None:
    the projection's codes, or no picture code, have no vectors to re-rank or verify with."""
    from imgfeat.spark import StageFailed
    from imgfeat.spark.runner import load_coder

    if not name or "deepbit" not in name:
        return None
    try:
        return load_coder(spark, wh, bits, name, described)
    except StageFailed:  # the layer was removed since: no vectors (searches by the code, duplicates unverified)
        return None


# A shard's vector columns, from the features' float descriptors.
VECTOR_OF = {"vector": "embedding", "picture_vector": "picture_embedding"}


def with_vectors(features, coders: dict):
    """`features` with each of `coders`' columns ("vector", "picture_vector": a coder or None) in
    place of its float descriptor (`VECTOR_OF`): the coder's `Coder.vectors`, packed
    (`descriptor.pack_vectors`); null without a learned layer or a descriptor."""
    from pyspark.sql import functions as F

    from imgfeat import descriptor

    learned = {column: coder for column, coder in coders.items() if coder is not None}

    def vectors(batches):
        import numpy as np

        for pdf in batches:
            for column, coder in learned.items():
                source = pdf[VECTOR_OF[column]]
                out = [None] * len(pdf)
                have = [i for i, e in enumerate(source) if e is not None and len(e)]
                if have:
                    packed = descriptor.pack_vectors(coder.vectors(np.stack(source.iloc[have].to_list())))
                    for i, v in zip(have, packed):
                        out[i] = v
                pdf = pdf.assign(**{column: out})
            yield pdf.drop(columns=[VECTOR_OF[c] for c in learned])

    sources = [VECTOR_OF[c] for c in coders]
    kept = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in features.schema.fields if f.name not in sources)
    if learned:
        features = features.drop(*[VECTOR_OF[c] for c in coders if c not in learned])
        features = features.mapInPandas(vectors, kept + "".join(f", {c} binary" for c in learned))
    else:
        features = features.drop(*sources)
    return features.select("*", *[F.lit(None).cast("binary").alias(c) for c in coders if c not in learned])


def write_duplicates(spark, wh: Warehouse, date: str, codes: dict, bits: int, radius: int | None = None,
                     similarity: float | None = None) -> dict:
    """Commit the partition's duplicates table from the shards of its index up to `date`: by the
    pictures' code (shards written with the same one), or by the crops' code for a partition
    published before the picture's code existed. `radius` None: `default_radius`; `similarity`
    None: `default_similarity` (pictures' matches verified by their vectors where they have them)."""
    from pyspark.sql import functions as F

    from imgfeat import schemas
    from imgfeat.spark.checkpoint import commit, read_meta
    from imgfeat.spark.duplicates import near_duplicates, plan
    from imgfeat.spark.hadoop import HadoopFS

    fs = HadoopFS(spark)
    described = "picture" if codes.get("picture") else "object"
    code = codes[described]
    if described != "picture":
        similarity = None  # the crops' codes have no vectors in the shard
    elif similarity is None:
        similarity = default_similarity(code, bits, described)
    radius = default_radius(code, bits, described, verifies(similarity)) if radius is None else radius
    shards = wh.index_shards(codes["object"])
    dates = sorted(n[3:] for n in fs.list_names(shards) if n.startswith("dt=") and fs.exists(f"{shards}/{n}/{SUCCESS}"))
    metas = {d: read_meta(spark, f"{shards}/dt={d}") for d in dates if d <= date}
    if described == "picture":  # only shards whose pictures have the same code compare
        metas = {d: m for d, m in metas.items() if m.get("picture_code") == code}
    rows = {d: m["rows"] for d, m in metas.items()}
    indexed = sum(rows.values())
    own = rows.get(date, 0)
    how = plan(bits, radius, own, indexed)
    # the join's rows: the probing codes' and the store's substrings; the scan's: the store's codes
    probing = max(how["rows"], indexed * how["m"]) if how["method"] == "mih" else indexed
    settings = {
        # Shuffles sized by the rows (Spark's default, 200, makes a small store pay 200 tasks a
        # stage; too few make sorts that do not fit a task's memory).
        "spark.sql.shuffle.partitions": max(spark.sparkContext.defaultParallelism,
                                            math.ceil(probing / ROWS_PER_SHUFFLE_PARTITION)),
    }
    column = {"picture": "picture_code", "object": "code"}[described]
    vector = F.col("picture_vector") if similarity is not None else F.lit(None).cast("binary")
    with _session_conf(spark, settings):
        history = (spark.read.schema(f"{search.SHARD_DUPLICATES_SCHEMA}, dt string").option("basePath", shards)
                   .parquet(*[f"{shards}/dt={d}" for d in rows])
                   .select("dt", "image_id", F.col(column).alias("code"), vector.alias("vector"))
                   .where(F.col("code").isNotNull()))
        dupes = near_duplicates(history, date, bits, radius, indexed, how["method"], similarity).coalesce(1)
        return commit(spark, dupes.select(*schemas.columns(schemas.DUPLICATES)), wh.table("duplicates", date),
                      wh.staging_root("duplicates", date), wh.new_staging("duplicates", date),
                      lambda written: {"rows": written.count(), "images": written.count(),
                                       "groups": written.select("group_id").distinct().count(), "radius": radius,
                                       "method": how["method"],
                                       "own_images": own,
                                       "chance_pairs_if_random": round(chance_pairs(bits, radius, own, indexed), 3),
                                       "similarity": similarity,
                                       "described": described, "code": code, "index": wh.index(codes["object"]),
                                       "indexed_images": indexed})


@contextmanager
def _session_conf(spark, settings: dict):
    """The session's SQL settings changed for the block, then restored."""
    before = {k: spark.conf.get(k, None) for k in settings}
    for k, v in settings.items():
        spark.conf.set(k, str(v))
    try:
        yield
    finally:
        for k, v in before.items():
            spark.conf.unset(k) if v is None else spark.conf.set(k, v)


def refresh(spark, wh: Warehouse, date: str, radius: int | None = None, similarity: float | None = None) -> dict:
    started = time.time()
    shard = write_shard(spark, wh, date)
    shard_s = time.time() - started
    info = write_duplicates(spark, wh, date, shard, shard["bits"], radius, similarity)
    from imgfeat.spark import report

    report.write_safely(spark, wh, date, duplicates=True)  # the run report, now with its duplicate groups
    return {**info, "shard_s": round(shard_s, 3), "duration_s": round(time.time() - started, 3)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from pyspark.sql import SparkSession

    from imgfeat.spark import StageFailed

    spark = SparkSession.builder.appName(f"imgfeat-index-{args.partition_date}").getOrCreate()
    try:
        info = refresh(spark, Warehouse(args.warehouse_root), args.partition_date, args.duplicate_radius,
                       args.duplicate_similarity)
    except StageFailed as e:
        print(f"imgfeat index failed: {e}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    print(f"imgfeat index dt={args.partition_date}: " + json.dumps(info))
    warning = chance_warning(info)
    if warning:
        print(f"imgfeat index dt={args.partition_date}: {warning}")
    return 0

"""`make bench BENCH_ARGS=--scale`: the index, near-duplicates, reuse and `similar` at 1 and 10
million published rows, with the peak memory of every process.

The store is synthetic and has no pixels; Spark generates it, so nothing passes through the driver:
100,000 rows a partition, 64-bit codes (random, except planted near-duplicate groups: 2% of the
rows, in groups of 10 codes within 2 bits of each other), sha256s with planted repeats (2%),
image_ids of about 75 characters and an 8-float embedding (the index never reads it; 1280 floats
would make 10 million rows 50 GB). It is kept under var/bench/scale/ and reused.

For each size, every partition but the last gets its index shard in one setup job, then, on
local[2] with Spark's default driver memory (1 GB):
  add      `index.refresh` of the last partition: its shard, then its duplicates against the store
  reuse    `reuse.mark` of 100,000 new rows (2% of them already published) against the store
  similar  200 queries of `similar`'s search over every shard, in this process: p50 and p99
and the peak RSS of the Spark JVM (driver and executor threads in local mode), of the largest
Python worker and of this process. Exactness, on the first partition (100,000 rows): the duplicates
equal brute force (faiss's exhaustive range search), and `similar` returns what a flat scan does.

`run_verified` (`make bench BENCH_ARGS="--scale-verified --scale-rows 1000000"`): the duplicates at
the learned 64-bit radius with verification (`index.VERIFIED_RADIUS`, 14) over codes as crowded as
learned ones: each within 6 random bits of one of as many centres as make as many distinct pairs
candidates as `make eval` measured at that radius (CANDIDATES), with random vectors (2% planted in
groups of 10 with near codes and vectors); the partition added with the vectors' verification
(`index.DUPLICATE_SIMILARITY`), and with `alone` (`--scale-alone`) by the radius alone, given at
most `limit_s` seconds.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from imgfeat import paths

PER_PARTITION = 100_000
CODE = "simhash64c-scale"
MODEL = f"synthetic;engine=none;min_score=0.3;picture_code={CODE};code={CODE}"
RADIUS = 5
# The share of distinct pairs make eval measured within the learned 64-bit picture codes' verified
# radius (14; 2.7e-4 within 11). Codes within FLIPS random bits of a centre: two of one centre are
# within 14 bits always (12 at most), so 1 / CANDIDATES centres give that share.
CANDIDATES = 2.1e-3
FLIPS = 6


class PeakRSS:
    """Polls this process and its descendants: the peak RSS of the JVMs, of the largest Python
    worker, and of this process, since the last `reset`."""

    def __init__(self, interval: float = 0.2):
        self.interval, self._stop = interval, threading.Event()
        self.reset()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def reset(self):
        self.peaks = {"jvm": 0, "python_worker": 0, "this_process": 0}

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                self.peaks["this_process"] = max(self.peaks["this_process"], me.memory_info().rss)
                jvm = workers = 0
                for p in me.children(recursive=True):
                    try:
                        name, rss = p.name(), p.memory_info().rss
                    except psutil.Error:
                        continue
                    if name == "java":
                        jvm += rss
                    elif name.startswith("python"):
                        workers = max(workers, rss)
                self.peaks["jvm"] = max(self.peaks["jvm"], jvm)
                self.peaks["python_worker"] = max(self.peaks["python_worker"], workers)
            except psutil.Error:
                pass
            time.sleep(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join(5)


def _spark():
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers' Python: this venv's
    return (SparkSession.builder.master("local[2]").appName("imgfeat-bench-scale")
            .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").getOrCreate())


def _date(p: int) -> str:
    import datetime as dt

    return (dt.date(2025, 1, 1) + dt.timedelta(days=p)).isoformat()


def generate(spark, root: Path, rows: int, per_partition: int = PER_PARTITION) -> list[str]:
    """The synthetic features partitions of `rows` rows (kept and reused); returns their dates."""
    from pyspark.sql import functions as F

    from imgfeat import schemas
    from imgfeat.layout import STAGE_META, SUCCESS, Warehouse

    wh = Warehouse(str(root))
    parts = rows // per_partition
    dates = [_date(p) for p in range(parts)]
    marker = root / ".generated-2"  # -2: with the pictures' codes
    if marker.exists():
        return dates
    planted = (F.col("id") % 1000) < 20  # 2% of the rows, in groups of 10
    # a planted row: its group's code with one bit flipped (the group's codes are within 2 bits)
    code = F.when(planted, F.expr("xxhash64('group', cast(id / 10 as long)) ^ "
                                  "shiftleft(cast(1 as long), cast(pmod(xxhash64('flip', id), 64) as int))"))
    code = code.otherwise(F.xxhash64(F.lit("random"), "id"))
    content = F.when(F.col("id") % 100 < 2, F.col("id") - 50).otherwise(F.col("id"))  # 2% repeat earlier bytes
    df = (spark.range(rows)
          .withColumn("dt", F.date_format(F.date_add(F.lit("2025-01-01").cast("date"),
                                                     (F.col("id") / per_partition).cast("int")), "yyyy-MM-dd"))
          .select(F.concat(F.lit("shop/catalog/"), F.lpad(F.hex(F.xxhash64("id")), 16, "0"),
                           F.lit("/product-photo-"), F.col("id").cast("string"), F.lit("-front-large.jpg")).alias("image_id"),
                  F.sha2(content.cast("string"), 256).alias("sha256"),
                  F.lit(640).alias("width"), F.lit(480).alias("height"),
                  F.element_at(F.array(*[F.lit(x) for x in ("cup", "bottle", "cat", "person", "chair")]),
                               (F.pmod("id", F.lit(5)) + 1).cast("int")).alias("label"),
                  F.lit(0.9).alias("score"), F.lit(10).alias("x1"), F.lit(10).alias("y1"),
                  F.lit(300).alias("x2"), F.lit(300).alias("y2"),
                  F.unhex(F.lpad(F.hex(code), 16, "0")).alias("code"), F.lit(64).alias("code_bits"),
                  F.expr("transform(sequence(1, 8), x -> cast(x * 0.125 as float))").alias("embedding"),
                  # the pictures' codes (what duplicates compare) drawn as the crops'
                  F.unhex(F.lpad(F.hex(code), 16, "0")).alias("picture_code"),
                  F.expr("transform(sequence(1, 8), x -> cast(x * 0.125 as float))").alias("picture_embedding"),
                  F.lit(MODEL).alias("model"), F.lit(None).cast("string").alias("reused_from"), "dt"))
    cols = [*schemas.columns(schemas.FEATURES), "dt"]
    (df.select(*cols).repartition(parts, "dt").sortWithinPartitions("dt", "image_id")
     .write.mode("overwrite").partitionBy("dt").parquet(wh.features_root()))
    for date in dates:
        part = Path(wh.table("features", date))
        (part / SUCCESS).touch()
        (part / STAGE_META).write_text(json.dumps({"commit_id": f"synthetic-{date}", "rows": per_partition}))
    marker.touch()
    return dates


def write_store_shards(spark, root: Path, dates: list[str], per_partition: int = PER_PARTITION) -> None:
    """Shards of every partition in `dates`, in one job (setup, not measured)."""
    from pyspark.sql import functions as F

    from imgfeat import search
    from imgfeat.layout import STAGE_META, SUCCESS, Warehouse

    wh = Warehouse(str(root))
    shards = Path(wh.index_shards(CODE))
    marker = shards / f".written-{len(dates)}-rg{search.SHARD_ROW_GROUP_BYTES}-picture-vector"
    if marker.exists():
        return

    def vectors(batches):  # random unit vectors, float16, as a learned 64-bit layer's (128 bytes)
        for pdf in batches:
            rng = np.random.default_rng(int(pdf["seed"].iloc[0]) & (2**63 - 1) if len(pdf) else 0)
            v = rng.standard_normal((len(pdf), 64)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            yield pdf.drop(columns=["seed"]).assign(vector=[row.tobytes() for row in v.astype("<f2")])

    rows = (spark.read.parquet(wh.features_root()).where(F.col("dt").isin(dates))
            .select(F.col("dt").cast("string").alias("dt"), "image_id", "code", "label", "picture_code",
                    F.xxhash64("image_id").alias("seed")))
    (rows.mapInPandas(vectors, "dt string, image_id string, code binary, label string, picture_code binary, vector binary")
     .repartition(len(dates), "dt").sortWithinPartitions("dt", "image_id")
     .write.option("parquet.block.size", search.SHARD_ROW_GROUP_BYTES)  # as spark/index.py writes them
     .mode("overwrite").partitionBy("dt").parquet(str(shards)))
    for date in dates:
        part = Path(wh.index_shard(CODE, date))
        (part / SUCCESS).touch()
        (part / STAGE_META).write_text(json.dumps({"rows": per_partition, "code": CODE, "picture_code": CODE, "bits": 64,
                                                   "partition_date": date, "features_commit": f"synthetic-{date}"}))
    marker.touch()


def measure_reuse(spark, root: Path, date: str, per_partition: int = PER_PARTITION) -> float:
    """Seconds of `reuse.mark` for a partition of new rows (2% of them published before) against the store."""
    from pyspark.sql import functions as F

    from imgfeat.layout import Warehouse
    from imgfeat.spark import reuse

    wh = Warehouse(str(root))
    new = (spark.range(per_partition)
           .select(F.concat(F.lit("new/"), F.col("id").cast("string"), F.lit(".jpg")).alias("image_id"),
                   F.sha2(F.when(F.col("id") % 50 == 0, (F.col("id") + 10).cast("string"))
                          .otherwise(F.concat(F.lit("new-"), F.col("id").cast("string"))), 256).alias("sha256"),
                   F.lit(None).cast("string").alias("quarantine_stage")))
    started = time.perf_counter()
    marked = reuse.mark(new, reuse.published(spark, wh.features_root(), MODEL), date)
    reused = marked.where(F.col("reused_from").isNotNull()).count()
    seconds = time.perf_counter() - started
    assert reused == per_partition // 50, reused  # the rows whose bytes partition 0 published
    return seconds


def measure_similar(root: Path, queries: int = 200) -> tuple[float, float, float]:
    """(load s, p50 ms, p99 ms) of `similar`'s search over every shard."""
    from imgfeat import search

    started = time.perf_counter()
    index = search.load_index(str(root), code=CODE)
    loaded = time.perf_counter() - started
    rng = np.random.default_rng(1)
    times = []
    for q in rng.integers(0, 256, (queries, 8), dtype=np.uint8):
        t = time.perf_counter()
        index.search(q, 10)
        times.append(time.perf_counter() - t)
    return loaded, float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000)


def measure_reranked(root: Path, last: str, queries: int = 200) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, rows) of `similar`'s default search, its `RERANK_CANDIDATES` nearest re-ranked
    by their vectors (read by row group from the shards), over the setup's shards: every partition
    but `last`, whose shard the add wrote from the projection's code, without vectors. A fresh index
    (no row group cached yet), as a new `similar` command has."""
    from imgfeat import search

    full = search.load_index(str(root), code=CODE)
    index = search.Index(CODE, 64, [s for s in full.shards if s.date != last], full.features_root)
    rng = np.random.default_rng(2)
    times = []
    for q in rng.integers(0, 256, (queries, 8), dtype=np.uint8):
        v = rng.standard_normal(64).astype(np.float32)
        t = time.perf_counter()
        hits = index.search(q, 10, vector=v / np.linalg.norm(v))
        times.append(time.perf_counter() - t)
        assert hits[0]["reranked_by"] == "vectors", hits[0]
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000), len(index)


def check_exactness(spark, root: Path, date: str, radius: int = RADIUS) -> dict:
    """On one partition's 100,000 rows: the duplicates against faiss's exhaustive range search, and
    `similar`'s hits against a flat scan."""
    import faiss
    from pyspark.sql import functions as F
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from imgfeat import search
    from imgfeat.layout import Warehouse
    from imgfeat.spark.duplicates import near_duplicates

    wh = Warehouse(str(root))
    shard = spark.read.parquet(wh.index_shard(CODE, date)).select("image_id", "code")
    rows = sorted((r.image_id, bytes(r.code)) for r in shard.collect())  # 100k rows: the check's own oracle
    keys = [f"dt={date}/{i}" for i, _ in rows]
    codes = np.frombuffer(b"".join(c for _, c in rows), np.uint8).reshape(-1, 8)
    flat = faiss.IndexBinaryFlat(64)
    flat.add(codes)
    lims, dist, idx = flat.range_search(codes, radius + 1)  # exhaustive: every pair within radius
    src = np.repeat(np.arange(len(keys)), np.diff(lims.astype(np.int64)))
    keep = src != idx
    src, idx, dist = src[keep], idx[keep], dist[keep]
    n = len(keys)
    _, comp = connected_components(coo_matrix((np.ones(len(src)), (src, idx)), shape=(n, n)), directed=False)
    name = {}
    for i in sorted(set(src.tolist())):  # keys are sorted: the first member seen names the group
        name.setdefault(comp[i], keys[i])
    best = {}
    for i, j, d in zip(src.tolist(), idx.tolist(), dist.tolist()):
        cand = (d, keys[j])
        if i not in best or cand < best[i]:
            best[i] = cand
    expected = sorted((keys[i][len(f"dt={date}/"):], name[comp[i]], m[3:13], m[14:], d) for i, (d, m) in best.items())
    history = shard.select(F.lit(date).alias("dt"), "image_id", "code")
    duplicates_exact = {method: sorted(tuple(r) for r in near_duplicates(history, date, 64, radius, method=method).collect())
                        == expected for method in ("mih", "scan")}

    index = search.load_index(str(root), code=CODE)
    one = search.Index(CODE, 64, [s for s in index.shards if s.date == date], index.features_root)
    rng = np.random.default_rng(2)
    similar_exact = True
    for q in np.concatenate([codes[rng.integers(0, n, 10)], rng.integers(0, 256, (10, 8), dtype=np.uint8)]):
        d = np.unpackbits(codes ^ q, axis=1).sum(axis=1)
        want = sorted(zip(d.tolist(), keys))[:10]
        similar_exact &= [(h["hamming"], h["key"]) for h in one.search(q, 10)] == want
    return {"rows": n, "duplicate_images": len(expected), "duplicates_exact": duplicates_exact,
            "similar_exact": similar_exact}


def run(sizes: list[int], per_partition: int = PER_PARTITION, base: Path | None = None, spark=None,
        radius: int = RADIUS) -> dict:
    """Measures each size; returns the report (also written to <base>/report.json). `spark`: a
    session to use (kept open), else a local[2] one of its own. `radius`: the duplicates' Hamming radius."""
    from imgfeat import search
    from imgfeat.layout import Warehouse
    from imgfeat.spark.index import refresh

    base = Path(base or paths.var_dir() / "bench" / "scale")
    print(f"scale: synthetic stores of {', '.join(f'{n:,}' for n in sizes)} published rows, "
          f"{per_partition:,} a partition; duplicates within Hamming {radius}; local[2], default driver memory "
          "(log: Spark's console)", flush=True)
    own_session = spark is None
    spark = spark or _spark()
    monitor = PeakRSS()
    results = []
    try:
        for rows in sizes:
            root = base / f"{rows}"
            t = time.perf_counter()
            dates = generate(spark, root, rows, per_partition)
            write_store_shards(spark, root, dates[:-1], per_partition)
            print(f"  {rows:,} rows: store ready in {time.perf_counter() - t:.0f}s", flush=True)
            monitor.reset()
            t = time.perf_counter()
            info = refresh(spark, Warehouse(str(root)), dates[-1], radius)
            add = time.perf_counter() - t
            add_peaks = dict(monitor.peaks)
            monitor.reset()
            reuse_s = measure_reuse(spark, root, dates[-1], per_partition)
            reuse_peaks = dict(monitor.peaks)
            monitor.reset()
            loaded, p50, p99 = measure_similar(root)
            rerank_p50, rerank_p99, reranked_rows = measure_reranked(root, dates[-1])
            similar_peaks = dict(monitor.peaks)
            result = {"rows": rows, "method": info["method"], "add_s": round(add, 1), "shard_s": info["shard_s"], "duplicate_images": info["rows"],
                      "indexed_images": info["indexed_images"], "reuse_s": round(reuse_s, 1),
                      "similar_load_s": round(loaded, 2), "similar_p50_ms": round(p50, 1), "similar_p99_ms": round(p99, 1),
                      "reranked": {"rows": reranked_rows, "p50_ms": round(rerank_p50, 1), "p99_ms": round(rerank_p99, 1)},
                      "peak_rss_mb": {"add": {k: v >> 20 for k, v in add_peaks.items()},
                                      "reuse": {k: v >> 20 for k, v in reuse_peaks.items()},
                                      "similar": {k: v >> 20 for k, v in similar_peaks.items()}}}
            results.append(result)
            print("  " + json.dumps(result), flush=True)
        exact = check_exactness(spark, base / f"{sizes[0]}", _date(0), radius)
    finally:
        monitor.stop()
        if own_session:
            spark.stop()
    print()
    print(f"{'rows':>12}{'method':>8}{'add s':>8}{'reuse s':>9}{'p50 ms':>8}{'p99 ms':>8}{'reranked p50/p99':>18}"
          f"{'JVM MB':>8}{'worker MB':>11}{'similar MB':>12}")
    for r in results:
        jvm = max(p["jvm"] for p in r["peak_rss_mb"].values())
        worker = max(p["python_worker"] for p in r["peak_rss_mb"].values())
        rr = f"{r['reranked']['p50_ms']:.1f}/{r['reranked']['p99_ms']:.1f}"
        print(f"{r['rows']:>12,}{r['method']:>8}{r['add_s']:>8.1f}{r['reuse_s']:>9.1f}{r['similar_p50_ms']:>8.1f}"
              f"{r['similar_p99_ms']:>8.1f}{rr:>18}{jvm:>8}{worker:>11}{r['peak_rss_mb']['similar']['this_process']:>12}")
    print(f"reranked: the {search.RERANK_CANDIDATES} nearest codes ordered by their vectors, over every partition but "
          "the one added (its shard has the projection's code, no vectors)")
    if len(results) > 1:
        a, b = results[0], results[-1]
        jvm = [max(p["jvm"] for p in r["peak_rss_mb"].values()) for r in (a, b)]
        print(f"{b['rows'] // a['rows']}x the rows: add {b['add_s'] / a['add_s']:.2f}x, reuse "
              f"{b['reuse_s'] / a['reuse_s']:.2f}x, similar p50 {b['similar_p50_ms'] / a['similar_p50_ms']:.2f}x, "
              f"JVM peak RSS {jvm[1] / jvm[0]:.2f}x")
    print(f"exactness on {exact['rows']:,} rows: duplicates by "
          + ", ".join(f"{m} {'equal' if ok else 'DIFFER FROM'}" for m, ok in exact['duplicates_exact'].items())
          + f" brute force ({exact['duplicate_images']} images); similar "
          f"{'equals' if exact['similar_exact'] else 'DIFFERS FROM'} a flat scan")
    report = {"radius": radius, "results": results, "exactness": exact}
    (base / "report.json").write_text(json.dumps(report, indent=2))
    print(f"report: {base / 'report.json'}")
    return report


def generate_clustered(spark, root: Path, rows: int, per_partition: int, centres: int) -> Path:
    """(dt, image_id, code, vector) of `rows` clustered codes (kept and reused): 2% planted in groups
    of 10 (a group's code with one bit flipped, its vector plus 20% noise), the rest within FLIPS
    random bits of one of `centres` codes, with random vectors."""
    import pandas as pd
    from pyspark.sql import functions as F

    path = root / f"clustered-{rows}-{per_partition}-{centres}"
    if (path / "_SUCCESS").exists():
        return path
    flips = " ^ ".join(f"shiftleft(cast(1 as long), cast(pmod(xxhash64('f{k}', id), 64) as int))" for k in range(FLIPS))
    planted = (F.col("id") % 1000) < 20
    code = (F.when(planted, F.expr("xxhash64('group', cast(id / 10 as long)) ^ "
                                   "shiftleft(cast(1 as long), cast(pmod(xxhash64('flip', id), 64) as int))"))
            .otherwise(F.expr(f"xxhash64('centre', pmod(id, {centres})) ^ ({flips})")))
    df = spark.range(rows).select(
        "id", F.date_format(F.date_add(F.lit("2025-01-01").cast("date"), (F.col("id") / per_partition).cast("int")),
                            "yyyy-MM-dd").alias("dt"),
        F.concat(F.lit("img-"), F.col("id").cast("string")).alias("image_id"),
        F.unhex(F.lpad(F.hex(code), 16, "0")).alias("code"), planted.alias("planted"))

    def vectors(batches):
        from imgfeat import descriptor

        for pdf in batches:
            ids = pdf["id"].to_numpy()
            v = np.random.default_rng(int(ids[0]) if len(ids) else 0).standard_normal((len(ids), 64))
            for k in np.where(pdf["planted"].to_numpy())[0]:  # the group's vector, plus noise
                v[k] = np.random.default_rng(10**9 + int(ids[k]) // 10).standard_normal(64) + 0.2 * v[k]
            yield pd.DataFrame({"dt": pdf["dt"], "image_id": pdf["image_id"], "code": pdf["code"],
                                "vector": descriptor.pack_vectors(descriptor.l2_normalize(v))})

    (df.mapInPandas(vectors, "dt string, image_id string, code binary, vector binary")
     .write.mode("overwrite").partitionBy("dt").parquet(str(path)))
    return path


def _within(limit_s: float, spark, job):
    """(job's result, seconds), or (None, None) when it took longer than `limit_s`: cancelled."""
    sc = spark.sparkContext
    sc.setJobGroup("bench-verified", "bench: duplicates", interruptOnCancel=True)
    timer = threading.Timer(limit_s, sc.cancelJobGroup, ["bench-verified"])
    timer.start()
    started = time.perf_counter()
    try:
        return job(), time.perf_counter() - started
    except Exception:  # noqa: BLE001 -- cancelled: Py4J's error for the killed job
        if time.perf_counter() - started >= limit_s:
            return None, None
        raise
    finally:
        timer.cancel()
        sc.setLocalProperty("spark.jobGroup.id", None)


def run_verified(sizes: list[int], per_partition: int = PER_PARTITION, base: Path | None = None, spark=None,
                 centres: int | None = None, radius: int | None = None, limit_s: float = 600,
                 alone: bool = False) -> dict:
    """The last partition's duplicates over each size of clustered store, verified by the vectors
    and (with `alone`) by the radius alone; returns the report (also <base>/verified.json).
    `centres` None: as many as give CANDIDATES at `radius` (None: the verified 64-bit radius)."""
    from imgfeat.spark.duplicates import near_duplicates
    from imgfeat.spark.index import DUPLICATE_SIMILARITY, VERIFIED_RADIUS

    similarity = DUPLICATE_SIMILARITY[64]
    radius = VERIFIED_RADIUS[64] if radius is None else radius
    base = Path(base or paths.var_dir() / "bench" / "scale")
    rng = np.random.default_rng(0)  # the odds that two codes of one centre are within the radius
    pos = rng.integers(0, 64, (2, 200_000, FLIPS))
    masks = [np.bitwise_xor.reduce(np.left_shift(np.uint64(1), p.astype(np.uint64)), axis=1) for p in pos]
    same = float(np.mean(np.unpackbits((masks[0] ^ masks[1]).view(np.uint8).reshape(-1, 8), axis=1).sum(1) <= radius))
    centres = centres or round(same / CANDIDATES)
    print(f"verified: clustered stores of {', '.join(f'{n:,}' for n in sizes)} rows ({centres:,} centres: "
          f"{same / centres:.1e} of distinct pairs within {radius} bits), {per_partition:,} a partition; "
          f"duplicates within {radius} bits verified at cosine {similarity}"
          + (f", and by the radius alone (at most {limit_s:.0f} s)" if alone else "") + "; local[2]", flush=True)
    own_session = spark is None
    spark = spark or _spark()
    from pyspark.sql import functions as F

    results = []
    try:
        for rows in sizes:
            history = spark.read.parquet(str(generate_clustered(spark, base, rows, per_partition, centres)))
            last = _date(rows // per_partition - 1)
            result = {"rows": rows, "candidates_a_picture": round(same / centres * rows, 1)}
            for name, sim in (("verified", similarity), ("radius_alone", None))[:2 if alone else 1]:
                def job():
                    found = near_duplicates(history, last, 64, radius, indexed=rows, method="scan", similarity=sim)
                    ids = found.select(F.expr("cast(substring(image_id, 5) as long) % 1000 < 20").alias("planted"))
                    return ids.agg(F.count("*").alias("images"),
                                   F.sum(F.col("planted").cast("int")).alias("planted")).first().asDict()
                if sim is None:  # by the radius alone it may not finish: cancelled after limit_s
                    got, seconds = _within(limit_s, spark, job)
                else:
                    started = time.perf_counter()
                    got, seconds = job(), time.perf_counter() - started
                result[name] = {"seconds": None if seconds is None else round(seconds, 1),
                                "duplicate_images": got and got["images"], "planted_found": got and got["planted"]}
                print(f"  {rows:,} rows, {name}: " + (f"{got['images']:,} duplicate images ({got['planted']:,} of "
                                                      f"the {per_partition // 50:,} planted) in {seconds:.1f} s"
                                                      if got else f"not finished in {limit_s:.0f} s"), flush=True)
            results.append(result)
    finally:
        if own_session:
            spark.stop()
    report = {"radius": radius, "similarity": similarity, "centres": centres, "results": results}
    (base / "verified.json").write_text(json.dumps(report, indent=2))
    print(f"report: {base / 'verified.json'}")
    return report

"""`make bench`: stage and end-to-end throughput on real photos, next to the bare models.

Three measurements in one run, on the same partition (>= 200 images built from real photos):
  bare     one plain Python process, no Spark: decode/validate, detect, crop, embed with the same
           engine and batch size (the ceiling of the models on this machine);
  spark    each stage's spark-submit, as the DAG runs it: wall time (with JVM start, Python
           workers, model load); then each stage again in one warm SparkSession (workers and models
           loaded): the steady state. fixed = wall - warm, and its parts from Spark's event log
           of each spark-submit (launch, driver outside jobs, jobs over warm, stop);
  airflow  the whole DAG through `airflow dags test` (adds Airflow's own overhead).
Ratios compare in-stage Spark throughput with the bare ceiling. Timings vary on shared machines:
read the ratios, not the absolute numbers. With several engines (the default: openvino and bigdl),
each is measured in its own process (a JVM keeps the jars it started with) and a last table sets
them side by side. Then OpenVINO's other precisions (bf16) against f32 on the same photos: speed
and agreement (devtools/agreement.py). Last, `similar`'s search over a million codes of 32, 64 and
128 bits (`--search` runs only that).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from imgfeat import decode, descriptor, params, paths
from imgfeat.engines import INPUT_SIZE, get_engine, stage_submit_settings
from imgfeat.layout import STAGES, input_partition
from imgfeat.packaging import build_zip

BENCH_DATE = "2026-10-01"


def build_input(count: int) -> Path:
    from devtools import sample_photos

    root = paths.var_dir() / "bench" / "input"
    part = Path(input_partition(str(root), BENCH_DATE))
    marker = root / f".built-{count}"
    if not marker.exists():
        shutil.rmtree(part, ignore_errors=True)
        sample_photos.build_partition(part, count, seed=7)
        marker.touch()
    return root


def photo_files(root: Path) -> list[Path]:
    """The pictures of the bench partition under `root` (build_input's), in a stable order."""
    return sorted(p for p in Path(input_partition(str(root), BENCH_DATE)).rglob("*") if p.is_file())


def bare(files: list[Path], engine_name: str, model_dir: str, batch: int, threshold: float, bits: int) -> dict:
    """The same work in one process without Spark; seconds per step."""
    from imgfeat.stages import embed
    from imgfeat.stages.crop import crop_row
    from imgfeat.stages.detect import to_pixels

    if engine_name == "bigdl":
        from imgfeat.engines.bigdl import runtime as bigdl

        # One JVM holds the bare models and then the warm stages (local mode): more than the
        # operator's 3 GB driver.
        bigdl.init_spark(driver_memory="6g")
    engine = get_engine(engine_name, model_dir, 0)
    engine.detect(np.zeros((batch, INPUT_SIZE, INPUT_SIZE, 3), np.uint8))  # warm-up
    t = {"ingest": 0.0, "detect": 0.0, "crop": 0.0, "embed": 0.0}
    for i in range(0, len(files), batch):
        chunk = [f.read_bytes() for f in files[i:i + batch]]
        s = time.perf_counter()
        infos = [decode.inspect(c) for c in chunk]
        _ = [hashlib.sha256(c).hexdigest() for c in chunk]
        t["ingest"] += time.perf_counter() - s
        s = time.perf_counter()
        x = np.stack([decode.resize(decode.decode_rgb(c), INPUT_SIZE) for c in chunk])
        dets = [(to_pixels(d, info.width, info.height, threshold), descriptor.l2_normalize(d.picture[None])[0])
                for d, info in zip(engine.detect(x), infos)]
        t["detect"] += time.perf_counter() - s
        s = time.perf_counter()
        crops = [crop_row({"image_id": "", "sha256": "", "width": info.width, "height": info.height,
                           "content": c, "detections": d, "picture_embedding": p, "quarantine_stage": None,
                           "quarantine_reason": None})
                 for c, (d, p), info in zip(chunk, dets, infos)]
        t["crop"] += time.perf_counter() - s
        s = time.perf_counter()
        rows, pending, pixels = embed.prepare(crops)  # each crop (the picture was described by detect)
        embed.finish([rows[i] for i in pending], engine.features(np.stack(pixels)), bits)
        t["embed"] += time.perf_counter() - s
    return t


def _engine_submit_args(engine: str, stage: str, archive: bool = True) -> list[str]:
    """What the operator adds (its worker reuse, the engine's settings of
    imgfeat.engines.stage_submit_settings, the driver's class archive of imgfeat.jvm), as flags."""
    from imgfeat import jvm

    s = stage_submit_settings(stage, engine) or {}
    conf = {"spark.python.worker.reuse": "true", **s.get("conf", {})}
    if archive:
        conf = jvm.with_driver_options(conf, s.get("driver_class_path", ""))
    flags = [x for k, v in conf.items() for x in ("--conf", f"{k}={v}")]
    if s:
        flags += ["--jars", s["jars"], "--driver-class-path", s["driver_class_path"],
                  "--driver-memory", s["driver_memory"]]
    return flags


def spark_stages(input_root: Path, warehouse: Path, args: list[str], env: dict, engine: str,
                 archive: bool = True, events: Path | None = None) -> dict:
    """stage -> (wall s, the stage's own duration_s, its `submit_parts` or None); with `events`,
    each spark-submit writes Spark's event log into `events/<stage>/`."""
    out = {}
    for stage in STAGES:
        log = []
        if events:
            (events / stage).mkdir(parents=True)
            log = ["--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={(events / stage).as_uri()}"]
        cmd = ["spark-submit", "--master", os.environ.get("IMGFEAT_SPARK_MASTER", "local[2]"),
               *_engine_submit_args(engine, stage, archive), *log,
               "--py-files", str(build_zip()), str(paths.REPO / "spark_apps" / f"{stage}.py"),
               "--partition-date", BENCH_DATE, "--input-root", str(input_root),
               "--warehouse-root", str(warehouse), *args]
        started = time.time()
        s = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - s
        if stage == "publish":
            meta = json.loads((warehouse / "runs" / f"dt={BENCH_DATE}" / "manifest.json").read_text())
            inside = meta["stages"]["publish"]["duration_s"]
        else:
            inside = json.loads((warehouse / stage / f"dt={BENCH_DATE}" / "_stage.json").read_text())["duration_s"]
        out[stage] = (wall, inside, submit_parts(events / stage, started, started + wall) if events else None)
    return out


def submit_parts(log_dir: Path, submitted: float, exited: float) -> dict:
    """Where a spark-submit (run from `submitted` to `exited`, epoch s) spent its time, from the one
    event log Spark wrote into `log_dir`: `launch` (JVM, Python, SparkContext), `driver` (the app
    outside Spark jobs: lease, listings, metadata, renames), `jobs` (Spark jobs, with the Python
    workers' start and model load; `count` of them), `stop` (to the exit)."""
    (log_file,) = log_dir.iterdir()  # named after the application id
    app, jobs = {}, {}
    with open(log_file) as f:
        for line in f:
            e = json.loads(line)
            if e["Event"] in ("SparkListenerApplicationStart", "SparkListenerApplicationEnd"):
                app[e["Event"]] = e["Timestamp"] / 1000
            elif e["Event"] == "SparkListenerJobStart":
                jobs[e["Job ID"]] = [e["Submission Time"] / 1000, None]
            elif e["Event"] == "SparkListenerJobEnd":
                jobs[e["Job ID"]][1] = e["Completion Time"] / 1000
    start, end = app["SparkListenerApplicationStart"], app["SparkListenerApplicationEnd"]
    in_jobs = sum(b - a for a, b in jobs.values() if b is not None)
    return {"launch": start - submitted, "driver": end - start - in_jobs, "jobs": in_jobs,
            "stop": exited - end, "count": len(jobs)}


def warm_stages(input_root: Path, warehouse: Path, args: list[str], engine: str) -> dict:
    """Each stage run twice in one SparkSession; the second run's time is the steady state."""
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    from imgfeat.spark.runner import parse, run

    master = os.environ.get("IMGFEAT_SPARK_MASTER", "local[2]")
    if engine == "bigdl":
        from imgfeat.engines.bigdl.submit import spark_conf

        conf = spark_conf(master)
    else:
        conf = SparkConf().setMaster(master)
    spark = (SparkSession.builder.config(conf=conf)
             .config("spark.ui.showConsoleProgress", "false").config("spark.python.worker.reuse", "true")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    a = parse("detect", ["--partition-date", BENCH_DATE, "--input-root", str(input_root),
                         "--warehouse-root", str(warehouse), *args])
    out = {}
    try:
        for stage in STAGES:
            run(spark, stage, a)
            s = time.perf_counter()
            run(spark, stage, a)
            out[stage] = time.perf_counter() - s
    finally:
        spark.stop()
    return out


def bench_search(n: int, queries: int = 200, k: int = 10, shards: int = 10) -> int:
    """`similar`'s search over n indexed codes in `shards` partitions (`search.Index`: each shard
    searched exhaustively by faiss IndexBinaryFlat, then merged): its time depends on the count and
    length of the codes, not on their values (random here)."""
    import tempfile

    import numpy as np
    import pyarrow.parquet as pq

    from imgfeat import search
    from imgfeat.layout import SUCCESS, Warehouse

    rng = np.random.default_rng(0)
    print(f"search: {n} indexed codes in {shards} shards, {queries} queries, top {k}, exhaustive Hamming "
          "(faiss IndexBinaryFlat per shard)")
    print(f"{'bits':>5}{'load s':>9}{'ms/query':>10}{'queries/s':>11}{'codes MB':>10}")
    for bits in (32, 64, 128):
        with tempfile.TemporaryDirectory(prefix="imgfeat-bench-search-") as root:
            code = f"simhash{bits}c-bench"
            per_shard = n // shards
            for s in range(shards):
                codes = rng.integers(0, 256, (per_shard, bits // 8), dtype=np.uint8)
                ids = [f"img{i:08d}.jpg" for i in range(per_shard)]
                shard = Path(Warehouse(root).index_shard(code, f"2026-01-{s + 1:02d}"))
                shard.mkdir(parents=True)
                pq.write_table(search.shard_table(zip(ids, codes, [None] * per_shard)), shard / "part-00000.parquet")
                (shard / SUCCESS).touch()
            started = time.perf_counter()
            index = search.load_index(root, code=code)
            loaded = time.perf_counter() - started
            q = rng.integers(0, 256, (queries, bits // 8), dtype=np.uint8)
            started = time.perf_counter()
            for c in q:
                index.search(c, k)
            per = (time.perf_counter() - started) / queries
            print(f"{bits:>5}{loaded:>9.2f}{per * 1000:>10.1f}{1 / per:>11.0f}{len(index) * bits / 8 / 2**20:>10.1f}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=240)
    ap.add_argument("--batch-size", type=int, default=params.DEFAULTS["batch_size"])
    ap.add_argument("--engines", default="openvino,bigdl",
                    help="comma-separated engines, each measured in its own process, then compared")
    ap.add_argument("--engine", help=argparse.SUPPRESS)  # one engine, in this process
    ap.add_argument("--summary", help=argparse.SUPPRESS)  # where that process writes its figures
    ap.add_argument("--skip-airflow", action="store_true", help="no end-to-end run through Airflow")
    ap.add_argument("--search", action="store_true",
                    help="only the similarity search: a million codes, exhaustive Hamming search")
    ap.add_argument("--search-codes", type=int, default=1_000_000, help=argparse.SUPPRESS)
    ap.add_argument("--precisions", default="bf16",
                    help="OpenVINO precisions compared with f32 on the bench's photos: speed and agreement")
    ap.add_argument("--scale", action="store_true",
                    help="only the index, duplicates, reuse and search at 1 and 10 million synthetic rows "
                         "(devtools/bench_scale.py), with peak memory")
    ap.add_argument("--scale-rows", default="1000000,10000000", help="comma-separated store sizes for --scale")
    ap.add_argument("--scale-radius", type=int, default=5,
                    help="the duplicates' Hamming radius for --scale (64-bit codes; the defaults are in README)")
    ap.add_argument("--scale-verified", action="store_true",
                    help="only the duplicates at the learned 64-bit radius over crowded synthetic codes, verified by "
                         "their vectors (devtools/bench_scale.py run_verified; --scale-rows, --scale-alone)")
    ap.add_argument("--scale-alone", action="store_true",
                    help="with --scale-verified: also by the radius alone (cancelled after 600 s)")
    a = ap.parse_args(argv)
    if a.scale_verified:
        from devtools import bench_scale

        bench_scale.run_verified([int(n) for n in a.scale_rows.split(",")], alone=a.scale_alone)
        return 0
    if a.scale:
        from devtools import bench_scale

        exact = bench_scale.run([int(n) for n in a.scale_rows.split(",")], radius=a.scale_radius)["exactness"]
        return 0 if all(exact["duplicates_exact"].values()) and exact["similar_exact"] else 1
    if a.search:
        return bench_search(a.search_codes)
    if not a.engine:
        rc = compare_engines(a, [e.strip() for e in a.engines.split(",") if e.strip()])
        print()
        rc = rc or bench_precisions(a.images, [p.strip() for p in a.precisions.split(",") if p.strip()])
        print()
        return rc or bench_search(a.search_codes)
    cores = os.cpu_count() or 1
    model_dir = str(paths.model_dir())
    input_root = build_input(a.images)
    files = photo_files(input_root)
    n = len(files)
    print(f"bench: {n} images from real photos, batch {a.batch_size}, engine {a.engine}, {cores} cores", flush=True)

    from imgfeat.cli import chatter_to

    # What the JVMs print (Spark's and BigDL's INFO lines, BigDL's `creating:`) goes to the log,
    # also later from the same JVM: it keeps the file descriptors it started with.
    log = paths.var_dir() / "logs" / f"bench-{a.engine}.log"
    print(f"(library output: {log})", flush=True)
    with chatter_to(log):
        t_bare = bare(files, a.engine, model_dir, a.batch_size, params.DEFAULTS["score_threshold"], 64)
    from devtools.local import airflow_env

    env = airflow_env()
    os.environ.update({k: env[k] for k in ("PYSPARK_PYTHON", "SPARK_LOCAL_IP")})  # the warm in-process session
    warehouse = paths.var_dir() / "bench" / "warehouse"
    shutil.rmtree(warehouse, ignore_errors=True)
    # --reuse false: the warm runs repeat stages on a published partition, which would otherwise
    # copy its results instead of inferring.
    stage_args = ["--engine", a.engine, "--batch-size", str(a.batch_size), "--model-dir", model_dir,
                  "--reuse", "false"]
    events = paths.var_dir() / "bench" / "events"
    shutil.rmtree(events, ignore_errors=True)
    events.mkdir(parents=True)
    t_spark = spark_stages(input_root, warehouse, stage_args, env, a.engine, events=events)

    with chatter_to(log):
        t_warm = warm_stages(input_root, warehouse, stage_args, a.engine)

    rows = []
    for stage in STAGES:
        wall, warm, b = t_spark[stage][0], t_warm[stage], t_bare.get(stage)
        rows.append((stage, wall, warm, wall - warm, n / warm, n / warm / cores,
                     (n / b) if b else None, (b / warm) if b else None))
    parts = {stage: t_spark[stage][2] for stage in STAGES}
    total_parts = {k: sum(p[k] for p in parts.values()) for k in ("launch", "driver", "jobs", "stop")}
    if a.summary:
        Path(a.summary).write_text(json.dumps({
            "images": n, "cores": cores, "bare_ms": {k: 1000 * v / n for k, v in t_bare.items()},
            "warm_ms": {k: 1000 * v / n for k, v in t_warm.items()},
            "warm_s": sum(t_warm.values()), "wall_s": sum(v[0] for v in t_spark.values()),
            "parts": total_parts}))
    total_warm = sum(t_warm.values())
    total_wall = sum(v[0] for v in t_spark.values())
    b_total = sum(t_bare.values())
    rows.append(("all stages", total_wall, total_warm, total_wall - total_warm, n / total_warm,
                 n / total_warm / cores, n / b_total, b_total / total_warm))
    print()
    print(f"{'stage':<11}{'wall s':>8}{'warm s':>8}{'fixed s':>9}{'img/s':>8}{'img/s/core':>12}"
          f"{'bare img/s':>12}{'spark/bare':>12}")
    for stage, wall, warm, fixed, ips, ipc, bips, ratio in rows:
        print(f"{stage:<11}{wall:>8.1f}{warm:>8.1f}{fixed:>9.1f}{ips:>8.1f}{ipc:>12.2f}"
              f"{(f'{bips:.1f}' if bips else '-'):>12}{(f'{ratio:.2f}' if ratio else '-'):>12}")
    print("\nwall: the stage's spark-submit; warm: the same stage in a warm SparkSession (steady state);"
          f"\nfixed = wall - warm: JVM start, Python workers, model load ({total_wall - total_warm:.1f}s over 5 stages);"
          "\nimg/s and spark/bare use the warm time; bare: one process, same engine and batch, no Spark.")
    print(f"\nfixed cost, part by part (s; Spark's event log of each spark-submit):\n"
          f"{'stage':<11}{'launch':>8}{'driver':>8}{'jobs':>7}{'(n)':>5}{'warm':>7}{'jobs-warm':>11}{'stop':>7}")
    for stage, p in parts.items():
        print(f"{stage:<11}{p['launch']:>8.1f}{p['driver']:>8.1f}{p['jobs']:>7.1f}{p['count']:>5}"
              f"{t_warm[stage]:>7.1f}{p['jobs'] - t_warm[stage]:>11.1f}{p['stop']:>7.1f}")
    t = total_parts
    print(f"{'all stages':<11}{t['launch']:>8.1f}{t['driver']:>8.1f}{t['jobs']:>7.1f}{'':>5}"
          f"{total_warm:>7.1f}{t['jobs'] - total_warm:>11.1f}{t['stop']:>7.1f}")
    print("launch: spark-submit to a running SparkContext (JVM, Python, imports); driver: the app outside Spark"
          "\njobs (lease, listing, metadata, commit renames); jobs: its Spark jobs, n of them, with the Python"
          "\nworkers' start and model load (jobs-warm; warm includes the warm run's driver time); stop: to the exit.")
    if not a.skip_airflow:
        from devtools.local import dags_test, ensure_airflow_db

        ensure_airflow_db(env)
        shutil.rmtree(warehouse, ignore_errors=True)
        conf = {"partition_date": BENCH_DATE, "input_root": str(input_root), "warehouse_root": str(warehouse),
                "engine": a.engine}
        s = time.perf_counter()
        rc = dags_test("image_features", BENCH_DATE, conf, env, log_file=paths.var_dir() / "logs" / "bench.log")
        e2e = time.perf_counter() - s
        if rc != 0:
            print(f"airflow run failed (exit {rc}), see var/logs/bench.log")
            return 1
        print(f"airflow end-to-end: {e2e:.1f}s wall = {n / e2e:.2f} img/s "
              f"({n / e2e / cores:.2f} img/s/core); Airflow's own overhead ~{e2e - total_wall:.1f}s over the 5 spark-submits")
    return 0


def bench_precisions(images: int, precisions: list[str]) -> int:
    """Each precision against f32 on the bench's photos, in one process without Spark (ingest,
    detect, crop, embed): time per image and devtools.agreement's figures next to its gates."""
    from devtools import agreement

    if not precisions:
        return 0
    pairs = [(f.name, f.read_bytes()) for f in photo_files(build_input(images))]
    gates = agreement.GATES
    print(f"precisions against f32, OpenVINO, {len(pairs)} pictures, in-process pipeline (gates: kept object "
          f"agrees >= {gates['kept_agree']:.0%}, cosine >= {gates['cosine_min']})")
    print(f"{'precision':<10}{'ms/img':>8}{'f32 ms/img':>12}{'speed-up':>10}{'kept agrees':>13}{'cos min':>9}"
          f"{'cos mean':>10}  gates")
    from imgfeat.engines.openvino import cpu_capabilities

    native = cpu_capabilities()
    for p in precisions:
        if p.upper() not in native:  # OpenVINO would run it in f32: the figures would be f32's
            print(f"{p:<10}not measured: this CPU has no {p} (OpenVINO's capabilities: {' '.join(native)})")
            continue
        r = agreement.compare(pairs, str(paths.model_dir()), p)
        print(f"{p:<10}{r['ms_per_image']:>8.1f}{r['reference_ms_per_image']:>12.1f}"
              f"{r['reference_ms_per_image'] / r['ms_per_image']:>9.2f}x{r['kept_agree']:>13.1%}"
              f"{r['cosine_min']:>9.3f}{r['cosine_mean']:>10.4f}  {'pass' if agreement.passes(r) else 'FAIL'}")
    return 0


def compare_engines(a, engines: list[str]) -> int:
    """Each engine's bench in its own process, then ms/image side by side and each engine's ratio
    to the fastest one (the warm detect + embed stages, as the pipeline runs them)."""
    import tempfile

    summaries = {}
    for i, engine in enumerate(engines):
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            cmd = [sys.executable, "-m", "devtools.bench", "--engine", engine, "--images", str(a.images),
                   "--batch-size", str(a.batch_size), "--summary", f.name]
            if a.skip_airflow or i:  # the end-to-end Airflow run once, with the first engine
                cmd.append("--skip-airflow")
            print(f"\n===== engine {engine} =====", flush=True)
            if subprocess.run(cmd).returncode != 0:
                print(f"bench of engine {engine} failed")
                return 1
            summaries[engine] = json.loads(Path(f.name).read_text())
    infer = {e: s["warm_ms"]["detect"] + s["warm_ms"]["embed"] for e, s in summaries.items()}
    fastest = min(infer.values())
    print(f"\n{'engine':<10}{'bare detect':>12}{'bare embed':>12}{'spark detect':>14}{'spark embed':>13}"
          f"{'detect+embed':>14}{'/ fastest':>11}   (ms/image)")
    for e, s in summaries.items():
        print(f"{e:<10}{s['bare_ms']['detect']:>12.1f}{s['bare_ms']['embed']:>12.1f}{s['warm_ms']['detect']:>14.1f}"
              f"{s['warm_ms']['embed']:>13.1f}{infer[e]:>14.1f}{infer[e] / fastest:>11.2f}")
    print("bare: one process, no Spark (BigDL: forward from Python); spark: the warm stage in local mode "
          "(BigDL: distributed predict).")
    _goals(summaries, infer)
    return 0


def _goals(summaries: dict, infer: dict) -> None:
    """The throughput goals of README "Benchmark" (P1-P4), from this run's figures."""
    first, s = next(iter(summaries.items()))
    bare = 1000 / (s["bare_ms"]["detect"] + s["bare_ms"]["embed"])  # img/s of the bare detect + embed
    e2e = s["images"] / s["warm_s"]
    print(f"\ngoals, this run ({first} unless named):")
    print(f"  P1 all five stages warm: {e2e / s['cores']:.2f} img/s per core (goal >= 20)")
    print(f"  P2 all five stages warm / bare detect+embed: {e2e:.1f} / {bare:.1f} img/s = {e2e / bare:.2f} (goal >= 0.85)")
    if "bigdl" in infer and "openvino" in infer:
        print(f"  P3 bigdl / openvino, warm detect+embed: {infer['bigdl'] / infer['openvino']:.2f}x (goal <= 1.5)")
    p = s["parts"]
    print(f"  P4 fixed cost of the five spark-submits (wall - warm): {s['wall_s'] - s['warm_s']:.1f} s (goal <= 25): "
          f"launch {p['launch']:.1f} + driver {p['driver']:.1f} + jobs over warm {p['jobs'] - s['warm_s']:.1f} "
          f"+ stop {p['stop']:.1f}")


if __name__ == "__main__":
    sys.exit(main())

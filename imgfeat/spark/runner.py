"""Runs one stage for one partition: validate arguments, start Spark, read the predecessor's
checkpoint, apply the stage's batch function on executors, commit the result atomically.

Arguments (imgfeat.spark.args) are validated before the SparkSession exists: a bad one exits with
status 2 and a message naming it, and no Spark job starts.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
import time
import uuid

from imgfeat import params
from imgfeat.spark import StageFailed
from imgfeat.spark.args import parse, weights_digest
from imgfeat.spark.progress import Progress
from imgfeat.layout import INFERENCE_STAGES, STAGES, Warehouse, input_partition, previous_stage


def model_name(args, code: str, score_threshold: float, picture_code: str) -> str:
    """The published `model` column: what shaped a row's values (reuse copies only rows of the same
    model): detector and embedding network @ their weights, engine, score threshold, the picture's
    descriptor and code and the crop's code (last: `code=<name>`)."""
    from imgfeat.descriptor import PICTURE_DESCRIPTOR
    from imgfeat.engines import engine_version

    m = args.model_manifest
    return (f"{m['detector']}+{m['backbone']}@{weights_digest(m)};engine={engine_version(args.engine)};"
            f"min_score={score_threshold:g};picture={PICTURE_DESCRIPTOR};picture_code={picture_code};code={code}")


def load_coder(spark, wh: Warehouse, bits: int, name: str | None = None, described: str = "object"):
    """The descriptor coder of crops (`described` "object") or whole pictures ("picture"): `name`,
    else the current learned layer for `bits`, else the projection."""
    from imgfeat import descriptor
    from imgfeat.spark.hadoop import HadoopFS

    fs = HadoopFS(spark)
    if name is not None and descriptor.code_bits_of(name) != bits:
        name = None  # the run's code length changed since detect: the current one for this length
    try:
        return descriptor.load_coder(lambda p: fs.read_text(p) if fs.exists(p) else None, wh, bits, name, described)
    except (FileNotFoundError, ValueError) as e:
        raise StageFailed(str(e)) from None


def _check_inference(written, stage: str, share: float) -> None:
    """Raise StageFailed when more than `share` of the images `stage` inferred (and more than one)
    failed inference: that is a broken engine, not bad pictures."""
    from pyspark.sql import functions as F

    failed = (F.col("quarantine_stage") == stage) & F.col("quarantine_reason").startswith("inference_error")
    tried = (F.col("quarantine_stage").isNull() | failed) & F.col("reused_from").isNull()
    r = written.agg(F.count(F.when(failed, 1)).alias("failed"), F.count(F.when(tried, 1)).alias("tried"),
                    F.first(F.when(failed, F.col("quarantine_reason")), ignorenulls=True).alias("first")).first()
    if r["failed"] > 1 and r["failed"] > share * r["tried"]:
        first = " ".join(str(r["first"]).split())[:300]
        raise StageFailed(f"{r['failed']} of {r['tried']} images failed inference (more than "
                          f"max_inference_failures={share:g}); first: {first}")


def _partitions(spark, rows: int, per_task: int) -> int:
    return max(spark.sparkContext.defaultParallelism, math.ceil(rows / per_task))


def _counts(df) -> dict:
    from pyspark.sql import functions as F

    reused = F.count("reused_from") if "reused_from" in df.columns else F.lit(0)
    # pictures whose EXIF could not be read: published as stored, without the orientation step
    unoriented = (F.count(F.when(~F.col("orientation_ok"), 1)) if "orientation_ok" in df.columns else F.lit(None))
    r = df.agg(F.count("*").alias("rows"), F.count("quarantine_stage").alias("quarantined"),
               reused.alias("reused"), unoriented.alias("unoriented")).first()
    out = {"rows": r["rows"], "quarantined": r["quarantined"], "reused": r["reused"]}
    return out if r["unoriented"] is None else {**out, "orientation_unread": r["unoriented"]}


def _read_previous(spark, wh: Warehouse, stage: str, date: str):
    from imgfeat import schemas
    from imgfeat.spark.checkpoint import is_committed, read_meta
    from imgfeat.spark.hadoop import HadoopFS

    prev = previous_stage(stage)
    path = wh.checkpoint(prev, date)
    if not is_committed(HadoopFS(spark), path):
        raise StageFailed(f"{prev} checkpoint {path} is not committed: run stage '{prev}' first")
    meta = read_meta(spark, path)
    if meta.get("schema") != schemas.digest(prev):
        raise StageFailed(f"{prev} checkpoint {path} was written with another schema (by another version): "
                          f"run stage '{prev}' again")
    return spark.read.parquet(path), meta


def run_ingest(spark, args, wh):
    from imgfeat import inputs
    from imgfeat.spark import reader
    from imgfeat.spark.hadoop import HadoopFS

    fs = HadoopFS(spark)
    part = input_partition(args.input_root, args.partition_date)
    if not fs.is_dir(part):
        raise StageFailed(f"input partition {part} does not exist")
    part_uri = fs.qualify(part)
    entries = reader.list_partition(spark, part_uri)
    n = len(entries)
    earlier = _earlier_ingest(spark, fs, wh.checkpoint("ingest", args.partition_date))
    rows = reader.read_partition(spark, part_uri, entries, _partitions(spark, n, args.images_per_task))
    # What was listed, so Airflow can tell when the partition has changed since (checkpoints.current),
    # and how it differs from the partition's earlier ingest (late files; the run manifest says it).
    ids = {e.image_id for e in entries}
    return rows, n, {"input": part_uri, "files": n, "input_listing": inputs.digest(entries), "upstream_commit": None,
                  "files_new": len(ids - earlier["ids"]), "files_gone": len(earlier["ids"] - ids),
                  "revision": earlier["revision"] + 1}


def _earlier_ingest(spark, fs, path: str) -> dict:
    """The image ids and revision (1 for the first ingest) of the partition's committed ingest
    checkpoint, read before this ingest replaces it; none and 0 when there is none."""
    from imgfeat.spark.checkpoint import is_committed, read_meta

    if not is_committed(fs, path):
        return {"ids": set(), "revision": 0}
    ids = {r.image_id for r in spark.read.parquet(path).select("image_id").toLocalIterator()}
    return {"ids": ids, "revision": read_meta(spark, path).get("revision", 1)}


def _inference_stage(batch_fn, schema, engine_args, extra):
    def fn(it):
        from imgfeat.engines import get_engine

        engine = get_engine(*engine_args)
        for b in it:
            yield batch_fn(b, engine, *extra)
    return fn, schema


def _infer(spark, args, df, stage: str, *options):
    """detect or embed over `df` with the run's engine: OpenVINO in Python workers (the stage's
    batch function), or BigDL's distributed predict."""
    if args.engine == "bigdl":
        from imgfeat.spark import bigdl_predict

        return getattr(bigdl_predict, stage)(spark, df, _bigdl_dir(args), *options, batch_size=args.batch_size)
    from imgfeat import schemas
    from imgfeat.stages import detect, embed

    batch_fn = {"detect": detect.detect_batch, "embed": embed.embed_batch}[stage]
    fn, schema = _inference_stage(batch_fn, schemas.STAGE_SCHEMAS[stage], _engine_args(spark, args), options)
    return df.mapInPandas(fn, schema)


def run_detect(spark, args, wh):
    from imgfeat.spark import reuse

    df, meta = _read_previous(spark, wh, "detect", args.partition_date)
    df = df.drop("format", "size_bytes", "orientation_ok")  # ingest's own columns
    # The run's code is settled here, so the reuse lookup and embed agree on it even if a new
    # layer is trained meanwhile: embed uses the code that detect recorded.
    code = load_coder(spark, wh, args.code_bits).name
    picture_code = load_coder(spark, wh, args.code_bits, described="picture").name
    model = model_name(args, code, args.score_threshold, picture_code)
    index = reuse.published(spark, wh.features_root(), model) if args.reuse else None
    # force: the partition's own earlier rows are what is being recomputed, never copied back
    df = reuse.mark(df, index, args.partition_date, own=not args.force)
    df = df.repartition(_partitions(spark, meta["rows"], args.images_per_task))
    return _infer(spark, args, df, "detect", args.score_threshold), meta["rows"], {
        "model": model, "code": code, "picture_code": picture_code, "score_threshold": args.score_threshold,
        "upstream_commit": meta["commit_id"]}


def run_crop(spark, args, wh):
    from imgfeat.schemas import CROP
    from imgfeat.stages.crop import crop_batch

    df, meta = _read_previous(spark, wh, "crop", args.partition_date)
    df = df.repartition(_partitions(spark, meta["rows"], args.images_per_task))
    return df.mapInPandas(lambda it: (crop_batch(b) for b in it), CROP), meta["rows"], {"upstream_commit": meta["commit_id"]}


def run_embed(spark, args, wh):
    from imgfeat.spark.checkpoint import read_meta

    df, meta = _read_previous(spark, wh, "embed", args.partition_date)
    detected = read_meta(spark, wh.checkpoint("detect", args.partition_date))
    coder = load_coder(spark, wh, args.code_bits, detected.get("code"))
    picture_coder = load_coder(spark, wh, args.code_bits, detected.get("picture_code"), "picture")
    df = df.repartition(_partitions(spark, meta["rows"], args.images_per_task))
    return _infer(spark, args, df, "embed", coder, picture_coder), meta["rows"], {
        "model": model_name(args, coder.name, detected["score_threshold"], picture_coder.name), "code": coder.name,
        "picture_code": picture_coder.name, "code_bits": args.code_bits, "upstream_commit": meta["commit_id"]}


def _bigdl_dir(args) -> str:
    from imgfeat.engines.bigdl import runtime as bigdl
    from imgfeat.engines.models import BIGDL_DIR

    bigdl.init_spark()  # BigDL's engine in this driver (the app was submitted with its jars and confs)
    return f"{args.model_dir.rstrip('/')}/{BIGDL_DIR}"


def _engine_args(spark, args) -> tuple:
    # Default: as many inference threads as the executor has cores, even though its tasks run
    # side by side. Decoding and Arrow transfer leave cores idle while a task infers; measured on
    # 2 cores, local[2]: 1 thread/task 12.0 s, 2 threads/task 8.1 s for the same 240 images.
    cores = spark.conf.get("spark.executor.cores", None) or spark.sparkContext.defaultParallelism
    return (args.engine, args.model_dir, args.threads or int(cores))


def _sources_in_flux(fs, features_root: str) -> dict:
    """Name -> modification time of each entry of the features root (partitions and aside copies):
    a partition rewritten meanwhile changes its entry."""
    return dict(fs.list_status(features_root)) if fs.is_dir(features_root) else {}


def _repair_published(spark, fs, wh, date: str) -> None:
    """Put back what a crashed publish of `date` left aside, if no live run holds its lease."""
    from imgfeat import lease
    from imgfeat.spark.checkpoint import restore

    try:
        with lease.hold(spark, wh.lease(date), date, "publish", wait_s=0):
            for name in ("features", "quarantine"):
                restore(fs, wh.table(name, date))
    except lease.LeaseHeld:
        pass  # its run is live: it restores or replaces the table itself


def _resolve_stably(spark, fs, wh, embedded, model: str, date: str, attempt: str, tries: int = 3):
    """Write the final rows of the partition into this attempt's staging and read them back.

    A reused row whose source row is missing is quarantined (`reuse_source_missing`) only when its
    source partition did not change while it was read: a source partition rewritten meanwhile by
    another run (or mid-commit, with its old copy aside) is read again, and after `tries` the stage
    fails (Airflow retries it) instead of quarantining good rows."""
    from pyspark.sql import functions as F

    from imgfeat.spark import reuse

    root = wh.features_root()
    for i in range(tries):
        before = _sources_in_flux(fs, root)
        index = reuse.published(spark, root, model)
        at = wh.new_staging("resolved", date, f"{attempt}-{i}")
        reuse.resolve(embedded, index, date, model).write.parquet(at)
        resolved = spark.read.parquet(at)
        missing = {r.src for r in resolved.where(F.col("quarantine_reason").startswith("reuse_source_missing"))
                   .select(F.split("reused_from", "/").getItem(0).alias("src")).distinct().collect()}
        after = _sources_in_flux(fs, root)
        unstable = sorted(d for d in missing if before.get(d) != after.get(d)
                          or any(n.startswith(f".{d}.old-") for n in (*before, *after)))
        if not unstable:
            return resolved, at
        fs.delete(at)
        for d in unstable:
            _repair_published(spark, fs, wh, d.removeprefix("dt="))
        time.sleep(1 + i)
    raise StageFailed(f"source partitions {', '.join(unstable)} of reused rows were being rewritten during "
                      "publish; not quarantining their rows (retry)")


def run_publish(spark, args, wh, held=None):
    from imgfeat.spark.checkpoint import clear_staging, commit, read_meta, restore, write_text_atomically
    from imgfeat.spark.hadoop import HadoopFS
    from imgfeat.spark import publish, reuse

    date = args.partition_date
    fs = HadoopFS(spark)
    embedded, embed_meta = _read_previous(spark, wh, "publish", date)
    metas = {s: read_meta(spark, wh.checkpoint(s, date)) for s in STAGES[:-1]}
    started = time.time()
    attempt = uuid.uuid4().hex
    # A re-run's carried-over rows are read from the partition's current features table: if an
    # earlier attempt died in the middle of replacing it, its old copy is put back first.
    for name in ("features", "quarantine"):
        restore(fs, wh.table(name, date))
    clear_staging(fs, wh.staging_root("resolved", date), leased=held is not None)
    # The final rows are written once before the tables, which committing the new ones replaces.
    resolved, resolved_at = _resolve_stably(spark, fs, wh, embedded, embed_meta["model"], date, attempt)
    counts = {}
    for name, df in (("features", publish.features(resolved)), ("quarantine", publish.quarantine(resolved))):
        info = commit(spark, df.coalesce(max(1, math.ceil(metas["ingest"]["rows"] / 5000))),
                      wh.table(name, date), wh.staging_root(name, date), wh.new_staging(name, date, attempt),
                      lambda written: {"rows": written.count(), "commit_id": attempt,
                                       "upstream_commit": embed_meta["commit_id"]},
                      lease=held, stage="publish")
        counts[name] = info["rows"]
    fs.delete(resolved_at)
    if fs.is_dir(wh.staging_root("resolved", date)) and not fs.list_names(wh.staging_root("resolved", date)):
        fs.delete(wh.staging_root("resolved", date))
    summary = publish.summary(spark.read.parquet(wh.table("features", date)),
                              spark.read.parquet(wh.table("quarantine", date)))
    images_in = metas["ingest"]["rows"]
    if summary["published"] + summary["quarantined"] != images_in:
        raise StageFailed(f"lost images: {images_in} ingested, {summary['published']} published, "
                          f"{summary['quarantined']} quarantined")
    manifest = {
        "commit_id": attempt,
        "upstream_commit": embed_meta["commit_id"],
        "partition_date": date,
        "input": metas["ingest"]["input"],
        "warehouse": args.warehouse_root,
        "images_in": images_in,
        **summary,
        # inferred in this run, or copied from rows already published (incremental runs)
        "images_by_source": reuse.counts(embedded, date),
        "model": embed_meta["model"],
        "code_bits": embed_meta["code_bits"],
        "score_threshold": metas["detect"]["score_threshold"],
        "orientation_unread": metas["ingest"].get("orientation_unread", 0),
        # late files: how this ingest differs from the partition's earlier one, and the lookback
        "revision": metas["ingest"].get("revision", 1),
        "files_new": metas["ingest"].get("files_new", images_in),
        "files_gone": metas["ingest"].get("files_gone", 0),
        "late_partitions": args.late_partitions,
        "revisited_by": args.revisited_by,
        # bytes: what each stage's checkpoint holds on the warehouse's file system now
        "stages": {s: {**{k: metas[s][k] for k in ("rows", "quarantined", "duration_s", "finished_at")},
                       "bytes": fs.size(wh.checkpoint(s, date))} for s in metas},
        "outputs": {"features": wh.table("features", date), "quarantine": wh.table("quarantine", date)},
    }
    manifest["stages"]["publish"] = {"rows": counts["features"], "quarantined": counts["quarantine"],
                                     "duration_s": round(time.time() - started, 3),
                                     "finished_at": _now(),
                                     "bytes": sum(fs.size(wh.table(t, date)) for t in ("features", "quarantine"))}
    write_text_atomically(spark, wh.manifest(date), json.dumps(manifest, indent=2, sort_keys=True))
    from imgfeat.spark import report

    report.write_safely(spark, wh, date, manifest)
    return manifest


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# Each returns (the DataFrame to commit, the images it works through, extra checkpoint metadata).
JOBS = {"ingest": run_ingest, "detect": run_detect, "crop": run_crop, "embed": run_embed}


def run(spark, stage: str, args) -> dict:
    """Run `stage` for `args.partition_date` with an existing SparkSession; returns its metadata.
    The stage holds the partition's lease (imgfeat.lease) from start to end: a concurrent run of
    the same partition waits for it, or fails naming the holder."""
    from imgfeat import lease

    wh = Warehouse(args.warehouse_root)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.batch_size))
    with lease.hold(spark, wh.lease(args.partition_date), args.partition_date, stage) as held:
        _recompute_swept(spark, stage, args, wh, held)
        if stage == "publish":
            info = run_publish(spark, args, wh, held)
        else:
            return _run_checkpoint_stage(spark, stage, args, wh, held)
    # Outside this partition's lease: the sweep takes each swept partition's own.
    from imgfeat.spark import retention

    swept = retention.sweep(spark, wh, args.partition_date, args.keep_checkpoints_days)
    if swept:
        print(f"imgfeat publish: deleted the intermediate checkpoints of {len(swept)} partitions published more "
              f"than {args.keep_checkpoints_days} days ago: {', '.join(swept)}", file=sys.stderr)
    return info


def _recompute_swept(spark, stage: str, args, wh: Warehouse, held) -> None:
    """Recompute, in order, the checkpoints before `stage` that retention deleted (a run of an old
    partition); a checkpoint that was never made is still refused (`_read_previous`)."""
    from imgfeat.spark.checkpoint import is_committed
    from imgfeat.spark.hadoop import HadoopFS

    fs = HadoopFS(spark)
    date = args.partition_date
    if not fs.exists(wh.retention_record(date)):
        return
    for upstream in STAGES[:STAGES.index(stage)]:
        if not is_committed(fs, wh.checkpoint(upstream, date)):
            print(f"imgfeat {stage} dt={date}: the {upstream} checkpoint was deleted by retention "
                  f"({wh.retention_record(date)}); recomputing it first", file=sys.stderr, flush=True)
            _run_checkpoint_stage(spark, upstream, args, wh, held)


def _run_checkpoint_stage(spark, stage: str, args, wh: Warehouse, held) -> dict:
    from imgfeat import schemas
    from imgfeat.spark.checkpoint import commit

    started = time.time()
    df, images, extra = JOBS[stage](spark, args, wh)
    date = args.partition_date
    staging = wh.new_staging(stage, date)

    def meta(written):
        if stage in INFERENCE_STAGES:
            _check_inference(written, stage, args.max_inference_failures)
        # commit_id/upstream_commit let Airflow tell a current checkpoint from a stale one.
        return {"stage": stage, "partition_date": date, **_counts(written), **extra,
                "params": params.shaping(stage, args), "schema": schemas.digest(stage),
                "commit_id": staging.rsplit("/", 1)[1],
                "duration_s": round(time.time() - started, 3), "finished_at": _now()}

    with Progress(spark, f"imgfeat {stage} dt={date}", images):
        return commit(spark, df, wh.checkpoint(stage, date), wh.staging_root(stage, date), staging, meta,
                      lease=held, stage=stage)


def main(stage: str, argv: list[str] | None = None) -> int:
    """Entry point of spark_apps/<stage>.py."""
    assert stage in STAGES
    args = parse(stage, sys.argv[1:] if argv is None else argv)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName(f"imgfeat-{stage}-{args.partition_date}").getOrCreate()
    from imgfeat.lease import LeaseHeld, LeaseLost

    try:
        info = run(spark, stage, args)
    except (StageFailed, LeaseHeld, LeaseLost) as e:
        print(f"imgfeat {stage} failed: {e}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    print(f"imgfeat {stage} dt={args.partition_date}: "
          + json.dumps({k: info.get(k) for k in ("rows", "quarantined", "published", "duration_s") if k in info}))
    return 0

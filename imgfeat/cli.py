"""Command line of the local setup: `python -m imgfeat.cli {setup,run,similar}`.

`run` validates its arguments, runs the image_features DAG through Airflow (`airflow dags test`,
SQLite metadata DB, local Spark), then the feature_index DAG on the published partition, and prints
a summary from the run manifest and the duplicates table.
`similar` prints the published images most similar to a picture file or to a published image.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from imgfeat import params, paths
from imgfeat.layout import STAGE_META, Warehouse, input_partition

SAMPLE_DATE = "2026-11-01"
SAMPLE_PHOTOS = 60
DAG_ID = "image_features"


def sample_input_root() -> Path:
    return paths.var_dir() / "sample" / "input"


def default_warehouse() -> Path:
    return paths.var_dir() / "warehouse"


def build_sample(root: Path, date: str = SAMPLE_DATE, count: int = SAMPLE_PHOTOS) -> Path:
    """The sample partition: `count` real photos plus the planted bad files (idempotent)."""
    from devtools import badfiles, sample_photos

    part = Path(input_partition(str(root), date))
    marker = root / f".built-dt={date}-{count}"
    if marker.exists():
        return part
    import shutil

    shutil.rmtree(part, ignore_errors=True)
    sample_photos.build_partition(part, count, seed=0, cache_dir=paths.cache_dir())
    from skimage import data

    badfiles.write(part / "planted-bad", data.coffee())
    marker.touch()
    return part


def read_manifest(warehouse: str, date: str) -> dict:
    from imgfeat import storage

    path = Warehouse(warehouse).manifest(date)
    manifest = storage.read_json(path)
    if manifest is None:
        raise FileNotFoundError(f"no run manifest {path}")
    return manifest


def print_summary(m: dict, wall_s: float) -> None:
    print()
    print(f"image_features dt={m['partition_date']}  ({m['model']})")
    print(f"  images in     {m['images_in']}")
    print(f"  published     {m['published']}")
    print(f"  quarantined   {m['quarantined']}"
          + "".join(f"\n    {code:<22}{n}" for code, n in m["quarantined_by_reason"].items()))
    labels = sorted(m["top_labels"].items(), key=lambda kv: (-kv[1], kv[0]))
    print("  top labels    " + ", ".join(f"{k} {v}" for k, v in labels))
    print("  stage times   " + ", ".join(f"{s} {m['stages'][s]['duration_s']:.1f}s"
                                        for s in ("ingest", "detect", "crop", "embed", "publish")))
    print(f"  wall time     {wall_s:.1f}s (Airflow + 5 spark-submits)")
    print(f"  features      {m['outputs']['features']}")
    print(f"  quarantine    {m['outputs']['quarantine']}")
    print(f"  manifest      {Warehouse(m['warehouse']).manifest(m['partition_date'])}")
    print(f"  report        {Warehouse(m['warehouse']).report(m['partition_date'])}")


def cmd_run(a) -> int:
    try:
        date = params.partition_date(a.date or SAMPLE_DATE, "DATE")
        if a.input:
            input_root = params.input_root(a.input, "INPUT")
        else:
            input_root = str(sample_input_root())
            build_sample(Path(input_root), date)
        warehouse = params.warehouse_root(a.warehouse or str(default_warehouse()), "WAREHOUSE")
        threshold = params.score_threshold(a.score_threshold)
        bits = params.code_bits(a.code_bits)
        engine = params.engine(a.engine, "ENGINE")
        part = input_partition(input_root, date)
        if not params.is_uri(part) and not Path(part).is_dir():
            raise params.ParamError("DATE", f"no input partition {part}")
    except params.ParamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from devtools.local import airflow_env, dags_test, ensure_airflow_db

    env = airflow_env()
    ensure_airflow_db(env)
    conf = {"partition_date": date, "input_root": input_root, "warehouse_root": warehouse,
            "score_threshold": threshold, "code_bits": bits, "engine": engine}
    log = paths.var_dir() / "logs" / f"run-dt={date}.log"
    print(f"running DAG {DAG_ID} for dt={date} through Airflow (log: {log}) ...", flush=True)
    started = time.time()
    # No logical date: the run starts now (real start and end dates in the UI); the partition is
    # the `partition_date` conf. (A logical date of DATE would record the run as started on DATE.)
    rc = dags_test(DAG_ID, None, conf, env, log_file=None if a.verbose else log)
    if rc != 0:
        print(f"error: the DAG run failed (exit {rc}); see {log}", file=sys.stderr)
        return 1
    wall = time.time() - started
    # What the Asset-triggered feature_index DAG does after a publish (a scheduler would start it).
    index_log = paths.var_dir() / "logs" / f"index-dt={date}.log"
    print(f"running DAG feature_index for dt={date} (log: {index_log}) ...", flush=True)
    rc = dags_test("feature_index", None, {"partition_date": date, "warehouse_root": warehouse}, env,
                   log_file=None if a.verbose else index_log)
    if rc != 0:
        print(f"error: the feature_index run failed (exit {rc}); see {index_log}", file=sys.stderr)
        return 1
    print_summary(read_manifest(warehouse, date), wall)
    from imgfeat import storage

    dup = storage.read_json(f"{Warehouse(warehouse).table('duplicates', date)}/{STAGE_META}")
    print(f"  duplicates    {dup['images']} images in {dup['groups']} groups within Hamming distance "
          f"{dup['radius']} ({Warehouse(warehouse).table('duplicates', date)})")
    print(f"  index         {dup['indexed_images']} images, code {dup['code']} ({dup['index']})")
    print(f"  search        python -m imgfeat.cli similar --warehouse {warehouse} --image <picture>")
    return 0


def cmd_similar(a) -> int:
    """The k most similar published images to a picture file or to a published image."""
    from imgfeat import search

    warehouse = a.warehouse or str(default_warehouse())
    try:
        warehouse = params.warehouse_root(warehouse, "--warehouse")
        bits = None if a.code_bits is None else params.code_bits(a.code_bits, "--code-bits")
        k = params.positive_int(a.k, "-k")
        data = None
        if a.image is not None:
            try:
                data = Path(a.image).read_bytes()
            except OSError as e:
                raise params.ParamError("--image", f"cannot read {a.image}: {e.strerror}") from None
        index, hits, asked = search.similar(warehouse, k, picture=data, name=Path(a.image or "query").name,
                                            image_id=a.image_id, bits=bits, code=a.code, rerank=a.rerank,
                                            model_dir=a.model_dir)
    except (params.ParamError, search.SearchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps({"index": index.code, "indexed_images": len(index), "hits": hits}))
        return 0
    by = hits[0].get("reranked_by") if hits else None
    print(f"index {index.code}: {len(index)} images; query {a.image or asked}"
          + (f"; the {search.RERANK_CANDIDATES} nearest codes re-ranked by their {by}" if by else ""))
    for rank, h in enumerate(hits, 1):
        cosine = f"  cosine {h['cosine']:.3f}" if "cosine" in h else ""
        print(f"{rank:>3}  hamming {h['hamming']:>3}{cosine}  {h['key']}  ({h['label'] or 'no object'})")
    return 0


@contextlib.contextmanager
def chatter_to(log: Path):
    """Send what libraries print to `log` instead of the terminal: at the file-descriptor level,
    because the JVMs that BigDL and Spark start write there directly (BigDL's `creating: ...` per
    layer, Spark's INFO lines, also from their shutdown hooks after Python is done)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def cmd_setup(a) -> int:
    from imgfeat import jvm
    from imgfeat.engines.models import ModelError, ensure_models

    log = paths.var_dir() / "logs" / "setup.log"
    try:
        with chatter_to(log):
            models = ensure_models(paths.model_dir(), paths.cache_dir())
            # the drivers' two class paths: Spark's own, and with BigDL's jars (engine=bigdl's stages)
            from imgfeat.engines import stage_submit_settings

            archive = jvm.build(log=log)
            jvm.build(stage_submit_settings("detect", "bigdl")["driver_class_path"], log=log)
    except (ModelError, RuntimeError) as e:
        print(f"setup: {e} (details: {log})", file=sys.stderr)
        return 1
    print(f"models: {models}")
    print(f"driver class archive: {archive}")
    if a.sample:
        print(f"sample partition: {build_sample(sample_input_root())}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m imgfeat.cli", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the image_features DAG for one partition through Airflow")
    run.add_argument("--date", help=f"partition date YYYY-MM-DD (default: the sample's {SAMPLE_DATE})")
    run.add_argument("--input", help="input root (default: the sample partition, built on first use)")
    run.add_argument("--warehouse", help=f"warehouse root (default: {default_warehouse()})")
    run.add_argument("--engine", default=params.DEFAULTS["engine"])
    run.add_argument("--score-threshold", default=params.DEFAULTS["score_threshold"])
    run.add_argument("--code-bits", default=params.DEFAULTS["code_bits"])
    run.add_argument("-v", "--verbose", action="store_true", help="stream Airflow's log instead of a file")
    run.set_defaults(fn=cmd_run)
    sim = sub.add_parser("similar", help="the most similar published images to a picture or an image_id")
    query = sim.add_mutually_exclusive_group(required=True)
    query.add_argument("--image", help="a picture file: described as the pipeline would (detect, crop, embed)")
    query.add_argument("--image-id", help="a published image: dt=<date>/<image_id>, or an image_id one partition has")
    sim.add_argument("--warehouse", help=f"warehouse root (default: {default_warehouse()})")
    sim.add_argument("-k", default=10, help="how many images (default 10)")
    sim.add_argument("--code-bits", default=None, help="which index: its code length (when there are several)")
    sim.add_argument("--code", default=None, help="which index: its code name (WAREHOUSE/index/<code>)")
    sim.add_argument("--rerank", action=argparse.BooleanOptionalAction, default=None,
                     help="re-rank the 100 nearest codes by cosine similarity. Default: by the learned layer's "
                          "vectors, which the index keeps beside the codes (an index of the projection's codes, or "
                          "of shards written before the vectors, ranks by the code alone); --rerank: else by the "
                          "float embeddings, read from each candidate's features partition (slow at store "
                          "scale); --no-rerank: by the code alone")
    sim.add_argument("--json", action="store_true", help="print one JSON document")
    sim.add_argument("--model-dir", default=str(paths.model_dir()), help="converted model directory")
    sim.set_defaults(fn=cmd_similar)
    setup = sub.add_parser("setup", help="fetch and convert the models (and build the sample)")
    setup.add_argument("--sample", action="store_true", help="also build the sample partition")
    setup.set_defaults(fn=cmd_setup)
    a = ap.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())

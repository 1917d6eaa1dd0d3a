"""Atomic checkpoint commits: write elsewhere, then rename into place.

A stage writes its Parquet files into WAREHOUSE/_staging/<name>/dt=<date>/<uuid>/, adds its
`_stage.json`, then deletes the old partition (if any) and renames the staging directory onto it.
A killed stage therefore leaves at most a staging directory, which the next attempt deletes; a
committed checkpoint always has all its files, `_SUCCESS` and `_stage.json`.
"""

from __future__ import annotations

import json

from imgfeat.layout import STAGE_META, SUCCESS
from imgfeat.spark.hadoop import HadoopFS


class CommitError(RuntimeError):
    pass


def parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0]


def is_committed(fs: HadoopFS, target: str) -> bool:
    return fs.exists(f"{target}/{SUCCESS}") and fs.exists(f"{target}/{STAGE_META}")


def commit(spark, df, target: str, staging_root: str, staging: str, meta) -> dict:
    """Write `df` to `target` atomically. `meta(written_df) -> dict` computes `_stage.json`."""
    fs = HadoopFS(spark)
    fs.delete(staging_root)  # leftovers of an attempt that was killed
    df.write.mode("errorifexists").parquet(staging)
    info = meta(spark.read.parquet(staging))
    fs.write_text(f"{staging}/{STAGE_META}", json.dumps(info, indent=2, sort_keys=True))
    fs.mkdirs(parent(target))
    fs.delete(target)
    if not fs.rename(staging, target):
        raise CommitError(f"could not rename {staging} to {target}")
    fs.delete(staging_root)
    return info


def write_text_atomically(spark, path: str, text: str | bytes) -> None:
    fs = HadoopFS(spark)
    tmp = f"{parent(path)}/.{path.rsplit('/', 1)[-1]}.tmp"
    fs.mkdirs(parent(path))
    fs.write_bytes(tmp, text.encode("utf-8") if isinstance(text, str) else text)
    fs.delete(path)
    if not fs.rename(tmp, path):
        raise CommitError(f"could not rename {tmp} to {path}")


def read_meta(spark, target: str) -> dict:
    return json.loads(HadoopFS(spark).read_text(f"{target}/{STAGE_META}"))

"""Atomic checkpoint commits: write elsewhere, then rename into place — crash-safe at every step.

A stage writes its Parquet files into its own attempt directory
WAREHOUSE/_staging/<name>/dt=<date>/<attempt-id>/ and adds `_stage.json`. Then `commit`:

  1. renames the old checkpoint `<parent>/dt=<date>` aside to `<parent>/.dt=<date>.old-<attempt-id>`
     (a hidden name: Spark's partition discovery and Hadoop tools skip it, so a reader of the
     parent directory never sees the old rows twice);
  2. renames the staging directory onto `<parent>/dt=<date>` (which is free: never onto an
     existing directory, where a rename would nest it instead of replacing it);
  3. deletes the aside copy.

Invariant: at every instant, either `dt=<date>` is a complete checkpoint (all its files, `_SUCCESS`,
`_stage.json`), or it is missing and exactly one complete aside copy `.dt=<date>.old-*` holds the
previous checkpoint (a crash between steps 1 and 2). `restore` (called by `is_committed`, by every
stage for what it reads and writes, and by `commit` itself) renames such a copy back, so a crash at
any point leaves either the old or the new checkpoint readable; leftover aside copies next to a
committed checkpoint (a crash between steps 2 and 3) are deleted.

Staging: an attempt deletes only its own staging directory — and, while it holds the partition's
lease (`imgfeat.lease`), the other attempt directories of the same partition, which can only be
leftovers of killed attempts since a live attempt holds the lease. Without a lease only attempts
older than `STALE_AFTER_S` are deleted. Holding a lease, `commit` checks right before step 1 that
the lease is still its own (a holder whose lease expired and was taken over never commits).

Fault injection (tests): `IMGFEAT_FAULT=<stage>:<point>` makes the process exit at once
(`os._exit(FAULT_EXIT)`) in `commit` of that stage; points: `after_write` (staging complete, nothing
renamed), `after_delete` (old checkpoint moved aside, new one not in place), `after_rename` (new
one in place, aside copy not yet deleted); `<stage>:<point>:pause=<s>` sleeps there instead (to
hold the lease long enough for a concurrent run to meet it).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

from imgfeat.layout import STAGE_META, SUCCESS
from imgfeat.spark.hadoop import HadoopFS

FAULT_EXIT = 86
STALE_AFTER_S = int(os.environ.get("IMGFEAT_STAGING_STALE_S", str(2 * 3600)))
ASIDE = ".old-"


class CommitError(RuntimeError):
    pass


def parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0]


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def fault(stage: str | None, point: str) -> None:
    """Fault injection (tests only): exit the process now if IMGFEAT_FAULT is `<stage>:<point>`;
    pause it for s seconds if it is `<stage>:<point>:pause=<s>`."""
    spec = os.environ.get("IMGFEAT_FAULT", "")
    if not stage or not spec.startswith(f"{stage}:{point}"):
        return
    rest = spec[len(f"{stage}:{point}"):]
    if rest.startswith(":pause="):
        print(f"imgfeat: injected pause {spec}", file=sys.stderr, flush=True)
        time.sleep(float(rest.removeprefix(":pause=")))
    elif not rest:
        print(f"imgfeat: injected fault {stage}:{point}, exiting", file=sys.stderr, flush=True)
        os._exit(FAULT_EXIT)


def aside_copies(fs: HadoopFS, target: str) -> list[str]:
    """Aside copies of `target` (`.<name>.old-<id>` next to it), oldest first."""
    where, prefix = parent(target), f".{basename(target)}{ASIDE}"
    if not fs.is_dir(where):
        return []
    found = [(mtime, name) for name, mtime in fs.list_status(where) if name.startswith(prefix)]
    return [f"{where}/{name}" for _, name in sorted(found)]


def _complete(fs: HadoopFS, path: str) -> bool:
    return fs.exists(f"{path}/{SUCCESS}") and fs.exists(f"{path}/{STAGE_META}")


def restore(fs: HadoopFS, target: str) -> None:
    """Repair what a crashed commit left: put a complete aside copy back when `target` is missing,
    delete aside copies once `target` is complete. Idempotent."""
    asides = aside_copies(fs, target)
    if not asides:
        return
    if not fs.exists(target):
        complete = [a for a in asides if _complete(fs, a)]
        if complete and not fs.rename(complete[-1], target):
            raise CommitError(f"could not restore {complete[-1]} to {target}")
    if _complete(fs, target):
        for a in aside_copies(fs, target):
            fs.delete(a)


def is_committed(fs: HadoopFS, target: str) -> bool:
    restore(fs, target)
    return _complete(fs, target)


def clear_staging(fs: HadoopFS, staging_root: str, keep: str | None = None, leased: bool = False) -> None:
    """Delete attempt directories under `staging_root` other than `keep`: all of them when the
    caller holds the partition's lease (no other attempt can be live), else those older than
    `STALE_AFTER_S`."""
    if not fs.is_dir(staging_root):
        return
    now_ms = time.time() * 1000
    for name, mtime in fs.list_status(staging_root):
        path = f"{staging_root.rstrip('/')}/{name}"
        if keep is not None and basename(keep) == name:
            continue
        if leased or now_ms - mtime > STALE_AFTER_S * 1000:
            fs.delete(path)


def commit(spark, df, target: str, staging_root: str, staging: str, meta, lease=None, stage: str | None = None,
           options: dict | None = None) -> dict:
    """Write `df` to `target` atomically. `meta(written_df) -> dict` computes `_stage.json`.
    `staging` is this attempt's own directory under `staging_root`; `lease` the partition lease
    held (`imgfeat.lease.Lease`), checked right before the checkpoint is replaced; `stage` names
    the stage for fault injection; `options`, the Parquet writer's."""
    fs = HadoopFS(spark)
    restore(fs, target)
    clear_staging(fs, staging_root, keep=staging, leased=lease is not None)
    df.write.options(**(options or {})).mode("errorifexists").parquet(staging)
    info = meta(spark.read.parquet(staging))
    fs.write_text(f"{staging}/{STAGE_META}", json.dumps(info, indent=2, sort_keys=True))
    fault(stage, "after_write")
    fs.mkdirs(parent(target))
    if lease is not None:
        lease.check()
    aside = None
    if fs.exists(target):
        aside = f"{parent(target)}/.{basename(target)}{ASIDE}{basename(staging)}"
        if not fs.rename(target, aside):
            raise CommitError(f"could not move {target} aside to {aside}")
    fault(stage, "after_delete")
    if fs.exists(target) or not fs.rename(staging, target):
        # Someone put a directory there meanwhile (no lease held?): a rename would nest into it.
        if aside is not None and not fs.exists(target):
            fs.rename(aside, target)
        raise CommitError(f"could not rename {staging} to {target}")
    fault(stage, "after_rename")
    if aside is not None:
        fs.delete(aside)
    fs.delete(staging)
    if fs.is_dir(staging_root) and not fs.list_names(staging_root):
        fs.delete(staging_root)
    return info


def write_text_atomically(spark, path: str, text: str | bytes) -> None:
    """Replace the file `path`: write a uniquely named hidden temporary file next to it, then rename
    it over the old one (Hadoop's rename does not replace a file, so the old one is deleted first;
    a crash in between leaves no file, and the writer's retry writes it again)."""
    fs = HadoopFS(spark)
    tmp = f"{parent(path)}/.{basename(path)}.{uuid.uuid4().hex}.tmp"
    fs.mkdirs(parent(path))
    fs.write_bytes(tmp, text.encode("utf-8") if isinstance(text, str) else text)
    try:
        if fs.rename_overwrite(tmp, path):
            return
        fs.delete(path)
        if not fs.rename(tmp, path):
            raise CommitError(f"could not rename {tmp} to {path}")
    finally:
        if fs.exists(tmp):
            fs.delete(tmp)


def read_meta(spark, target: str) -> dict:
    return json.loads(HadoopFS(spark).read_text(f"{target}/{STAGE_META}"))

"""Retention: after a publish, the intermediate checkpoints (ingest, detect, crop, embed: the
picture bytes and crops) of partitions published more than `keep_checkpoints_days` days ago are
deleted. Their features, quarantine, run manifest, duplicates and index shards stay.

Each partition is swept under its lease (never while one of its stages runs) and only if its
manifest, read again under the lease, still says it was published that long ago. What was deleted
is recorded in WAREHOUSE/runs/dt=<date>/retention.json. A later run of such a partition that needs
an intermediate checkpoint recomputes the missing ones first, from the input (`runner.run`), so a
sweep racing a re-run between two of its stages costs time, not a failed run.
"""

from __future__ import annotations

import datetime as dt
import json

from imgfeat.layout import CHECKPOINT_STAGES, Warehouse


def _published_at(fs, wh: Warehouse, date: str) -> dt.datetime | None:
    try:
        manifest = json.loads(fs.read_text(wh.manifest(date)))
        return dt.datetime.fromisoformat(manifest["stages"]["publish"]["finished_at"])
    except Exception:  # no manifest, or one from an older version: not swept
        return None


def sweep(spark, wh: Warehouse, date: str, keep_days: int, now: dt.datetime | None = None) -> list[str]:
    """Delete the intermediate checkpoints of every partition but `date` published more than
    `keep_days` days before `now`; returns the dates swept. `keep_days` 0: nothing is deleted."""
    from imgfeat import lease
    from imgfeat.spark.hadoop import HadoopFS

    if keep_days <= 0:
        return []
    fs = HadoopFS(spark)
    now = now or dt.datetime.now(dt.timezone.utc)
    cutoff = now - dt.timedelta(days=keep_days)
    # One listing per stage: partitions already swept cost nothing on later publishes.
    holding: dict[str, list[str]] = {}
    for stage in CHECKPOINT_STAGES:
        root = wh.checkpoint_root(stage)
        for name in fs.list_names(root) if fs.is_dir(root) else []:
            if name.startswith("dt=") and name != f"dt={date}":
                holding.setdefault(name[3:], []).append(stage)
    swept = []
    for other, held in sorted(holding.items()):
        published = _published_at(fs, wh, other)
        if published is None or published > cutoff:
            continue
        try:
            with lease.hold(spark, wh.lease(other), other, "retention", wait_s=0):
                published = _published_at(fs, wh, other)  # a run may have published it again meanwhile
                if published is None or published > cutoff:
                    continue
                for stage in CHECKPOINT_STAGES:
                    fs.delete(wh.checkpoint(stage, other))
                    fs.delete(wh.staging_root(stage, other))
                fs.write_text(wh.retention_record(other), json.dumps(
                    {"deleted": held, "at": now.isoformat(timespec="seconds"), "by_publish_of": date,
                     "published_at": published.isoformat(timespec="seconds"), "keep_checkpoints_days": keep_days},
                    indent=2, sort_keys=True))
        except lease.LeaseHeld:
            continue  # one of its stages is running: its checkpoints are in use
        swept.append(other)
    return swept

"""Airflow's view of the checkpoints, without Spark, over imgfeat.storage (local files, or WebHDFS).

A checkpoint is *committed* when its directory holds `_SUCCESS` and `_stage.json`. It is *current*
when it was also computed from what its predecessor holds now: for ingest, the input partition's
listing (a partition that gained or changed files is ingested again); for the others, the checkpoint
its predecessor holds now: every `_stage.json`
(and the run manifest) records `commit_id` (its own) and `upstream_commit` (the predecessor's it
read). So when an upstream stage is re-made (forced, or after its checkpoint was deleted), every
downstream checkpoint becomes stale and is recomputed by the next run, even without `force`.

Unreachable storage raises storage.StorageError.
"""

from __future__ import annotations

from imgfeat import params, schemas, storage
from imgfeat.layout import STAGE_META, SUCCESS, Warehouse, input_partition, is_listed, previous_stage


def stage_meta(warehouse_root: str, stage: str, date: str) -> dict | None:
    """The committed checkpoint's `_stage.json` (or the run manifest for publish), else None."""
    wh = Warehouse(warehouse_root)
    if stage == "publish":
        return storage.read_json(wh.manifest(date))
    path = wh.checkpoint(stage, date)
    if not storage.exists(f"{path}/{SUCCESS}"):
        return None
    return storage.read_json(f"{path}/{STAGE_META}")


def current(warehouse_root: str, stage: str, date: str, input_root: str | None = None,
            shaping: dict | None = None) -> tuple[bool, str]:
    """Whether `stage`'s checkpoint for `date` is committed and computed from the current upstream
    (for ingest with `input_root`: from the input partition's current listing) and, given
    `shaping` (params.shaping), with the same values of the parameters that shape it."""
    meta = stage_meta(warehouse_root, stage, date)
    if meta is None:
        return False, f"{stage} dt={date}: no committed checkpoint"
    if stage == "ingest" and input_root is not None and meta.get("input_listing") != input_listing(input_root, date):
        return False, f"ingest dt={date}: the input partition has changed since it was ingested"
    if stage in schemas.STAGE_SCHEMAS and meta.get("schema") != schemas.digest(stage):
        return False, f"{stage} dt={date}: checkpoint was written with another schema (by another version)"
    for name, made, asked in params.changed(stage, meta, shaping or {})[:1]:
        return False, f"{stage} dt={date}: checkpoint was made with {name}={made}, this run asks {name}={asked}"
    prev = previous_stage(stage)
    if prev is not None:
        upstream = stage_meta(warehouse_root, prev, date)
        if upstream is None or meta.get("upstream_commit") != upstream.get("commit_id"):
            return False, f"{stage} dt={date}: checkpoint is stale ({prev} was re-made since)"
    return True, f"{stage} dt={date}: checkpoint {meta.get('commit_id')} is committed and current"


def input_listing(input_root: str, date: str) -> str | None:
    """`inputs.digest` of the input partition's listing, as ingest lists it; None if it is missing."""
    from imgfeat import inputs

    part = input_partition(input_root, date)
    local = params.local_path(part)
    if local is not None:  # links, special files, non-UTF-8 names: listed as ingest's reader lists them
        entries = inputs.list_local(local)
    else:
        files = storage.list_files(part)
        entries = None if files is None else inputs.list_files(
            [(rel, size) for rel, size in files if all(is_listed(c) for c in rel.split("/"))])
    return None if entries is None else inputs.digest(entries)


def input_exists(input_root: str, date: str) -> bool:
    return storage.is_dir(input_partition(input_root, date))


# --- the readiness gate (the wait_for_partition task) -------------------------------------------
class Readiness:
    """Whether an input partition is complete. `reason` says what is missing (one line, no path);
    `seen` is the quiet-period state to keep until the next poke: {"digest", "since"}, None when
    there is nothing to remember (marker mode, or no partition yet)."""

    def __init__(self, ready: bool, reason: str, seen: dict | None = None):
        self.ready, self.reason, self.seen = ready, reason, seen

    def __repr__(self):
        return f"Readiness({self.ready!r}, {self.reason!r}, {self.seen!r})"


def partition_ready(input_root: str, date: str, marker: str = SUCCESS, quiet_period_s: float = 0.0,
                    now: float | None = None, seen: dict | None = None) -> Readiness:
    """Whether the input partition `date` is complete, from the listing alone.

    With `marker` (a file name; the producer writes it last): ready when INPUT/dt=<date>/<marker>
    exists. Without (""): ready when the partition holds input files and its listing (the names
    and sizes ingest reads, `input_listing`) is the one `seen` at a poke at least `quiet_period_s`
    seconds before `now`. `seen` is the previous poke's `Readiness.seen`; keep the one returned.
    Raises StorageError when the storage cannot be reached."""
    import time

    now = time.time() if now is None else now
    part = input_partition(input_root, date)
    if marker:
        if storage.exists(f"{part}/{marker}"):
            return Readiness(True, f"{marker} is present")
        return Readiness(False, f"no {marker}" + ("" if storage.is_dir(part) else " (the partition does not exist)"))
    listing = input_listing(input_root, date)
    if listing is None:
        return Readiness(False, "the partition does not exist")
    since = seen["since"] if seen and seen.get("digest") == listing else now
    state = {"digest": listing, "since": since}
    files = int(listing.split(":", 1)[0])
    if files == 0:
        return Readiness(False, "the partition holds no input files", state)
    quiet = now - since
    if quiet >= quiet_period_s:
        return Readiness(True, f"listing of {files} files unchanged for {quiet:.0f} s", state)
    return Readiness(False, f"listing still changing (unchanged for {quiet:.0f} s of the {quiet_period_s:g} s "
                            "quiet period)", state)


# --- late files (the lookback of the find_late_files task) ---------------------------------
def changed_since_ingest(input_root: str, warehouse_root: str, date: str, lookback_days: int) -> list[dict]:
    """The partitions among the `lookback_days` days before `date` that were ingested and whose
    input listing has changed since: [{"partition_date", "files_then", "files_now"}], oldest first.
    A day never ingested (no committed ingest checkpoint) is not a revisit: its own run handles it."""
    import datetime as dt

    day = dt.date.fromisoformat(date)
    out = []
    for back in range(lookback_days, 0, -1):
        d = (day - dt.timedelta(days=back)).isoformat()
        meta = stage_meta(warehouse_root, "ingest", d)
        if meta is None or "input_listing" not in meta:
            continue
        now = input_listing(input_root, d)
        if now is not None and now != meta["input_listing"]:
            files = lambda listing: int(str(listing).split(":", 1)[0]) if listing else 0  # noqa: E731
            out.append({"partition_date": d, "files_then": files(meta["input_listing"]), "files_now": files(now)})
    return out

"""Airflow's view of the checkpoints, without Spark: local files, or WebHDFS for hdfs:// roots.

A checkpoint is *committed* when its directory holds `_SUCCESS` and `_stage.json`. It is *current*
when it was also computed from what its predecessor holds now: for ingest, the input partition's
listing (a partition that gained or changed files is ingested again); for the others, the checkpoint
its predecessor holds now: every `_stage.json`
(and the run manifest) records `commit_id` (its own) and `upstream_commit` (the predecessor's it
read). So when an upstream stage is re-made (forced, or after its checkpoint was deleted), every
downstream checkpoint becomes stale and is recomputed by the next run, even without `force`.
"""

from __future__ import annotations

import json
import os
import uuid

from imgfeat import params
from imgfeat.layout import STAGE_META, SUCCESS, Warehouse, input_partition, is_listed, previous_stage


class StorageError(RuntimeError):
    """Storage is unreachable or refuses an operation; the message is one line. `transient`: worth
    a retry (an unreachable NameNode may come back; a refused permission will not)."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def _hdfs(path: str):
    from urllib.parse import urlparse

    from imgfeat.webhdfs import client_for

    return client_for(path), urlparse(path).path or "/"


def _call(path: str, fn):
    import requests

    try:
        return fn()
    except requests.exceptions.ConnectionError:
        from imgfeat.webhdfs import webhdfs_url

        raise StorageError(f"NameNode of {path} is unreachable (WebHDFS {webhdfs_url(path)} refused the connection)",
                           transient=True) from None


def exists(path: str) -> bool:
    local = params.local_path(path)
    if local is not None:
        return os.path.exists(local)
    client, p = _hdfs(path)
    return _call(path, lambda: client.status(p, strict=False)) is not None


def is_dir(path: str) -> bool:
    local = params.local_path(path)
    if local is not None:
        return os.path.isdir(local)
    client, p = _hdfs(path)
    status = _call(path, lambda: client.status(p, strict=False))
    return bool(status) and status["type"] == "DIRECTORY"


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    local = params.local_path(path)
    if local is not None:
        if not os.path.exists(local):
            return None
        with open(local, "rb") as f:
            return f.read()
    client, p = _hdfs(path)

    def read():
        if client.status(p, strict=False) is None:
            return None
        with client.read(p) as r:
            return r.read()
    return _call(path, read)


def read_json(path: str) -> dict | None:
    data = read_bytes(path)
    return None if data is None else json.loads(data)


def list_names(path: str) -> list[str]:
    """Names under the directory `path` ([] when it does not exist)."""
    local = params.local_path(path)
    if local is not None:
        return sorted(os.listdir(local)) if os.path.isdir(local) else []
    client, p = _hdfs(path)
    return sorted(_call(path, lambda: client.list(p) if client.status(p, strict=False) else []))


def write_json(path: str, obj: dict) -> None:
    """Replace `path` with `obj` as JSON (locally: write a temporary file, then rename)."""
    text = json.dumps(obj, indent=2, sort_keys=True)
    local = params.local_path(path)
    if local is not None:
        os.makedirs(os.path.dirname(local), exist_ok=True)
        tmp = f"{local}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, local)
        return
    client, p = _hdfs(path)
    _call(path, lambda: client.write(p, data=text, encoding="utf-8", overwrite=True))


def check_writable(root: str) -> None:
    """Create and remove a probe directory under `root`; raise StorageError in one line if refused."""
    probe = f"{root.rstrip('/')}/_staging/.probe-{uuid.uuid4().hex}"
    local = params.local_path(probe)
    try:
        if local is not None:
            os.makedirs(local)
            os.rmdir(local)
            return
    except OSError as e:
        raise StorageError(f"warehouse_root {root} is not writable: {e.strerror}") from None
    from hdfs.util import HdfsError

    client, p = _hdfs(probe)

    def make():
        client.makedirs(p)
        client.delete(p)
    try:
        _call(root, make)
    except HdfsError as e:
        raise StorageError(f"warehouse_root {root} is not writable: {str(e).splitlines()[0]}") from None


def stage_meta(warehouse_root: str, stage: str, date: str) -> dict | None:
    """The committed checkpoint's `_stage.json` (or the run manifest for publish), else None."""
    wh = Warehouse(warehouse_root)
    if stage == "publish":
        return read_json(wh.manifest(date))
    path = wh.checkpoint(stage, date)
    if not exists(f"{path}/{SUCCESS}"):
        return None
    return read_json(f"{path}/{STAGE_META}")


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
    if local is not None:
        entries = inputs.list_local(local)
        return None if entries is None else inputs.digest(entries)
    client, p = _hdfs(part)
    if not is_dir(part):
        return None
    found = []
    for (dirpath, _), _, files in _call(part, lambda: list(client.walk(p, status=True))):
        rel = dirpath[len(p.rstrip("/")):].strip("/")
        if rel and not all(is_listed(c) for c in rel.split("/")):
            continue
        found += [(f"{rel}/{f}" if rel else f, st["length"]) for f, st in files if is_listed(f)]
    return inputs.digest(inputs.list_files(found))


def input_exists(input_root: str, date: str) -> bool:
    return is_dir(input_partition(input_root, date))


def remove(path: str) -> None:
    """Delete the file `path` if it exists (locally, or over WebHDFS)."""
    local = params.local_path(path)
    if local is not None:
        try:
            os.remove(local)
        except FileNotFoundError:
            pass
        return
    client, p = _hdfs(path)
    _call(path, lambda: client.delete(p))


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
        if exists(f"{part}/{marker}"):
            return Readiness(True, f"{marker} is present")
        return Readiness(False, f"no {marker}" + ("" if is_dir(part) else " (the partition does not exist)"))
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


# --- late files (lookback; the building block: not yet wired into the DAG) ---------------------
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

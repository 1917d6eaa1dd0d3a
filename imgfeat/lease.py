"""Partition leases: at most one stage app writes a partition at a time.

Two DAG runs of the same partition can run together (`max_active_runs=2`: a backfill and a UI
trigger). Each stage app holds the partition's lease while it runs:

  WAREHOUSE/_leases/dt=<date>.json
  {"token": "<uuid>", "stage": "ingest", "dag_id": ..., "run_id": ..., "task_id": ..., "try_number": ...,
   "host": ..., "pid": ..., "process_started": ..., "acquired_at": "<ISO UTC>", "expires_at": "<ISO UTC>",
   "expires_at_s": <epoch seconds>}

Taking it is one atomic create-if-absent on the warehouse's file system (HDFS: `create(path,
overwrite=false)`, which the NameNode refuses when the file exists; local: `open(O_CREAT|O_EXCL)`).
A second app polls every IMGFEAT_LEASE_POLL_S (2) seconds for up to IMGFEAT_LEASE_WAIT_S (300), then
fails with one line: `partition dt=<date> is leased by <holder> until <time>`.

A lease is taken over (never while its holder may be alive and within its term) when it is:
  - expired: held longer than IMGFEAT_LEASE_TTL_S (7200) seconds;
  - left by an earlier attempt of the same Airflow run (AIRFLOW_CTX_DAG_ID/DAG_RUN_ID: a run's tasks
    run one at a time, so a retry's predecessor is dead — Airflow retries only failed attempts);
  - left by a dead process on this host (pid and its start time no longer alive);
  - unreadable for more than a minute (its creator died between create and write).
Takeover race: contenders first create `<lease>.takeover-<old token>` atomically; only its creator
deletes the old lease (after re-reading that it is still the old one), then everyone competes on the
ordinary create again. The holder checks before replacing a checkpoint that the lease is still its
own (`Lease.check`), and releases it (deletes the file if still its own) when the stage ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import sys
import time
import uuid

TTL_S = float(os.environ.get("IMGFEAT_LEASE_TTL_S", str(2 * 3600)))
WAIT_S = float(os.environ.get("IMGFEAT_LEASE_WAIT_S", "300"))
POLL_S = float(os.environ.get("IMGFEAT_LEASE_POLL_S", "2"))
UNREADABLE_GRACE_S = 60


class LeaseHeld(RuntimeError):
    """Another run holds the partition; the message names it and until when."""


class LeaseLost(RuntimeError):
    """The lease expired and was taken over while this stage ran: it must not commit."""


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")


def _started(pid: int) -> str | None:
    """When the process started (psutil: epoch seconds), or None when it is gone or a zombie. With
    the pid, it names one process: a pid reused by a later process has another start time."""
    import psutil

    try:
        p = psutil.Process(pid)
        return None if p.status() == psutil.STATUS_ZOMBIE else f"{p.create_time():.2f}"
    except (psutil.Error, ValueError):  # gone, not ours to see, or not a valid pid
        return None


def _alive(pid: int, started: str | None) -> bool:
    """The process `pid` still runs (and, with `started`, is the same process). A record without a
    start time (an older lease) is alive while its pid is."""
    now = _started(pid)
    return now is not None and (started is None or now == started)


def me(stage: str) -> dict:
    """Who would hold the lease: the Airflow run and task (when run by Airflow), host and process."""
    env = os.environ
    return {"stage": stage, "dag_id": env.get("AIRFLOW_CTX_DAG_ID"), "run_id": env.get("AIRFLOW_CTX_DAG_RUN_ID"),
            "task_id": env.get("AIRFLOW_CTX_TASK_ID"), "try_number": env.get("AIRFLOW_CTX_TRY_NUMBER"),
            "host": socket.gethostname(), "pid": os.getpid(), "process_started": _started(os.getpid())}


def describe(record: dict) -> str:
    who = f"stage {record.get('stage')}, pid {record.get('pid')} on {record.get('host')}"
    if record.get("run_id"):
        return f"run {record.get('dag_id')}/{record['run_id']} ({who})"
    return who


def held_message(date: str, record: dict) -> str:
    return f"partition dt={date} is leased by {describe(record)} until {record.get('expires_at')}"


def reclaimable(record: dict | None, mtime_s: float, mine: dict, now: float) -> str | None:
    """Why the lease `record` may be taken over by `mine`, or None."""
    if record is None:
        return "unreadable" if now - mtime_s > UNREADABLE_GRACE_S else None
    if now >= float(record.get("expires_at_s", 0)):
        return f"expired at {record.get('expires_at')}"
    if mine.get("run_id") and (record.get("dag_id"), record.get("run_id")) == (mine["dag_id"], mine["run_id"]):
        return "left by an earlier attempt of the same run"
    if record.get("host") == mine["host"] and record.get("pid") != mine["pid"] and \
            not _alive(int(record.get("pid", -1)), record.get("process_started")):
        return "its process is gone"
    return None


# --- storage: an atomic create-if-absent ------------------------------------------------------------
class LocalStore:
    def read(self, path: str) -> tuple[dict | None, float] | None:
        """(record or None if unreadable, mtime in s), or None when the file does not exist."""
        try:
            with open(path, "rb") as f:
                data, mtime = f.read(), os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            return None
        return _parse(data), mtime

    def create(self, path: str, data: bytes) -> bool:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


class HadoopStore:
    """Through the Spark JVM's Hadoop FileSystem (hdfs://, any Hadoop URI)."""

    def __init__(self, fs):
        self.fs = fs

    def read(self, path: str):
        from imgfeat.spark.hadoop import PartialRead

        try:
            mtime = self.fs.modification_time(path) / 1000
            data = self.fs.read_bytes(path)
        except PartialRead:  # another contender's create, still being written: unreadable for now
            return None, mtime
        except Exception as e:  # noqa: BLE001 - py4j wraps FileNotFoundException
            if "FileNotFoundException" in str(e):
                return None
            raise
        return _parse(data), mtime

    def create(self, path: str, data: bytes) -> bool:
        return self.fs.create_new(path, data)

    def delete(self, path: str) -> None:
        self.fs.delete(path)


def _parse(data: bytes) -> dict | None:
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "token" in record else None


def store_for(spark, path: str):
    from imgfeat.params import local_path

    local = local_path(path)
    if local is not None:
        return LocalStore(), local
    from imgfeat.spark.hadoop import HadoopFS

    return HadoopStore(HadoopFS(spark)), path


# --- the lease ------------------------------------------------------------------------------------
class Lease:
    def __init__(self, store, path: str, date: str, record: dict):
        self.store, self.path, self.date, self.record = store, path, date, record

    @property
    def token(self) -> str:
        return self.record["token"]

    def check(self) -> None:
        """Raise LeaseLost unless the lease file still holds this lease."""
        found = self.store.read(self.path)
        record = found[0] if found else None
        if record is None or record.get("token") != self.token:
            holder = describe(record) if record else "nobody"
            raise LeaseLost(f"the lease of partition dt={self.date} was taken over (now: {holder}); not committing")

    def release(self) -> None:
        found = self.store.read(self.path)
        if found and found[0] and found[0].get("token") == self.token:
            self.store.delete(self.path)


def acquire(store, path: str, date: str, stage: str, wait_s: float | None = None, ttl_s: float | None = None,
            poll_s: float | None = None, log=None) -> Lease:
    wait_s = WAIT_S if wait_s is None else wait_s
    ttl_s = TTL_S if ttl_s is None else ttl_s
    poll_s = POLL_S if poll_s is None else poll_s
    log = log or (lambda msg: print(f"imgfeat: {msg}", file=sys.stderr, flush=True))
    mine = me(stage)
    deadline = time.time() + wait_s
    waited = False
    while True:
        now = time.time()
        record = {**mine, "token": uuid.uuid4().hex, "acquired_at": _iso(now), "expires_at": _iso(now + ttl_s),
                  "expires_at_s": round(now + ttl_s, 3)}
        if store.create(path, json.dumps(record, indent=2, sort_keys=True).encode()):
            return Lease(store, path, date, record)
        found = store.read(path)
        if found is None:
            continue  # released meanwhile: create again
        current, mtime = found
        why = reclaimable(current, mtime, mine, time.time())
        if why:
            marker = f"{path}.takeover-{current['token'] if current else int(mtime * 1000)}"
            if store.create(marker, json.dumps(record).encode()):
                try:
                    again = store.read(path)
                    if again is not None and again[0] == current:
                        log(f"taking over the lease of partition dt={date} from "
                            f"{describe(current) if current else 'an unreadable lease'}: {why}")
                        store.delete(path)
                finally:
                    store.delete(marker)
                continue
        if time.time() >= deadline:
            raise LeaseHeld(held_message(date, current) if current else
                            f"partition dt={date} is leased (lease file {path} is being written)")
        if not waited:
            log(f"waiting up to {wait_s:.0f} s: {held_message(date, current) if current else path}")
            waited = True
        time.sleep(min(poll_s, max(0.05, deadline - time.time())))


@contextlib.contextmanager
def hold(spark, path: str, date: str, stage: str, **kwargs):
    """Hold the partition's lease for the block (released in `finally`)."""
    store, where = store_for(spark, path)
    lease = acquire(store, where, date, stage, **kwargs)
    try:
        yield lease
    finally:
        lease.release()

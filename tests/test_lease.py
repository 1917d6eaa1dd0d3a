"""Partition leases on a local warehouse: one holder, a message naming it, takeover of dead ones."""

import json
import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from imgfeat import lease
from imgfeat.layout import Warehouse

DATE = "2026-11-07"


@pytest.fixture
def path(tmp_path):
    return Warehouse(str(tmp_path)).lease(DATE)


def _acquire(path, stage="ingest", **kw):
    return lease.acquire(lease.LocalStore(), path, DATE, stage, **{"wait_s": 0, "poll_s": 0.05, **kw})


def test_a_second_holder_fails_fast_naming_the_holder(path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "image_features")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "backfill__2026-11-07")
    first = _acquire(path, ttl_s=600)
    record = json.loads(open(path).read())
    assert record["token"] == first.token and record["pid"] == os.getpid() and record["stage"] == "ingest"
    assert record["run_id"] == "backfill__2026-11-07" and record["expires_at_s"] > time.time() + 590
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__2026-12-01")
    with pytest.raises(lease.LeaseHeld) as e:
        _acquire(path, stage="detect")
    assert str(e.value) == (f"partition dt={DATE} is leased by run image_features/backfill__2026-11-07 "
                            f"(stage ingest, pid {os.getpid()} on {record['host']}) until {record['expires_at']}")
    first.release()
    assert not os.path.exists(path)
    _acquire(path).release()


def test_a_waiting_holder_gets_the_lease_when_it_is_released(path):
    first = _acquire(path)
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-c", (
        "import sys; from imgfeat import lease; "
        f"l = lease.acquire(lease.LocalStore(), {path!r}, {DATE!r}, 'detect', wait_s=30, poll_s=0.1); "
        "print(l.token); l.release()")], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    assert proc.poll() is None  # still waiting
    first.release()
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and len(out.strip()) == 32 and time.time() - t0 < 20


def test_expired_dead_and_same_run_leases_are_taken_over(path, monkeypatch):
    # expired
    old = _acquire(path, ttl_s=0.01)
    time.sleep(0.05)
    new = _acquire(path)
    with pytest.raises(lease.LeaseLost, match=f"the lease of partition dt={DATE} was taken over"):
        old.check()
    new.check()
    old.release()  # not its lease any more: a no-op
    assert os.path.exists(path)
    new.release()
    # left by a process that is gone (same host)
    proc = subprocess.run([sys.executable, "-c", (
        "from imgfeat import lease; "
        f"lease.acquire(lease.LocalStore(), {path!r}, {DATE!r}, 'crop', wait_s=0, ttl_s=3600)")], check=True)
    assert json.loads(open(path).read())["stage"] == "crop"
    _acquire(path).release()
    # left by an earlier attempt of the same Airflow run (a live process here, as on another host)
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "image_features")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__1")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    record = {**lease.me("embed"), "pid": os.getppid(), "token": "t" * 32, "expires_at": "later",
              "expires_at_s": time.time() + 3600}
    open(path, "w").write(json.dumps(record))
    assert _acquire(path).record["run_id"] == "manual__1"


def _race(path, barrier, results):
    barrier.wait()
    try:
        held = lease.acquire(lease.LocalStore(), path, DATE, "ingest", wait_s=0, ttl_s=3600)
        results.put(held.token)
        time.sleep(1.0)
    except lease.LeaseHeld:
        results.put(None)


def test_contenders_for_an_expired_lease_end_with_one_holder(path):
    old = {**lease.me("ingest"), "pid": os.getppid(), "token": "x" * 32, "expires_at": "past", "expires_at_s": 1}
    os.makedirs(os.path.dirname(path))
    open(path, "w").write(json.dumps(old))
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(path, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    tokens = [results.get(timeout=5) for _ in procs]
    winners = [t for t in tokens if t]
    assert len(winners) == 1, tokens
    assert not [n for n in os.listdir(os.path.dirname(path)) if ".takeover-" in n]


def test_the_operator_fails_before_spark_submit_while_another_run_holds_the_partition(tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowException
    from imgfeat_airflow import StageSubmitOperator

    op = StageSubmitOperator(stage="detect")
    op._wait_for_lease(str(tmp_path), DATE)  # free: returns at once
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "image_features")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "scheduled__other")
    held = lease.acquire(lease.LocalStore(), Warehouse(str(tmp_path)).lease(DATE), DATE, "ingest", wait_s=0)
    monkeypatch.setattr(lease, "WAIT_S", 0)
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__mine")
    with pytest.raises(AirflowException, match=rf"stage detect: partition dt={DATE} is leased by run "
                                               r"image_features/scheduled__other \(stage ingest, pid \d+ on "):
        op._wait_for_lease(str(tmp_path), DATE)
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "scheduled__other")  # its own run's retry goes ahead
    op._wait_for_lease(str(tmp_path), DATE)
    held.release()


def test_a_lease_file_being_written_on_hdfs_reads_as_unreadable_not_as_an_error():
    """CI of 8b04885: two concurrent ingests on a real HDFS; one read the other's lease file while it
    was being written (its bytes and the NameNode's length differed) and failed. It is unreadable for
    now: the contender waits (an unreadable lease is reclaimed only after UNREADABLE_GRACE_S)."""
    from imgfeat.spark.hadoop import PartialRead

    class BeingWritten:
        def modification_time(self, path):
            return 1_700_000_000_000

        def read_bytes(self, path):
            raise PartialRead(f"{path}: read 0 bytes, its length is 120 (being written?)")

    store = lease.HadoopStore(BeingWritten())
    assert store.read("hdfs://nn/w/_leases/dt=x.json") == (None, 1_700_000_000.0)
    assert lease.reclaimable(None, 1_700_000_000.0, lease.me("ingest"), 1_700_000_000.0 + 1) is None

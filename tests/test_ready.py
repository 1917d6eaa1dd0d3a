"""The readiness gate before ingest (wait_for_partition): the readiness function on real files with
explicit clocks, its params, and the sensor's decisions with a stand-in task instance (no scheduler)."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pytest

from imgfeat import checkpoints, params

DATE = "2026-11-30"


def part(root):
    return root / f"dt={DATE}"


def test_marker_mode_waits_for_the_marker(tmp_path):
    r = checkpoints.partition_ready(str(tmp_path), DATE, "_SUCCESS", now=0)
    assert (r.ready, r.reason, r.seen) == (False, "no _SUCCESS (the partition does not exist)", None)
    part(tmp_path).mkdir()
    (part(tmp_path) / "a.jpg").write_bytes(b"x" * 10)
    r = checkpoints.partition_ready(str(tmp_path), DATE, "_SUCCESS", now=0)
    assert (r.ready, r.reason) == (False, "no _SUCCESS")
    (part(tmp_path) / "_SUCCESS").write_text("")
    r = checkpoints.partition_ready(str(tmp_path), DATE, "_SUCCESS", now=0)
    assert (r.ready, r.reason, r.seen) == (True, "_SUCCESS is present", None)
    assert checkpoints.partition_ready(str(tmp_path), DATE, ".done", now=0).reason == "no .done"


def test_the_marker_is_never_an_input_file(tmp_path):
    from imgfeat import inputs

    part(tmp_path).mkdir()
    (part(tmp_path) / "a.jpg").write_bytes(b"x" * 10)
    before = checkpoints.input_listing(str(tmp_path), DATE)
    (part(tmp_path) / "_SUCCESS").write_text("")
    (part(tmp_path) / ".done").write_text("")
    assert checkpoints.input_listing(str(tmp_path), DATE) == before
    assert [e.image_id for e in inputs.list_local(str(part(tmp_path)))] == ["a.jpg"]


def test_quiet_period_waits_while_the_listing_changes_then_proceeds(tmp_path):
    ready = lambda now, seen: checkpoints.partition_ready(str(tmp_path), DATE, "", 60, now=now, seen=seen)  # noqa: E731
    r = ready(1000, None)
    assert (r.ready, r.reason, r.seen) == (False, "the partition does not exist", None)
    part(tmp_path).mkdir()
    r = ready(1010, r.seen)
    assert not r.ready and r.reason == "the partition holds no input files"
    (part(tmp_path) / "a.jpg").write_bytes(b"x" * 10)
    r = ready(1020, r.seen)
    assert not r.ready and r.seen["since"] == 1020 and r.reason.startswith("listing still changing")
    (part(tmp_path) / "a.jpg").write_bytes(b"x" * 20)  # still being written: same name, new size
    r = ready(1050, r.seen)
    assert not r.ready and r.seen["since"] == 1050
    (part(tmp_path) / "b").mkdir()
    (part(tmp_path) / "b" / "c.png").write_bytes(b"y" * 5)  # a new file in a subfolder
    r = ready(1100, r.seen)
    assert not r.ready and r.seen["since"] == 1100
    (part(tmp_path) / "_tmp.part").write_bytes(b"z")  # hidden names are not input: no change
    r = ready(1130, r.seen)
    assert not r.ready and r.seen["since"] == 1100
    assert r.reason == "listing still changing (unchanged for 30 s of the 60 s quiet period)"
    r = ready(1160, r.seen)
    assert r.ready and r.reason == "listing of 2 files unchanged for 60 s"
    # No memory of an earlier look: the quiet period starts now (0 s: ready at first sight).
    assert not ready(5000, None).ready
    assert checkpoints.partition_ready(str(tmp_path), DATE, "", 0, now=5000).ready


@pytest.mark.parametrize("name,value,message", [
    ("ready_marker", "READY", "'READY' would be read as an input file"),
    ("ready_marker", "_k=v", "expected a file name"),
    ("ready_marker", "a/_SUCCESS", "expected a file name"),
    ("ready_marker", "..", "expected a file name"),
    ("ready_marker", "_metadata", "would be read as an input file"),
    ("quiet_period_s", -1, "expected a number of seconds >= 0"),
    ("quiet_period_s", "soon", "expected a number of seconds >= 0"),
    ("poke_interval_s", 0, "expected a number of seconds > 0"),
    ("wait_timeout_s", float("nan"), "expected a number of seconds >= 0"),
    ("wait", "maybe", "expected true or false"),
])
def test_gate_params_are_refused_naming_the_param(name, value, message):
    from imgfeat_airflow import WaitForPartitionSensor

    with pytest.raises(params.ParamError, match=f"^{name}: .*{message}"):
        WaitForPartitionSensor.settings({name: value})


def test_gate_defaults():
    from imgfeat_airflow import WaitForPartitionSensor

    assert WaitForPartitionSensor.settings({}) == {"wait": False, "ready_marker": "_SUCCESS", "quiet_period_s": 900,
                                                  "poke_interval_s": 300, "wait_timeout_s": 43200}
    assert WaitForPartitionSensor.settings({"ready_marker": ""})["ready_marker"] == ""


# --- the sensor, with a stand-in task instance --------------------------------------------------
class FakeTI:
    def __init__(self, first=None):
        self.first = first

    def get_first_reschedule_date(self, context):
        return self.first


def _sensor(root, wh):
    from imgfeat_airflow import WaitForPartitionSensor

    s = WaitForPartitionSensor()
    s.partition_date, s.input_root, s.warehouse_root = DATE, str(root), str(wh)
    return s


def _context(run_type="scheduled", first=None, **conf):
    from imgfeat_airflow import PARAMS

    values = {k: v.value for k, v in PARAMS.items()}
    return {"params": {**values, **conf}, "dag_run": SimpleNamespace(run_type=run_type), "ti": FakeTI(first)}


def test_a_manual_run_does_not_wait_unless_asked(tmp_path):
    from airflow.sdk.exceptions import AirflowRescheduleException

    s = _sensor(tmp_path / "in", tmp_path / "wh")
    assert s.execute(_context("manual")) is None  # the partition is missing: ingest says so
    with pytest.raises(AirflowRescheduleException):
        s.execute(_context("manual", wait=True))
    with pytest.raises(AirflowRescheduleException):
        s.execute(_context("backfill"))


def test_the_sensor_reschedules_until_the_marker_then_succeeds(tmp_path):
    from airflow.sdk import timezone
    from airflow.sdk.exceptions import AirflowRescheduleException

    s = _sensor(tmp_path, tmp_path / "wh")
    ctx = _context(first=timezone.utcnow() - dt.timedelta(seconds=5), poke_interval_s=7)
    with pytest.raises(AirflowRescheduleException) as e:
        s.execute(ctx)
    assert 6 < (e.value.reschedule_date - timezone.utcnow()).total_seconds() <= 7
    part(tmp_path).mkdir()
    (part(tmp_path) / "a.jpg").write_bytes(b"x")
    with pytest.raises(AirflowRescheduleException):
        s.execute(ctx)
    (part(tmp_path) / "_SUCCESS").write_text("")
    assert s.execute(ctx) is None
    assert not (tmp_path / "wh").exists()  # marker mode keeps no state


def test_the_timeout_fails_in_one_line_naming_the_partition_and_writes_nothing(tmp_path):
    from airflow.sdk import timezone
    from airflow.sdk.exceptions import AirflowFailException

    s = _sensor(tmp_path, tmp_path / "wh")
    ctx = _context(first=timezone.utcnow() - dt.timedelta(seconds=31), wait_timeout_s=30)
    with pytest.raises(AirflowFailException) as e:
        s.execute(ctx)
    assert str(e.value) == (f"wait_for_partition: input partition {tmp_path}/dt={DATE} not ready after 31 s: "
                            "no _SUCCESS (the partition does not exist)")
    part(tmp_path).mkdir()
    (part(tmp_path) / "a.jpg").write_bytes(b"x")
    ctx = _context(first=timezone.utcnow() - dt.timedelta(seconds=31), wait_timeout_s=30, ready_marker="")
    with pytest.raises(AirflowFailException, match=r"^wait_for_partition: input partition .* not ready after 31 s: "
                                                   r"listing still changing \(unchanged for 0 s of the 900 s"):
        s.execute(ctx)
    assert not (tmp_path / "wh").exists()


def test_quiet_mode_keeps_its_state_between_pokes_and_removes_it_when_ready(tmp_path):
    from airflow.sdk import timezone
    from airflow.sdk.exceptions import AirflowRescheduleException

    wh = tmp_path / "wh"
    s = _sensor(tmp_path, wh)
    part(tmp_path).mkdir()
    (part(tmp_path) / "a.jpg").write_bytes(b"x")
    ctx = _context(first=timezone.utcnow(), ready_marker="", quiet_period_s=60)
    with pytest.raises(AirflowRescheduleException):
        s.execute(ctx)
    state = wh / "_staging" / "ready" / f"dt={DATE}.json"
    seen = json.loads(state.read_text())
    assert seen["digest"] == checkpoints.input_listing(str(tmp_path), DATE)
    state.write_text(json.dumps({**seen, "since": seen["since"] - 61}))  # as if first seen 61 s ago
    assert s.execute(ctx) is None
    assert not state.exists()


@pytest.mark.parametrize("task,conf,message", [
    ("gate", {"partition_date": None}, "wait_for_partition: invalid parameter: partition_date is required"),
    ("gate", {"ready_marker": "DONE"}, "wait_for_partition: invalid parameter: ready_marker: 'DONE' would be read"),
    ("late", {"lookback_days": -1}, "find_late_files: invalid parameter: lookback_days: expected an integer >= 0, got -1"),
    ("late", {"lookback_days": 91}, "find_late_files: invalid parameter: lookback_days: expected at most 90 days, got 91"),
    ("late", {"partition_date": None}, "find_late_files: invalid parameter: partition_date is required"),
])
def test_the_gate_and_find_late_files_refuse_bad_params_in_one_line(tmp_path, task, conf, message):
    import re

    from airflow.sdk.exceptions import AirflowFailException

    t = (_sensor if task == "gate" else _late_task)(tmp_path, tmp_path / "wh")
    if "partition_date" in conf:
        t.partition_date = ""
    with pytest.raises(AirflowFailException, match="^" + re.escape(message)):
        t.execute(_context(**conf))


# --- late files: the find_late_files task ------------------------------------------------------
def _ingested(inp, wh, date, files: dict) -> None:
    """An input partition with `files` (name -> bytes) and a committed ingest checkpoint of it."""
    for name, data in files.items():
        (inp / f"dt={date}").mkdir(parents=True, exist_ok=True)
        (inp / f"dt={date}" / name).write_bytes(data)
    ck = wh / "ingest" / f"dt={date}"
    ck.mkdir(parents=True)
    (ck / "_SUCCESS").write_text("")
    (ck / "_stage.json").write_text(json.dumps({"commit_id": date, "input_listing": checkpoints.input_listing(str(inp), date)}))


def _late_task(inp, wh):
    from imgfeat_airflow import FindLateFilesOperator

    t = FindLateFilesOperator()
    t.partition_date, t.input_root, t.warehouse_root = DATE, str(inp), str(wh)
    return t


def test_a_scheduled_run_names_the_earlier_partitions_that_gained_files_within_its_lookback(tmp_path):
    inp, wh = tmp_path / "input", tmp_path / "warehouse"
    for d in ("2026-11-26", "2026-11-28", "2026-11-29"):
        _ingested(inp, wh, d, {"a.jpg": b"123"})
    task = _late_task(inp, wh)
    assert task.execute(_context("scheduled")) == []
    (inp / "dt=2026-11-29" / "late.jpg").write_bytes(b"12")
    (inp / "dt=2026-11-28" / "a.jpg").write_bytes(b"1234")  # replaced by a larger file
    (inp / "dt=2026-11-26" / "late.jpg").write_bytes(b"12")  # 4 days back: outside the default 3
    assert task.execute(_context("scheduled")) == ["2026-11-28", "2026-11-29"]
    assert task.execute(_context("backfill", lookback_days=4)) == ["2026-11-26", "2026-11-28", "2026-11-29"]
    assert task.execute(_context("scheduled", lookback_days=0)) == []
    assert task.execute(_context("manual")) == []  # manual runs do not look back
    assert task.execute(_context("asset_triggered")) == []

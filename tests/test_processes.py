"""devtools.processes: how the dev daemons (HDFS, Spark standalone, local Airflow) are stopped."""

from __future__ import annotations

import subprocess
import sys
import time

from devtools.processes import alive, cmdline, terminate

# A group leader that starts a child of its own, then waits: terminate() must stop both.
LEADER = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"


def _children(pid: int) -> list:
    import psutil

    return [c.pid for c in psutil.Process(pid).children()]


def test_terminate_stops_the_whole_group():
    p = subprocess.Popen([sys.executable, "-c", LEADER, "marker-arg"], start_new_session=True)
    deadline = time.monotonic() + 30
    while not _children(p.pid):
        assert time.monotonic() < deadline, "the leader never started its child"
        time.sleep(0.05)
    child = _children(p.pid)[0]
    assert alive(p.pid) and alive(child)
    assert "marker-arg" in cmdline(p.pid)
    terminate(p.pid, p, timeout=10)
    assert p.returncode is not None and not alive(p.pid)
    deadline = time.monotonic() + 10
    while alive(child):  # TERM reached it too; its new parent reaps it
        assert time.monotonic() < deadline, "the group's child survived"
        time.sleep(0.05)
    assert cmdline(p.pid) == []


def test_a_zombie_is_not_alive():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while alive(p.pid):  # exited, not reaped yet: a zombie
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert cmdline(p.pid) == []
    p.wait()
    assert not alive(p.pid) and not alive(-1)

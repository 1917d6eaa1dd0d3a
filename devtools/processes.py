"""The dev daemons' processes (HDFS, the Spark standalone cluster, the local Airflow), through psutil.

Each daemon is started with `start_new_session=True`, so it leads its own process group: stopping
it signals the whole group (an Airflow scheduler's workers, a Spark Worker's executors).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil


def alive(pid: int) -> bool:
    """Running and not a zombie (a zombie keeps its pid until its parent reaps it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, ValueError):  # ValueError: not a valid pid
        return False


def cmdline(pid: int) -> list[str]:
    """The arguments of a running process; [] once it is gone (or a zombie)."""
    try:
        return psutil.Process(pid).cmdline() if alive(pid) else []
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def terminate(pid: int, proc: subprocess.Popen | None = None, timeout: float = 20) -> None:
    """TERM the process group `pid` leads, KILL it after `timeout`; return once `pid` is gone.
    Pass `proc` when `pid` is our own child, so it is reaped instead of staying a zombie."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None:
                proc.poll()
            if not alive(pid):
                return
            time.sleep(0.1)
    raise RuntimeError(f"process {pid} survived SIGKILL")

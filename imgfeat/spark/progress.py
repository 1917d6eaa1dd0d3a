"""Progress lines while a stage's Spark jobs run: every IMGFEAT_PROGRESS_S seconds (default 30; 0: off)
the driver prints the images done of the stage's biggest running Spark stage, from its tasks (a
stage's tasks hold about equal numbers of images: the runner repartitions by --images-per-task),
and the rate so far. They go to stderr, which spark-submit's operator streams into the task's log."""

from __future__ import annotations

import os
import sys
import threading
import time

DEFAULT_INTERVAL_S = 30.0


def line(label: str, images: int | None, done: int, tasks: int, elapsed: float) -> str:
    """`imgfeat detect dt=...: ~96/320 images (12/40 tasks), 3.2 img/s, 30 s`: the images done are
    estimated from the tasks done."""
    if images:
        n = round(images * done / tasks) if tasks else 0
        return (f"{label}: ~{n}/{images} images ({done}/{tasks} tasks), "
                f"{n / elapsed if elapsed > 0 else 0:.1f} img/s, {elapsed:.0f} s")
    return f"{label}: {done}/{tasks} tasks, {elapsed:.0f} s"


class Progress:
    """Context manager: a daemon thread printing `line` for the running stage every `interval` s."""

    def __init__(self, spark, label: str, images: int | None, interval: float | None = None, out=None):
        self.tracker = spark.sparkContext.statusTracker()
        self.label, self.images = label, images
        self.interval = float(os.environ.get("IMGFEAT_PROGRESS_S", DEFAULT_INTERVAL_S)) if interval is None else interval
        self.out = out or sys.stderr
        self._stop = threading.Event()
        self._thread = None

    def _biggest_running_stage(self) -> tuple[int, int] | None:
        stages = [s for s in map(self.tracker.getStageInfo, self.tracker.getActiveStageIds()) if s is not None]
        if not stages:
            return None
        s = max(stages, key=lambda s: s.numTasks)
        return s.numCompletedTasks, s.numTasks

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.interval):
            try:
                running = self._biggest_running_stage()
            except Exception:  # noqa: BLE001 - the context is stopping: no line, never a failure
                return
            if running is not None:
                print(line(self.label, self.images, *running, time.monotonic() - started), file=self.out, flush=True)

    def __enter__(self) -> "Progress":
        if self.interval > 0:
            self._thread = threading.Thread(target=self._run, name="imgfeat-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

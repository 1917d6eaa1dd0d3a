"""`make bench`'s breakdown of a spark-submit's time, from a real spark-submit's event log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from devtools import bench


def test_a_spark_submits_time_outside_jobs_is_the_drivers_and_its_jobs_are_counted(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("import time\nfrom pyspark.sql import SparkSession\n"
                   "s = SparkSession.builder.getOrCreate()\n"
                   "time.sleep(1.5)\n"  # driver work outside any job
                   "print('rows', s.range(3).count(), s.range(5).count())\ns.stop()\n")
    events = tmp_path / "events"
    events.mkdir()
    started = time.time()
    out = subprocess.run([str(Path(sys.executable).with_name("spark-submit")), "--master", "local[1]",
                          "--conf", "spark.ui.enabled=false", "--conf", "spark.eventLog.enabled=true",
                          "--conf", f"spark.eventLog.dir={events.as_uri()}", str(app)],
                         env={**os.environ, "PYSPARK_PYTHON": sys.executable},
                         capture_output=True, text=True, check=True).stdout
    exited = time.time()
    assert "rows 3 5" in out
    parts = bench.submit_parts(events, started, exited)
    assert parts["count"] == 2
    assert parts["driver"] >= 1.5  # the sleep is the driver's, not a job's
    assert all(parts[k] > 0 for k in ("launch", "jobs", "stop"))

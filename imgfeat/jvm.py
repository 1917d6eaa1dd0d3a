"""The driver JVM's start: an AppCDS archive of the classes a Spark driver loads.

Every stage is its own spark-submit, so every stage pays a new JVM loading and verifying ~20,000
classes of Spark's jars before its first picture; that is most of a stage's fixed cost (measured
on this machine: a trivial app's first job took 4.3 and 4.8 s, 2.8 and 2.3 s with the archive). `make setup`
records the classes once (`build`: a small Spark app run with `-XX:ArchiveClassesAtExit`), and the
operator starts local and client-mode drivers with it (`driver_options`). One archive per extra
class path of the driver: none (OpenVINO stages, index) and BigDL's jars (engine=bigdl's detect and
embed). The JVM checks the archive against its class path and Java version itself: one that does
not match (another venv, another class path) is ignored and the classes load as usual. At import,
the standard library and imgfeat.paths only: the Airflow operator imports it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from imgfeat import paths

# Silence the JVM's CDS messages (a mismatched archive prints a warning on stdout).
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def _spark_jars() -> str:
    """The installed Spark's jars directory and its modification time: a reinstalled pyspark
    (whose jars the JVM would find changed) gets a new archive."""
    import importlib.util

    jars = Path(importlib.util.find_spec("pyspark").origin).parent / "jars"
    return f"{jars}@{jars.stat().st_mtime_ns}"


def archive_path(driver_class_path: str = "") -> Path:
    """Where the archive of a driver with this extra class path lives."""
    key = hashlib.sha256(f"{_spark_jars()}\0{driver_class_path}".encode()).hexdigest()[:12]
    return paths.cache_dir() / "jvm" / f"spark-driver-{key}.jsa"


def driver_options(driver_class_path: str = "") -> str:
    """The driver JVM's options that use the archive; empty when `make setup` has not built it."""
    archive = archive_path(driver_class_path)
    return f"-XX:SharedArchiveFile={archive} {QUIET}" if archive.exists() else ""


def with_driver_options(conf: dict, driver_class_path: str = "") -> dict:
    """`conf` with the archive's options added to `spark.driver.extraJavaOptions`."""
    opts = driver_options(driver_class_path)
    if not opts:
        return conf
    merged = f"{conf.get('spark.driver.extraJavaOptions', '')} {opts}".strip()
    return {**conf, "spark.driver.extraJavaOptions": merged}


def build(driver_class_path: str = "", log: Path | None = None) -> Path:
    """Record the archive of a driver with this extra class path (idempotent: kept once built).

    The recording app (`_warm_up`) runs what the stages' drivers run: Parquet reads and writes,
    Arrow exchanges with Python workers, joins, aggregates and the binary-file source."""
    archive = archive_path(driver_class_path)
    if archive.exists():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    from imgfeat.packaging import build_zip

    spark_submit = Path(sys.executable).with_name("spark-submit")
    with tempfile.TemporaryDirectory(prefix="imgfeat-jvm-") as tmp:
        recording = Path(tmp) / archive.name
        cmd = [str(spark_submit), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
               "--driver-java-options", f"-XX:ArchiveClassesAtExit={recording} {QUIET}",
               *(["--driver-class-path", driver_class_path] if driver_class_path else []),
               "--py-files", str(build_zip()), __file__, "--warm-up", tmp]
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
        with open(log or os.devnull, "ab") as out:
            rc = subprocess.run(cmd, env=env, stdout=out, stderr=out, check=False).returncode
        if rc != 0:
            raise RuntimeError(f"recording the Spark driver's class archive failed (spark-submit exit {rc})")
        if not recording.exists():
            raise RuntimeError(f"the JVM wrote no class archive at {recording}")
        os.replace(recording, archive)  # whole or absent: a concurrent setup finds no partial file
    return archive


def _warm_up(tmp: str) -> None:
    """The recording app: the Spark operations of the stage apps, at tiny size."""
    import pandas as pd
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = SparkSession.builder.appName("imgfeat-jvm-archive").getOrCreate()
    pics = Path(tmp) / "pictures"
    pics.mkdir()
    for i in range(4):
        (pics / f"{i}.jpg").write_bytes(os.urandom(64))
    files = spark.read.format("binaryFile").load(str(pics)).select("path", "length", "content")

    def sizes(batches):
        for b in batches:
            yield pd.DataFrame({"path": b["path"], "n": b["content"].map(len).astype("int64")})

    rows = files.repartition(2).mapInPandas(sizes, "path string, n long")
    joined = (rows.join(F.broadcast(files.select("path", "length")), "path")
              .join(rows.select("path", F.col("n").alias("m")), "path", "left"))
    table = f"{tmp}/table"
    (joined.withColumn("sha", F.sha2(F.col("path"), 256)).coalesce(1).write.mode("overwrite")
     .parquet(table))
    back = spark.read.parquet(table)
    back.groupBy(F.substring("sha", 1, 1)).agg(F.min(F.struct("path", "n")), F.count("*")).collect()
    back.where(F.col("n") > 0).select(F.bit_count(F.lit(3))).distinct().collect()
    spark.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--warm-up"]:
        _warm_up(sys.argv[2])
    else:
        print(build(log=paths.var_dir() / "logs" / "setup.log"))

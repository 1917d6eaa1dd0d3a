"""The Spark driver's class archive (imgfeat.jvm), as `make setup` builds it and spark-submit uses it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgfeat import jvm


@pytest.mark.parametrize("engine", ["openvino", "bigdl"])
def test_setup_built_an_archive_that_a_spark_driver_loads_its_classes_from(tmp_path, engine):
    from imgfeat.engines import stage_submit_settings

    # the driver's extra class path in a stage of this engine: none, or BigDL's jars
    class_path = (stage_submit_settings("detect", engine) or {}).get("driver_class_path", "")
    archive = jvm.archive_path(class_path)
    assert archive.exists(), "make setup builds it"
    app = tmp_path / "app.py"
    app.write_text("from pyspark.sql import SparkSession\n"
                   "s = SparkSession.builder.getOrCreate()\nprint('rows', s.range(3).count())\ns.stop()\n")
    opts = f"{jvm.driver_options(class_path)} -Xlog:class+load=info:file={tmp_path}/classes.log"
    extra = ["--driver-class-path", class_path] if class_path else []
    out = subprocess.run([str(Path(sys.executable).with_name("spark-submit")), "--master", "local[1]",
                          "--conf", "spark.ui.enabled=false", *extra, "--driver-java-options", opts, str(app)],
                         env={**os.environ, "PYSPARK_PYTHON": sys.executable},
                         capture_output=True, text=True, check=True).stdout
    assert "rows 3" in out
    loads = (tmp_path / "classes.log").read_text().splitlines()
    source = {line.split()[1]: line.split("source: ", 1)[1] for line in loads if "source: " in line}
    # Spark's own classes come from the archive's top layer, not from the jars
    assert source["org.apache.spark.SparkContext"] == "shared objects file (top)"
    assert source["org.apache.spark.sql.SparkSession"] == "shared objects file (top)"


def test_no_archive_means_no_option_and_another_class_path_another_archive(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGFEAT_CACHE", str(tmp_path))
    assert jvm.driver_options() == ""
    assert jvm.with_driver_options({"a": "b"}) == {"a": "b"}
    assert jvm.archive_path("/x/bigdl.jar") != jvm.archive_path()
    jvm.archive_path().parent.mkdir(parents=True)
    jvm.archive_path().touch()
    conf = jvm.with_driver_options({"spark.driver.extraJavaOptions": "-Xss64m"})
    assert conf == {"spark.driver.extraJavaOptions":
                    f"-Xss64m -XX:SharedArchiveFile={tmp_path}/jvm/{jvm.archive_path().name} {jvm.QUIET}"}
    assert jvm.driver_options("/x/bigdl.jar") == ""


def test_a_bigdl_driver_logs_by_spark_s_configuration_not_the_test_file_in_bigdl_s_jar(tmp_path):
    from imgfeat.engines import stage_submit_settings
    from imgfeat.engines.bigdl import submit

    settings = stage_submit_settings("detect", "bigdl")
    app = tmp_path / "app.py"
    app.write_text("from pyspark.sql import SparkSession\n"
                   "s = SparkSession.builder.getOrCreate()\n"
                   "ctx = s._jvm.org.apache.logging.log4j.LogManager.getContext(False)\n"
                   "print('config', ctx.getConfiguration().getConfigurationSource().getLocation())\n"
                   "print('rows', s.range(3).count())\ns.stop()\n")
    out = subprocess.run([str(Path(sys.executable).with_name("spark-submit")), "--master", "local[1]",
                          "--conf", "spark.ui.enabled=false", "--driver-class-path", settings["driver_class_path"],
                          "--driver-java-options", settings["conf"]["spark.driver.extraJavaOptions"], str(app)],
                         env={**os.environ, "PYSPARK_PYTHON": sys.executable},
                         capture_output=True, text=True, check=True)
    assert "rows 3" in out.stdout
    config = next(line.split(" ", 1)[1] for line in out.stdout.splitlines() if line.startswith("config "))
    assert config.endswith(f"!/{submit.SPARK_LOG_DEFAULTS}") and "spark-core" in config
    # Spark's INFO lines go to stderr, none to stdout (BigDL's file logged them to both)
    assert "INFO" in out.stderr and "INFO" not in out.stdout

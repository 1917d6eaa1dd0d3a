"""What spark-submit needs for a BigDL app: BigDL's jars, the confs of its properties file, the
engine's JVM options and the driver's memory. At import, the standard library only (the installed
`bigdl` and pyspark are imported by the functions that need them): the Airflow operator imports it
while it builds a spark-submit command.
"""

from __future__ import annotations

import glob
import os


def bigdl_jars() -> list[str]:
    import bigdl
    return sorted(glob.glob(os.path.join(os.path.dirname(bigdl.__file__), "share", "*", "lib", "*.jar")))


def bigdl_conf_file() -> str:
    import bigdl
    return os.path.join(os.path.dirname(bigdl.__file__), "share", "dllib", "conf", "spark-bigdl.conf")


# Spark's own logging configuration, a resource of its core jar (what Spark uses when none is found)
SPARK_LOG_DEFAULTS = "org/apache/spark/log4j2-defaults.properties"


def log_configuration() -> str:
    """log4j2's configuration for a BigDL app's JVMs. BigDL's jar carries a log4j2-test.xml, and
    log4j2 takes a -test file before any log4j2.properties: every INFO line would go to stdout and
    be appended to a file literally named `/tmp/${sys:logFilename}` that nothing rotates. So name one:
    the cluster's log4j2.properties when its Spark conf dir has one (on the class path of the driver
    and of YARN's containers), else Spark's defaults."""
    conf_dir = os.environ.get("SPARK_CONF_DIR") or os.path.join(os.environ.get("SPARK_HOME", ""), "conf")
    return "log4j2.properties" if os.path.isfile(os.path.join(conf_dir, "log4j2.properties")) else SPARK_LOG_DEFAULTS


def java_options(engine: str = "mkldnn") -> str:
    # mkldnn: static graphs are converted to MKL-DNN graphs (6-15x faster than the default engine
    # here: FIELD_NOTES and the issue 4 note); the deep graph
    # needs a large thread stack.
    return f"-Dbigdl.engineType={engine} -Xss64m -Dlog4j2.configurationFile={log_configuration()}"


def submit_settings(deploy_mode: str | None = None, engine: str = "mkldnn") -> dict:
    """What spark-submit needs for a BigDL app, as SparkSubmitOperator fields: BigDL's jars (shipped
    with --jars, and on the driver's class path), the confs of BigDL's properties file (merged, so a
    cluster's spark-defaults.conf still applies) and the engine's JVM options.
    In cluster mode the driver finds the shipped jars in its container's working directory."""
    jars = bigdl_jars()
    conf = {}
    with open(bigdl_conf_file()) as f:
        for line in f:
            key, _, value = line.strip().partition(" ")
            if key and not key.startswith("#"):
                conf[key] = value.strip()
    opts = java_options(engine)
    conf["spark.driver.extraJavaOptions"] = f"{conf.get('spark.driver.extraJavaOptions', '')} {opts}".strip()
    conf["spark.executor.extraJavaOptions"] = opts
    conf["spark.executor.extraClassPath"] = ":".join(os.path.basename(j) for j in jars)
    driver_cp = [os.path.basename(j) for j in jars] if deploy_mode == "cluster" else jars
    return {"jars": ",".join(jars), "driver_class_path": ":".join(driver_cp), "conf": conf, "driver_memory": "3g"}


def spark_conf(master: str = "local[2]", engine: str = "mkldnn", app_name: str = "imgfeat-bigdl",
               driver_memory: str = "3g"):
    """`submit_settings()` as a SparkConf, for a SparkContext started from Python (tests, bench).

    In local mode the driver JVM runs the models: Spark's default 1g heap is too small for them.
    """
    from pyspark import SparkConf

    s = submit_settings(engine=engine)
    return (SparkConf().setMaster(master).setAppName(app_name).setAll(list(s["conf"].items()))
            .set("spark.jars", s["jars"]).set("spark.driver.extraClassPath", s["driver_class_path"])
            .set("spark.driver.memory", driver_memory))

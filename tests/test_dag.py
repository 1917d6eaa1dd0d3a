"""The DAG's structure, its parameters, and the operator's refusal of bad parameters."""

import copy
from datetime import timedelta

import pytest

from imgfeat.layout import STAGES


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    from imgfeat import paths

    bag = DagBag(dag_folder=str(paths.REPO / "dags"))
    assert bag.import_errors == {}
    return bag.dags["image_features"]


def test_five_spark_submit_tasks_in_pipeline_order(dag):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    assert [t.task_id for t in dag.topological_sort()] == [
        "wait_for_partition", "find_late_files", *STAGES, *(f"revisit.{s}" for s in STAGES)]
    for up, down in zip(STAGES, STAGES[1:]):
        assert dag.get_task(up).downstream_task_ids == {down}
    for stage in STAGES:
        task = dag.get_task(stage)
        assert isinstance(task, SparkSubmitOperator)
        assert task.application.endswith(f"spark_apps/{stage}.py")
        assert task.conn_id == "spark_default"
        assert task.retries == 2 and task.retry_delay > timedelta(0)


def test_late_files_are_revisited_after_publish_by_a_group_mapped_over_the_late_partitions(dag):
    from airflow.sdk.definitions._internal.expandinput import MappedArgument
    from imgfeat_airflow import PARTITION_DATE, FindLateFilesOperator

    assert isinstance(dag.get_task("find_late_files"), FindLateFilesOperator)
    assert dag.get_task("find_late_files").downstream_task_ids == {"ingest", *(f"revisit.{s}" for s in STAGES)}
    assert dag.get_task("revisit.ingest").upstream_task_ids == {"find_late_files", "publish"}
    group = dag.task_group_dict["revisit"]
    assert type(group).__name__ == "MappedTaskGroup"
    for up, down in zip(STAGES, STAGES[1:]):
        assert f"revisit.{down}" in dag.get_task(f"revisit.{up}").downstream_task_ids
    for stage in STAGES:
        task = dag.get_task(f"revisit.{stage}")
        pairs = dict(zip(task.application_args[::2], task.application_args[1::2]))
        assert isinstance(pairs["--partition-date"], MappedArgument)  # one of find_late_files' dates
        assert pairs["--force"] == "false" and task.revisit  # a revisit never recomputes what is current
        assert task.application.endswith(f"spark_apps/{stage}.py") and task.retries == 2
    publish = dict(zip(*[iter(dag.get_task("revisit.publish").application_args)] * 2))
    assert publish["--revisited-by"] == PARTITION_DATE and "--late-partitions" not in publish
    publish = dict(zip(*[iter(dag.get_task("publish").application_args)] * 2))
    assert "find_late_files" in publish["--late-partitions"] and "--revisited-by" not in publish
    assert dag.params["lookback_days"] == 3


def test_the_readiness_gate_waits_upstream_of_ingest_without_holding_a_slot(dag):
    from airflow.sdk import BaseSensorOperator
    from imgfeat_airflow import WaitForPartitionSensor

    gate = dag.get_task("wait_for_partition")
    assert isinstance(gate, WaitForPartitionSensor) and isinstance(gate, BaseSensorOperator)
    assert gate.mode == "reschedule" and gate.reschedule
    assert gate.upstream_task_ids == set() and gate.downstream_task_ids == {"find_late_files"}
    assert dag.get_task("ingest").upstream_task_ids == {"find_late_files"}
    # It reads the partition and roots as the stages do.
    stage_args = dict(zip(*[iter(dag.get_task("ingest").application_args)] * 2))
    assert (gate.partition_date, gate.input_root, gate.warehouse_root) == (
        stage_args["--partition-date"], stage_args["--input-root"], stage_args["--warehouse-root"])
    assert {"partition_date", "input_root", "warehouse_root"} <= set(gate.template_fields)
    assert {k: dag.params[k] for k in ("wait", "ready_marker", "quiet_period_s", "poke_interval_s",
                                        "wait_timeout_s")} == {"wait": False, "ready_marker": "_SUCCESS",
                                                               "quiet_period_s": 900, "poke_interval_s": 300,
                                                               "wait_timeout_s": 43200}
    for run_type, wait, waits in [("scheduled", False, True), ("backfill", False, True), ("manual", False, False),
                                  ("manual", True, True), ("asset_triggered", False, False), (None, False, False)]:
        assert WaitForPartitionSensor.waits(run_type, wait) is waits, run_type


def test_schedule_and_limits(dag):
    from airflow.sdk import CronDataIntervalTimetable

    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.max_active_runs == 2 and dag.catchup is False


def test_application_args_name_the_partition_and_roots(dag):
    args = dag.get_task("detect").application_args
    pairs = dict(zip(args[::2], args[1::2]))
    assert pairs["--input-root"] == "{{ params.input_root }}"
    assert pairs["--warehouse-root"] == "{{ params.warehouse_root }}"
    assert pairs["--code-bits"] == "{{ params.code_bits }}"
    assert "application_args" in type(dag.get_task("detect")).template_fields


@pytest.mark.parametrize("context,partition", [
    ({"params": {"partition_date": "2026-11-03"}, "data_interval_start": None}, "2026-11-03"),
    ({"params": {"partition_date": None}, "data_interval_start": "2026-11-04T00:00:00+00:00"}, "2026-11-04"),
    ({"params": {"partition_date": "2026-11-03"}, "data_interval_start": "2026-11-04T00:00:00+00:00"}, "2026-11-03"),
    ({"params": {"partition_date": None}, "data_interval_start": "2026-11-04T23:59:59+00:00"}, "2026-11-04"),
    ({"params": {"partition_date": None}, "data_interval_start": None}, ""),  # manual run, no logical date
    ({"params": {"partition_date": None}}, ""),  # Asset-triggered run: no data interval at all
])
def test_the_partition_is_the_param_else_the_data_interval_start(dag, context, partition):
    import pendulum

    # The task renders its own arguments (Airflow's Jinja environment and `ds` filter), with the
    # DAG's params as a run resolves them and the data interval start as Airflow passes it.
    context = {**context, "params": {**dag.params.validate(), **context["params"]}}
    if context.get("data_interval_start"):
        context["data_interval_start"] = pendulum.parse(context["data_interval_start"])
    task = copy.copy(dag.get_task("detect"))
    task.render_template_fields(context)
    rendered = dict(zip(*[iter(task.application_args)] * 2))
    assert rendered["--partition-date"] == partition
    assert rendered["--code-bits"] == "64"  # the other arguments were rendered too


def test_a_run_without_partition_is_refused_naming_the_parameter(dag):
    from airflow.sdk.exceptions import AirflowFailException

    task = dag.get_task("ingest").__class__(stage="ingest")
    args = list(task.application_args)
    args[args.index("--partition-date") + 1] = ""
    task.application_args = args
    with pytest.raises(AirflowFailException, match="stage ingest: invalid parameter: partition_date is required"):
        task.execute(context={})
    assert task._hook is None


@pytest.mark.parametrize("name,value", [
    ("partition_date", "2026-13-45x"), ("score_threshold", 1.5), ("score_threshold", 0),
    ("code_bits", 12), ("code_bits", 4096), ("engine", "tensorrt"), ("ready_marker", "DONE"),
    ("ready_marker", "_k=v"), ("quiet_period_s", -1), ("poke_interval_s", 0), ("wait_timeout_s", -5),
    ("wait", "yes"), ("keep_checkpoints_days", -1), ("keep_checkpoints_days", "30d")])
def test_params_refuse_bad_values(dag, name, value):
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError, match=name):
        params[name] = value
        params.validate()


def test_params_accept_a_manual_run(dag):
    params = copy.deepcopy(dag.params)
    params.update({"partition_date": "2026-11-01", "code_bits": 128, "score_threshold": 0.5})
    assert params.validate()["code_bits"] == 128


@pytest.mark.parametrize("flag,value,message", [
    ("--code-bits", "12", "argument --code-bits: expected a multiple of 8"),
    ("--partition-date", "2026-02-30", "argument --partition-date: '2026-02-30' is not a calendar date"),
    ("--warehouse-root", "/tmp/../etc", "argument --warehouse-root: '/tmp/../etc' contains '..'"),
    ("--keep-checkpoints-days", "-3", "argument --keep-checkpoints-days: expected an integer >= 0, got -3"),
])
def test_operator_refuses_a_bad_parameter_before_spark_submit(dag, flag, value, message):
    from airflow.sdk.exceptions import AirflowFailException

    rendered = {"--partition-date": "2026-11-01", "--input-root": "/tmp", "--warehouse-root": "/tmp/wh",
                "--score-threshold": "0.3", "--code-bits": "64", "--engine": "openvino", flag: value}
    task = dag.get_task("ingest").__class__(stage="ingest")
    task.application_args = [x for kv in rendered.items() for x in kv]
    with pytest.raises(AirflowFailException, match=f"stage ingest: invalid parameter: {message}"):
        task.execute(context={})
    assert task._hook is None  # no spark-submit was prepared


def _dag_files():
    from imgfeat import paths

    files = sorted(p.name for p in (paths.REPO / "dags").glob("*.py"))
    assert {"image_features.py", "feature_catalog.py", "feature_index.py", "train_descriptor.py"} <= set(files)
    return files


def test_every_dag_file_is_cheap_to_parse():
    import subprocess
    import sys

    from imgfeat import paths

    code = ("import sys; sys.path.insert(0, 'plugins'); import runpy; runpy.run_path('dags/' + sys.argv[1]);"
            "heavy = [m for m in ('pyspark', 'openvino', 'cv2', 'pandas', 'numpy') if m in sys.modules];"
            "print(','.join(heavy))")
    heavy = {f: subprocess.run([sys.executable, "-c", code, f], cwd=paths.REPO, capture_output=True, text=True,
                               check=True).stdout.strip() for f in _dag_files()}
    assert heavy == dict.fromkeys(_dag_files(), "")


def test_every_dag_file_loads_its_dags_without_import_errors(bag):
    assert bag.import_errors == {}
    assert sorted({d.fileloc.rsplit("/", 1)[1] for d in bag.dags.values()}) == _dag_files()


def test_airflow_plugin_loader_loads_the_ui_plugin_and_leaves_the_imgfeat_airflow_package_alone():
    """plugins/ holds one AirflowPlugin file (imgfeat_ui.py) and a package: Airflow's loader (which
    imports each file under plugins/ as a top-level module named after it) must skip the package's
    files (plugins/.airflowignore)."""
    import sys

    from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory

    from imgfeat import paths

    before = set(sys.modules)
    plugins, errors = _load_plugins_from_plugin_directory(plugins_folder=str(paths.REPO / "plugins"))
    assert ([p.name for p in plugins], errors) == (["imgfeat_ui"], {})
    assert {v["name"]: v["destination"] for v in plugins[0].external_views} == {"Report": "dag_run", "Picture search": "nav"}
    # the UI shows a DAG run's views only with a url_route (as a tab)
    assert [v["url_route"] for v in plugins[0].external_views if v["destination"] == "dag_run"] == ["imgfeat-report"]
    assert not {"params", "submit", "gates", "ui", "__init__"} & (set(sys.modules) - before)


# --- cluster submission: the command the operator gives spark-submit for YARN ---------------------
def _yarn_task(monkeypatch, tmp_path, deploy_mode, archives=True, engine="openvino"):
    import json
    import os
    import sys
    from pathlib import Path

    from imgfeat_airflow import StageSubmitOperator

    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # spark-submit
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_YARN", json.dumps(
        {"conn_type": "spark", "host": "yarn", "extra": {"deploy-mode": deploy_mode, "queue": "images"}}))
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    monkeypatch.delenv("YARN_CONF_DIR", raising=False)
    if archives:
        monkeypatch.setenv("IMGFEAT_PYTHON_ARCHIVE", "hdfs:///apps/imgfeat/imgfeat-env.tar.gz")
        monkeypatch.setenv("IMGFEAT_MODEL_ARCHIVE", "hdfs:///apps/imgfeat/imgfeat-models.tar.gz")
    task = StageSubmitOperator(stage="detect", conn_id="spark_yarn")
    rendered = {"--partition-date": "2026-11-01", "--input-root": str(tmp_path), "--warehouse-root": str(tmp_path / "wh"),
                "--score-threshold": "0.3", "--code-bits": "64", "--engine": engine}
    task.application_args = [x for kv in rendered.items() for x in kv] + task.application_args[-2:]
    return task


def _pairs(cmd):
    return {(a, b) for a, b in zip(cmd, cmd[1:]) if a.startswith("--")}


def test_yarn_cluster_mode_ships_python_models_and_library_as_archives(monkeypatch, tmp_path, model_dir, capfd):
    import sys

    from airflow.sdk.exceptions import AirflowException

    task = _yarn_task(monkeypatch, tmp_path, "cluster")
    # The real spark-submit runs and stops at YARN: no cluster configuration on this machine.
    with pytest.raises(AirflowException, match="Cannot execute: spark-submit --master yarn"):
        task.execute(context={"params": {}})
    assert "When running with master 'yarn' either HADOOP_CONF_DIR or YARN_CONF_DIR must be set" in capfd.readouterr().out
    cmd = task._hook._build_spark_submit_command(task.application)
    assert cmd[:3] == ["spark-submit", "--master", "yarn"]
    pairs = _pairs(cmd)
    assert {("--deploy-mode", "cluster"), ("--queue", "images"),
            ("--archives", "hdfs:///apps/imgfeat/imgfeat-env.tar.gz#env,hdfs:///apps/imgfeat/imgfeat-models.tar.gz#models"),
            ("--conf", "spark.pyspark.python=./env/bin/python"),
            ("--model-dir", "./models")} <= pairs
    assert task.env_vars is None and "spark.pyspark.driver.python" not in " ".join(cmd)
    assert "SharedArchiveFile" not in " ".join(cmd)  # the driver's container has no class archive
    py_files = dict(pairs)["--py-files"]
    assert py_files.startswith(str(paths_repo() / "build" / "imgfeat-")) and py_files.endswith(".zip")
    # In cluster mode the driver runs in a container too: nothing may point at this machine's Python.
    assert not any(sys.executable in part for part in cmd)
    assert cmd[cmd.index("--deploy-mode") + 2].endswith("spark_apps/detect.py")


def test_yarn_client_mode_keeps_the_local_driver_python(monkeypatch, tmp_path, model_dir):
    import sys

    task = _yarn_task(monkeypatch, tmp_path, "client")
    monkeypatch.delenv("IMGFEAT_MODEL_ARCHIVE")
    task.ship()
    pairs = _pairs(task._get_hook()._build_spark_submit_command(task.application))
    assert {("--archives", "hdfs:///apps/imgfeat/imgfeat-env.tar.gz#env"), ("--deploy-mode", "client"),
            ("--conf", "spark.pyspark.python=./env/bin/python"),
            ("--conf", f"spark.pyspark.driver.python={sys.executable}")} <= pairs
    assert dict(pairs)["--model-dir"] != "./models"
    # the driver runs here: it starts from make setup's class archive (imgfeat.jvm)
    from imgfeat import jvm

    assert ("--conf", f"spark.driver.extraJavaOptions=-XX:SharedArchiveFile={jvm.archive_path()} {jvm.QUIET}") in pairs


@pytest.mark.parametrize("mode", ["client", "cluster"])
def test_engine_bigdl_submits_detect_and_embed_with_bigdl_jars_and_settings(monkeypatch, tmp_path, model_dir, mode):
    import glob
    import os

    import bigdl

    task = _yarn_task(monkeypatch, tmp_path, mode, engine="bigdl")
    monkeypatch.delenv("IMGFEAT_MODEL_ARCHIVE")
    task.ship()
    cmd = task._get_hook()._build_spark_submit_command(task.application)
    pairs = dict(_pairs(cmd))
    jars = sorted(glob.glob(os.path.join(os.path.dirname(bigdl.__file__), "share", "*", "lib", "*.jar")))
    assert len(jars) == 2 and pairs["--jars"] == ",".join(jars)
    # the driver's class path: these jars here, their shipped copies in a cluster-mode container
    assert pairs["--driver-class-path"] == ":".join(jars if mode == "client" else [os.path.basename(j) for j in jars])
    confs = {c for a, c in zip(cmd, cmd[1:]) if a == "--conf"}
    from imgfeat import jvm

    # a driver on this machine also starts from make setup's class archive for BigDL's class path
    archive = f" -XX:SharedArchiveFile={jvm.archive_path(':'.join(jars))} {jvm.QUIET}" if mode == "client" else ""
    # Spark's logging configuration, not the log4j2-test.xml inside BigDL's jar
    logs = "-Dlog4j2.configurationFile=org/apache/spark/log4j2-defaults.properties"
    assert {"spark.serializer=org.apache.spark.serializer.JavaSerializer",
            f"spark.executor.extraJavaOptions=-Dbigdl.engineType=mkldnn -Xss64m {logs}",
            f"spark.driver.extraJavaOptions=-Dlog4j2.info -Dbigdl.engineType=mkldnn -Xss64m {logs}{archive}",
            "spark.shuffle.reduceLocality.enabled=false"} <= confs
    assert pairs["--driver-memory"] == "3g"
    from imgfeat_airflow import StageSubmitOperator

    crop = StageSubmitOperator(stage="crop", conn_id="spark_yarn")  # stages without inference get none of it
    crop.application_args = [{"{{ params.engine }}": "bigdl"}.get(a, a) for a in crop.application_args]
    crop.ship()
    assert crop.jars is None and not any("bigdl" in str(v) for v in crop.conf.values())


def test_a_model_archive_in_client_mode_is_refused_before_spark_submit(monkeypatch, tmp_path, model_dir):
    from airflow.sdk.exceptions import AirflowFailException

    task = _yarn_task(monkeypatch, tmp_path, "client")
    with pytest.raises(AirflowFailException, match="stage detect: IMGFEAT_MODEL_ARCHIVE needs deploy-mode cluster"):
        task.execute(context={"params": {}})
    assert task._hook is None


def paths_repo():
    from imgfeat import paths

    return paths.REPO


def test_publish_emits_the_features_asset_that_feature_catalog_waits_for(dag):
    from airflow.dag_processing.dagbag import DagBag
    from imgfeat_airflow import FEATURES

    from imgfeat import paths

    catalog = DagBag(dag_folder=str(paths.REPO / "dags")).dags["feature_catalog"]
    assert dag.get_task("publish").outlets == [FEATURES]
    assert all(not dag.get_task(s).outlets for s in STAGES[:-1])
    assert catalog.timetable.asset_condition.objects == (FEATURES,)


# --- train_descriptor and feature_index --------------------------------------------------------------
@pytest.fixture(scope="module")
def bag():
    from airflow.dag_processing.dagbag import DagBag

    from imgfeat import paths

    return DagBag(dag_folder=str(paths.REPO / "dags"))


def test_train_descriptor_submits_bigdl_training_on_its_default_engine(bag, monkeypatch, tmp_path):
    import glob
    import os

    import bigdl

    dag = bag.dags["train_descriptor"]
    assert type(dag.timetable).__name__ == "NullTimetable" and dag.max_active_runs == 1  # manual
    task = dag.get_task("train_descriptor")
    assert task.application.endswith("spark_apps/train_descriptor.py")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", '{"conn_type": "spark", "host": "local[2]"}')
    task.ship()
    cmd = task._get_hook()._build_spark_submit_command(task.application)
    pairs = dict(_pairs(cmd))
    jars = sorted(glob.glob(os.path.join(os.path.dirname(bigdl.__file__), "share", "*", "lib", "*.jar")))
    assert pairs["--jars"] == ",".join(jars)
    assert ("spark.executor.extraJavaOptions=-Dbigdl.engineType=mklblas -Xss64m "
            "-Dlog4j2.configurationFile=org/apache/spark/log4j2-defaults.properties") in cmd


@pytest.mark.parametrize("param,value,message", [
    ("code_bits", "12", "argument --code-bits: expected a multiple of 8"),
    ("rounds", "-1", "argument --rounds: expected an integer >= 0, got -1"),
    ("warehouse_root", "/tmp/../x", "argument --warehouse-root: '/tmp/../x' contains '..'"),
])
def test_train_descriptor_refuses_a_bad_param_before_spark_submit(bag, param, value, message):
    from airflow.sdk.exceptions import AirflowFailException

    task = copy.copy(bag.dags["train_descriptor"].get_task("train_descriptor"))
    args = [str(a) for a in task.application_args]
    rendered = {"--warehouse-root": "/tmp/wh", "--code-bits": "64", "--partitions": "30", "--max-crops": "100",
                "--rounds": "5", "--epochs": "10", "--activate": "true"}
    rendered["--" + param.replace("_", "-")] = value
    task.application_args = [x for kv in rendered.items() for x in kv] + args[-2:]
    with pytest.raises(AirflowFailException, match=f"train_descriptor: invalid parameter: {message}"):
        task.execute(context={"params": {}})
    assert task._hook is None


def test_feature_index_maps_one_index_task_over_the_partitions_named(bag, tmp_path, monkeypatch):
    from types import SimpleNamespace

    import jinja2
    from airflow.sdk.definitions.mappedoperator import MappedOperator
    from airflow.sdk.exceptions import AirflowFailException
    from imgfeat_airflow import FEATURES, IndexSubmitOperator

    dag = bag.dags["feature_index"]
    assert dag.timetable.asset_condition.objects == (FEATURES,)
    # `index` is mapped over what `partitions` returns: one task instance per partition, retried alone
    index = dag.get_task("index")
    assert isinstance(index, MappedOperator) and index.operator_class is IndexSubmitOperator
    assert index.upstream_task_ids == {"partitions"} and index.partial_kwargs["retries"] == 2
    assert index.expand_input.value["partition"].operator is dag.get_task("partitions")
    partitions = dag.get_task("partitions").python_callable
    wh = str(tmp_path / "wh")  # event roots are validated: a writable place, whoever runs the tests
    event = lambda w, d: SimpleNamespace(extra={"warehouse_root": w, "partition_date": d})  # noqa: E731
    events = {FEATURES: [event(wh, "2026-11-02"), event(wh, "2026-11-01"), event(wh, "2026-11-02")]}
    assert partitions(triggering_asset_events=events, params={}) == [[wh, "2026-11-01"], [wh, "2026-11-02"]]
    manual = {"partition_date": "2026-11-05", "warehouse_root": "/wh2"}
    assert partitions(triggering_asset_events={}, params=manual) == [["/wh2", "2026-11-05"]]
    # Each instance (unmapped as Airflow does) submits its own partition, with the run's radius.
    op = index.unmap({"partition": [wh, "2026-11-01"]})
    assert isinstance(op, IndexSubmitOperator) and op.retries == 2 and op.application.endswith("spark_apps/index.py")
    assert jinja2.Template(op.map_index_template).render(task=op) == "dt=2026-11-01"
    monkeypatch.setattr(IndexSubmitOperator, "submit", lambda self, context: list(self.application_args))
    assert op.execute(context={"params": {"duplicate_radius": 3}}) == [
        "--warehouse-root", wh, "--partition-date", "2026-11-01", "--duplicate-radius", "3"]
    assert op.execute(context={"params": {"duplicate_radius": None}}) == [
        "--warehouse-root", wh, "--partition-date", "2026-11-01"]
    assert op.execute(context={"params": {"duplicate_radius": 14, "duplicate_similarity": 0.8}}) == [
        "--warehouse-root", wh, "--partition-date", "2026-11-01", "--duplicate-radius", "14",
        "--duplicate-similarity", "0.8"]
    # a bad one is refused before spark-submit, naming it
    with pytest.raises(AirflowFailException, match="^index: invalid parameter: argument --duplicate-similarity: "
                                                   r"expected a number in \[-1, 1\], got 1.5$"):
        op.execute(context={"params": {"duplicate_similarity": 1.5}})


def test_feature_index_without_a_partition_fails_before_spark_submit(bag):
    from airflow.sdk.exceptions import AirflowFailException

    dag = bag.dags["feature_index"]
    partitions = dag.get_task("partitions").python_callable
    with pytest.raises(AirflowFailException, match="index: invalid parameter: partition_date is required"):
        partitions(params={"partition_date": None, "warehouse_root": "/tmp/wh"})
    with pytest.raises(AirflowFailException, match="argument --partition-date: '2026-02-30' is not a calendar date"):
        partitions(params={"partition_date": "2026-02-30", "warehouse_root": "/tmp/wh"})
    # an index task given such a partition refuses it too, before spark-submit
    task = dag.get_task("index").unmap({"partition": ["/tmp/wh", "2026-02-30"]})
    with pytest.raises(AirflowFailException, match="argument --partition-date: '2026-02-30' is not a calendar date"):
        task.execute(context={"params": {}})
    assert task._hook is None


# --- the features Asset's events: validated by feature_index and feature_catalog alike -----------------
def _events(*extras):
    from types import SimpleNamespace

    from imgfeat_airflow import FEATURES

    return {FEATURES: [SimpleNamespace(extra=x) for x in extras]}


BAD_EXTRAS = [
    (None, "partition_date: missing from the Asset event's extra"),
    ({}, "partition_date: missing from the Asset event's extra"),
    ({"partition_date": "2026-11-01"}, "warehouse_root: missing from the Asset event's extra"),
    ({"partition_date": 20261101, "warehouse_root": "{wh}"}, "partition_date: expected a string"),
    ({"partition_date": "2026-02-30", "warehouse_root": "{wh}"}, "partition_date: '2026-02-30' is not a calendar date"),
    ({"partition_date": "2026-11-01", "warehouse_root": "/tmp/../etc"}, "warehouse_root: '/tmp/../etc' contains '..'"),
    ({"partition_date": "2026-11-01", "warehouse_root": "wh"}, "warehouse_root: 'wh' in the Asset event's extra is not"),
    ({"partition_date": "2026-11-01", "warehouse_root": "ftp://h/wh"}, "warehouse_root: unsupported scheme 'ftp'"),
    ({"partition_date": "2026-11-01", "warehouse_root": "/srv/other"}, "warehouse_root: '/srv/other' is outside the allowed"),
]


def _fill(extra, wh):
    return extra if not isinstance(extra, dict) else {k: v.format(wh=wh) if isinstance(v, str) else v
                                                      for k, v in extra.items()}


@pytest.mark.parametrize("extra,message", BAD_EXTRAS)
def test_feature_catalog_refuses_a_bad_event_naming_the_parameter_and_writes_nothing(
        bag, tmp_path, monkeypatch, extra, message):
    import re

    from airflow.sdk.exceptions import AirflowFailException

    wh = tmp_path / "wh"
    monkeypatch.setenv("IMGFEAT_ALLOWED_ROOTS", f"{tmp_path},/tmp")
    good = {"partition_date": "2026-11-01", "warehouse_root": str(wh)}
    record = bag.dags["feature_catalog"].get_task("record_partitions").python_callable
    with pytest.raises(AirflowFailException, match="^feature_catalog: invalid parameter: " + re.escape(message)) as e:
        record(triggering_asset_events=_events(good, _fill(extra, str(wh))))
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []  # the good event's partition was not recorded either


def test_feature_catalog_without_an_event_is_refused(bag):
    from airflow.sdk.exceptions import AirflowFailException

    record = bag.dags["feature_catalog"].get_task("record_partitions").python_callable
    for events in (None, {}, _events()):
        with pytest.raises(AirflowFailException, match="^feature_catalog: invalid parameter: partition_date: no Asset"):
            record(triggering_asset_events=events)


def test_feature_catalog_records_each_partition_once(bag, tmp_path):
    import json

    from imgfeat.layout import Warehouse

    wh = Warehouse(str(tmp_path / "wh"))
    for date, published in (("2026-11-01", 3), ("2026-11-02", 5)):
        manifest = tmp_path / "wh" / "runs" / f"dt={date}" / "manifest.json"
        manifest.parent.mkdir(parents=True)
        manifest.write_text(json.dumps({"partition_date": date, "published": published, "commit_id": "c" + date}))
    event = lambda d: {"partition_date": d, "warehouse_root": wh.root + "/"}  # noqa: E731
    record = bag.dags["feature_catalog"].get_task("record_partitions").python_callable
    entries = record(triggering_asset_events=_events(event("2026-11-02"), event("2026-11-01"), event("2026-11-02")))
    assert [(e["partition_date"], e["published"]) for e in entries] == [("2026-11-01", 3), ("2026-11-02", 5)]
    assert sorted(p.name for p in (tmp_path / "wh" / "catalog").iterdir()) == ["dt=2026-11-01.json", "dt=2026-11-02.json"]
    assert json.loads((tmp_path / "wh" / "catalog" / "dt=2026-11-02.json").read_text())["commit_id"] == "c2026-11-02"


@pytest.mark.parametrize("extra,message", BAD_EXTRAS[:3] + BAD_EXTRAS[-1:])
def test_feature_index_refuses_a_bad_event_before_spark_submit(bag, tmp_path, monkeypatch, extra, message):
    import re

    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("IMGFEAT_ALLOWED_ROOTS", f"{tmp_path},/tmp")
    dag = bag.dags["feature_index"]
    partitions = dag.get_task("partitions").python_callable
    good = {"partition_date": "2026-11-01", "warehouse_root": str(tmp_path / "wh")}
    with pytest.raises(AirflowFailException, match="^index: invalid parameter: " + re.escape(message)) as e:
        partitions(triggering_asset_events=_events(good, _fill(extra, str(tmp_path / "wh"))),
                   params={"partition_date": "2026-11-05", "warehouse_root": str(tmp_path)})
    assert "\n" not in str(e.value)
    # no spark-submit: every index task instance runs downstream of `partitions`, which failed
    assert dag.get_task("index").upstream_task_ids == {"partitions"}

"""The spark-submit operators: each task of the pipeline that runs a Spark application.

- `AppSubmitOperator`: a SparkSubmitOperator that submits one of spark_apps/ with what every
  imgfeat app needs (`ship`): the library zip, the executors' Python and models for the
  connection's deploy mode (`shipping`), and its engine's jars and settings.
- `StageSubmitOperator`: one pipeline stage, validating the run's arguments first so a bad
  parameter fails the task before any Spark job. A stage whose checkpoint is committed and current
  is skipped (see imgfeat.checkpoints) unless the run's `force` param is set, so re-running a failed
  run redoes only what is missing. An input partition that gained files is ingested again, and
  (with `reuse`) only its new files are inferred.
- `TrainDescriptorOperator`: BigDL's distributed training of the DeepBit layer.
- `IndexSubmitOperator`: the similarity index and duplicates of one partition; feature_index maps
  it over `index_partitions`.
Spark's master comes from the `spark_default` connection (`local[2]`, `yarn`, `spark://h:p`).
Environment: IMGFEAT_HOME (where spark_apps/ lives; default: this repository) and
IMGFEAT_PYSPARK_PYTHON (the executors' Python); read when a task runs (cluster submission):
  IMGFEAT_PYTHON_ARCHIVE venv-pack tarball of the Python environment (`make pack`), unpacked as ./env
  IMGFEAT_MODEL_ARCHIVE  tarball of the model directory (`make pack`), unpacked as ./models
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from imgfeat import params as p

from .params import FEATURES, LATE_PARTITIONS, NO_INTERVAL, PARTITION_DATE, STAGE_ARGS, TRAIN_ARGS, event_partitions

HOME = Path(os.environ.get("IMGFEAT_HOME", Path(__file__).resolve().parents[2]))

SPARK_CONF = {
    "spark.python.worker.reuse": "true",  # keeps each worker's loaded model across tasks
    "spark.sql.parquet.compression.codec": "snappy",
}


def shipping(deploy_mode: str | None, python: str, environ=os.environ) -> dict:
    """How the Python environment and the models reach the cluster's containers.

    Default: the same Python path on every node (local mode, or a cluster with a shared install),
    given to spark-submit as PYSPARK_PYTHON. With IMGFEAT_PYTHON_ARCHIVE, executors (and a
    cluster-mode driver) run ./env/bin/python from the unpacked archive, set through Spark confs:
    spark-submit's own scripts still need a local Python in PYSPARK_PYTHON. The client-mode driver
    keeps the local Python. With IMGFEAT_MODEL_ARCHIVE the apps read ./models, which exists only in
    containers, so the driver must run in one too (deploy-mode cluster).
    """
    env_vars = {"PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python}
    conf, archives, model_dir = {}, [], None
    if environ.get("IMGFEAT_PYTHON_ARCHIVE"):
        archives.append(f"{environ['IMGFEAT_PYTHON_ARCHIVE']}#env")
        env_vars = {}
        conf["spark.pyspark.python"] = "./env/bin/python"
        if deploy_mode != "cluster":
            conf["spark.pyspark.driver.python"] = python
    if environ.get("IMGFEAT_MODEL_ARCHIVE"):
        if deploy_mode != "cluster":
            raise ValueError("IMGFEAT_MODEL_ARCHIVE needs deploy-mode cluster (the driver reads ./models); "
                             "in client mode set IMGFEAT_MODEL_DIR to a path present on every node")
        archives.append(f"{environ['IMGFEAT_MODEL_ARCHIVE']}#models")
        model_dir = "./models"
    return {"archives": ",".join(archives) or None, "env_vars": env_vars, "conf": conf, "model_dir": model_dir}


def _set_private_submit_options(op: SparkSubmitOperator, *, archives: str | None = None,
                                driver_memory: str | None = None) -> None:
    """Amend `archives` and `driver_memory` of a SparkSubmitOperator after its construction.

    The provider (apache-airflow-providers-apache-spark 5.6) takes them as constructor arguments
    but keeps them only in private attributes (`_archives`, `_driver_memory`), which its
    `_get_hook()` reads when `execute()` builds the SparkSubmitHook; it has no public attribute or
    setter for them. What is settled at run time (the connection's deploy mode, the run's engine)
    amends them here: the one place that touches the provider's private state. `archives` are
    appended to the operator's own; `driver_memory` applies unless the operator was given one."""
    if archives:
        op._archives = ",".join(filter(None, [op._archives, archives]))
    if driver_memory and not op._driver_memory:
        op._driver_memory = driver_memory


class AppSubmitOperator(SparkSubmitOperator):
    """Submits one of spark_apps/ with what every imgfeat app needs: the library zip, the
    executors' Python and models for the connection's deploy mode, and its engine's jars and
    settings (`engine_settings`, for subclasses to give)."""

    ui_color = "#e8f0fe"

    def __init__(self, *, app: str, application_args: list, conn_id: str = "spark_default",
                 deploy_mode: str | None = None, **kwargs):
        kwargs.setdefault("conf", dict(SPARK_CONF))
        kwargs.setdefault("task_id", app)
        super().__init__(application=str(HOME / "spark_apps" / f"{app}.py"), application_args=application_args,
                         name=f"imgfeat-{app}", conn_id=conn_id, deploy_mode=deploy_mode, **kwargs)
        # The provider keeps these two constructor arguments only privately: ours, to read them.
        self.conn_id, self.deploy_mode = conn_id, deploy_mode
        self.app = app
        self._label = app  # how errors name the task
        self._shipped = False

    def submit(self, context):
        """spark-submit, after `ship()`."""
        self.ship()
        return super().execute(context)

    def ship(self) -> None:
        """Settle, once, what spark-submit needs besides the app's arguments, for the deploy mode
        spark-submit will use (`spark_deploy_mode`): the library zip (--py-files, executors import
        imgfeat from it), the engine's jars and settings (`engine_settings`), then the archives,
        executors' Python and model dir of `shipping`. A refused combination fails the task, not
        retried, in one line naming it."""
        from airflow.sdk.exceptions import AirflowFailException

        from imgfeat import jvm
        from imgfeat.packaging import build_zip

        if self._shipped:
            return
        if not self.py_files:
            self.py_files = str(build_zip())
        try:
            deploy_mode = self.spark_deploy_mode()
            engine = self.engine_settings(deploy_mode) or {}
            ship = shipping(deploy_mode, os.environ.get("IMGFEAT_PYSPARK_PYTHON", sys.executable))
        except ValueError as e:
            raise AirflowFailException(f"{self._label}: {e}") from None
        if engine:
            self.jars = ",".join(filter(None, [self.jars, engine["jars"]]))
            self.driver_class_path = ":".join(filter(None, [self.driver_class_path, engine["driver_class_path"]]))
            self.conf = {**engine["conf"], **(self.conf or {})}
        self.env_vars = {**ship["env_vars"], **(self.env_vars or {})} or None
        self.conf = {**(self.conf or {}), **ship["conf"]}
        if deploy_mode != "cluster":  # a driver on this machine starts from `make setup`'s class archive
            self.conf = jvm.with_driver_options(self.conf, self.driver_class_path or "")
        _set_private_submit_options(self, archives=ship["archives"], driver_memory=engine.get("driver_memory"))
        if ship["model_dir"] and "--model-dir" in [str(a) for a in self.application_args]:
            args = [str(a) for a in self.application_args]
            args[args.index("--model-dir") + 1] = ship["model_dir"]
            self.application_args = args
        self._shipped = True

    def spark_deploy_mode(self) -> str | None:
        """The deploy mode spark-submit will use, as SparkSubmitHook resolves it: the operator's
        `deploy_mode`, else the `deploy-mode` extra of its connection."""
        if self.deploy_mode:
            return self.deploy_mode
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(self.conn_id).extra_dejson.get("deploy-mode")

    def engine_settings(self, deploy_mode: str | None) -> dict | None:
        """Jars, driver class path, confs and driver memory the app's engine needs on top (the
        fields of imgfeat.engines.bigdl.submit_settings), or None: nothing."""
        return None


LEASE_OWNER_ENV = ("AIRFLOW_CTX_DAG_ID", "AIRFLOW_CTX_DAG_RUN_ID", "AIRFLOW_CTX_TASK_ID", "AIRFLOW_CTX_TRY_NUMBER")


class StageSubmitOperator(AppSubmitOperator):
    """Submits one pipeline stage as a PySpark application.

    By default for the run's partition. With `partition_date` (a date, template or mapped
    argument), for that one: the `revisit` group runs the stages of an earlier partition that
    gained late files, never forced, its manifest naming the run's partition in `revisited_by`.
    """

    def __init__(self, *, stage: str, partition_date=None, **kwargs):
        if stage == "publish":
            kwargs.setdefault("outlets", [FEATURES])
        args = list(STAGE_ARGS)
        self.revisit = partition_date is not None
        if self.revisit:
            args[args.index("--partition-date") + 1] = partition_date
            args[args.index("--force") + 1] = "false"
            if stage == "publish":
                args += ["--revisited-by", PARTITION_DATE]
        elif stage == "publish":
            args += ["--late-partitions", LATE_PARTITIONS]
        super().__init__(app=stage, application_args=args, **kwargs)
        self.stage = stage
        self._label = f"stage {stage}"

    def execute(self, context):
        from airflow.sdk.exceptions import AirflowException, AirflowFailException

        from imgfeat import checkpoints, storage
        from imgfeat.spark.args import InvalidArguments, parse

        # The app's own parser: a bad parameter is refused here, before spark-submit, and
        # without retries (it would fail the same way again).
        rendered = [str(a) for a in self.application_args]
        if not rendered[rendered.index("--partition-date") + 1].strip():
            raise AirflowFailException(f"stage {self.stage}: invalid parameter: {NO_INTERVAL}")
        try:
            args = parse(self.stage, [str(a) for a in self.application_args], raise_errors=True)
        except InvalidArguments as e:
            raise AirflowFailException(f"stage {self.stage}: invalid parameter: {e}") from None
        force = bool((context.get("params") or {}).get("force")) and not self.revisit
        date, warehouse = args.partition_date, args.warehouse_root
        if self.stage == "publish" and context.get("outlet_events") is not None:
            context["outlet_events"][FEATURES].extra = {"partition_date": date, "warehouse_root": warehouse}
        try:
            ok, why = checkpoints.current(warehouse, self.stage, date, args.input_root, p.shaping(self.stage, args))
            if ok and not force:
                self.log.info("%s; skipping spark-submit (trigger with force=true to recompute)", why)
                return None
            self.log.info("%s; submitting", "force=true" if force else why)
            if self.stage == "ingest" and not checkpoints.input_exists(args.input_root, date):
                raise AirflowFailException(f"stage ingest: input partition {args.input_root}/dt={date} does not exist")
            storage.check_writable(warehouse)
            self._wait_for_lease(warehouse, date)
        except storage.StorageError as e:
            # An unreachable NameNode is retried (it may come back); a refused write is not.
            raise (AirflowException if e.transient else AirflowFailException)(f"stage {self.stage}: {e}") from None
        # The app's lease names this run, so a retry can take over what a killed attempt left,
        # also where the driver does not inherit this environment (YARN cluster mode).
        run_ids = {k: os.environ[k] for k in LEASE_OWNER_ENV if os.environ.get(k)}
        if run_ids:
            self.env_vars = {**(self.env_vars or {}), **run_ids}
        return self.submit(context)

    def _wait_for_lease(self, warehouse: str, date: str) -> None:
        """Another run's stage app holds the partition (imgfeat.lease): wait for it here, without
        starting Spark, up to IMGFEAT_LEASE_WAIT_S; then fail the attempt (retried) naming the holder.
        The app takes the lease itself; this is only the cheap early check."""
        import time

        from airflow.sdk.exceptions import AirflowException

        from imgfeat import lease, storage
        from imgfeat.layout import Warehouse

        path = Warehouse(warehouse).lease(date)
        deadline = time.time() + lease.WAIT_S
        while True:
            try:
                record = storage.read_json(path)
            except ValueError:
                record = None
            if not isinstance(record, dict) or "token" not in record:
                return  # free, or being written: the app decides
            if lease.reclaimable(record, time.time(), lease.me(self.stage), time.time()):
                return
            message = lease.held_message(date, record)
            if time.time() >= deadline:
                raise AirflowException(f"stage {self.stage}: {message}")
            self.log.info("%s; waiting", message)
            time.sleep(lease.POLL_S * 5)

    def engine_settings(self, deploy_mode: str | None) -> dict | None:
        """What the run's engine (the rendered `--engine`) adds to this stage's spark-submit:
        imgfeat.engines.stage_submit_settings (BigDL's, for the inference stages on engine=bigdl)."""
        from imgfeat.engines import stage_submit_settings

        args = [str(a) for a in self.application_args]
        return stage_submit_settings(self.stage, args[args.index("--engine") + 1], deploy_mode)


class TrainDescriptorOperator(AppSubmitOperator):
    """Submits spark_apps/train_descriptor.py: BigDL's distributed training of the DeepBit layer."""

    def __init__(self, **kwargs):
        super().__init__(app="train_descriptor", application_args=list(TRAIN_ARGS), **kwargs)

    def execute(self, context):
        from airflow.sdk.exceptions import AirflowFailException

        from imgfeat.spark import train_descriptor
        from imgfeat.spark.args import InvalidArguments

        parser = train_descriptor.build_parser()
        parser.raise_errors = True
        try:
            parser.parse_args([str(a) for a in self.application_args])
        except InvalidArguments as e:
            raise AirflowFailException(f"train_descriptor: invalid parameter: {e}") from None
        return self.submit(context)

    def engine_settings(self, deploy_mode: str | None) -> dict:
        """BigDL's jars and settings, on the engine the training runs on (its default: MKL-DNN does not train)."""
        from imgfeat.engines.bigdl.submit import submit_settings
        from imgfeat.spark import train_descriptor

        return submit_settings(deploy_mode, engine=train_descriptor.ENGINE_TYPE)


def index_arguments(warehouse_root: str, partition_date: str, duplicate_radius=None,
                    duplicate_similarity=None) -> list[str]:
    """spark_apps/index.py's arguments for one partition, checked by the app's own parser:
    AirflowFailException naming the bad one (not retried: it would fail the same way again)."""
    from airflow.sdk.exceptions import AirflowFailException

    from imgfeat.spark import index
    from imgfeat.spark.args import InvalidArguments

    args = ["--warehouse-root", warehouse_root, "--partition-date", partition_date]
    args += ["--duplicate-radius", str(duplicate_radius)] if duplicate_radius is not None else []
    args += ["--duplicate-similarity", str(duplicate_similarity)] if duplicate_similarity is not None else []
    parser = index.build_parser()
    parser.raise_errors = True
    try:
        parser.parse_args(args)
    except InvalidArguments as e:
        raise AirflowFailException(f"index: invalid parameter: {e}") from None
    return args


def index_partitions(triggering_asset_events=None, params=None) -> list[list[str]]:
    """feature_index's partitions, [warehouse_root, partition_date] each, sorted by date, without
    repeats: those named by the run's triggering Asset events (`event_partitions`), else (a manual
    run) by its `partition_date` and `warehouse_root` params. All are checked before any is indexed:
    a bad or missing event `extra`, a bad param or a run naming no partition fails in one line
    naming it, not retried."""
    from airflow.sdk.exceptions import AirflowFailException

    params = params or {}
    try:
        found = event_partitions(triggering_asset_events)
    except p.ParamError as e:
        raise AirflowFailException(f"index: invalid parameter: {e}") from None
    if not found and params.get("partition_date"):
        found = [(params["warehouse_root"], params["partition_date"])]
    if not found:
        raise AirflowFailException("index: invalid parameter: partition_date is required when no Asset event "
                                   "names a partition")
    for warehouse, date in found:
        index_arguments(warehouse, date, params.get("duplicate_radius"), params.get("duplicate_similarity"))
    return [[warehouse, date] for warehouse, date in found]


class IndexSubmitOperator(AppSubmitOperator):
    """Submits spark_apps/index.py for one partition (`partition`: [warehouse_root, partition_date]):
    refreshes the similarity index of its code and writes its duplicates table. feature_index maps
    it over `index_partitions`, so each partition is one task instance, retried alone, labelled by
    its date (`map_index_template`). The `duplicate_radius` and `duplicate_similarity` params apply
    to every partition."""

    def __init__(self, *, partition, map_index_template: str | None = "dt={{ task.partition_date }}", **kwargs):
        super().__init__(app="index", application_args=[], map_index_template=map_index_template, **kwargs)
        # Plain attributes, not templates: a root named by an Asset event is never rendered by Jinja.
        self.warehouse_root, self.partition_date = partition

    def execute(self, context):
        params = context.get("params") or {}
        self.application_args = index_arguments(self.warehouse_root, self.partition_date,
                                                params.get("duplicate_radius"), params.get("duplicate_similarity"))
        return self.submit(context)

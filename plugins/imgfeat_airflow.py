"""Shared Airflow settings of the imgfeat pipeline: one home for what every stage task uses.

- `StageSubmitOperator`: a SparkSubmitOperator that submits spark_apps/<stage>.py with the run's
  arguments, validating them first so a bad parameter fails the task before any Spark job.
- `PARAMS`: the run parameters (validated by Airflow on trigger, again by the operator).
  A stage whose checkpoint is committed and current is skipped (see imgfeat.checkpoints) unless
  the run's `force` param is set, so re-running a failed run redoes only what is missing. An input
  partition that gained files is ingested again, and (with `reuse`) only its new files are inferred.
- `WaitForPartitionSensor`: the readiness gate before ingest (task `wait_for_partition`): scheduled
  and backfill runs wait, in reschedule mode, until the input partition is complete (a marker
  file, or a listing that stays unchanged for a quiet period); manual runs only when `wait` is set.
- `FindLateFilesOperator`: late files (task `find_late_files`): scheduled and backfill runs name the
  earlier partitions (`lookback_days` back) whose input changed since their ingest; the DAG's
  `revisit` group runs the stages again for each (`StageSubmitOperator(partition_date=...)`).
- `DEFAULT_ARGS`: retries and their delay.
Spark's master comes from the `spark_default` connection (`local[2]`, `yarn`, `spark://h:p`).
Environment (read when the DAG file is parsed; cheap):
  IMGFEAT_HOME           where spark_apps/ lives (default: this repository)
  IMGFEAT_INPUT_ROOT     default input root        IMGFEAT_WAREHOUSE_ROOT  default warehouse root
  IMGFEAT_MODEL_DIR      converted models           IMGFEAT_PYSPARK_PYTHON  Python of executors
  IMGFEAT_WEBHDFS_URL    WebHDFS of an hdfs:// warehouse (default http://<namenode>:9870)
  IMGFEAT_ALLOWED_ROOTS  comma-separated prefixes every input/warehouse root must live under
Environment read when a task runs (cluster submission, see `shipping`):
  IMGFEAT_PYTHON_ARCHIVE venv-pack tarball of the Python environment (`make pack`), unpacked as ./env
  IMGFEAT_MODEL_ARCHIVE  tarball of the model directory (`make pack`), unpacked as ./models
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset, BaseOperator, BaseSensorOperator, Param

from imgfeat import params as p
from imgfeat import paths

HOME = Path(os.environ.get("IMGFEAT_HOME", Path(__file__).resolve().parent.parent))
MAX_ACTIVE_RUNS = 2

# The partition of a run: the `partition_date` param when given (UI triggers), else the start
# day of the data interval (scheduled runs and backfills process the day that just ended).
# Runs without a data interval (a manual trigger without logical date, an Asset event) render
# "" here, and the operator asks for `partition_date` instead of failing at template rendering.
PARTITION_DATE = ("{{ params.partition_date or (data_interval_start | ds "
                  "if data_interval_start is defined and data_interval_start else '') }}")

# The earlier partitions find_late_files returned (comma-separated; "" when none or not run).
LATE_PARTITIONS = "{{ (ti.xcom_pull(task_ids='find_late_files') or []) | join(',') }}"

PARAMS = {
    "partition_date": Param(None, type=["null", "string"], pattern=p.DATE_PATTERN,
                            description="Partition YYYY-MM-DD; empty: the data interval's start day"),
    "input_root": Param(os.environ.get("IMGFEAT_INPUT_ROOT", str(paths.var_dir() / "sample" / "input")),
                        type="string", minLength=1, description="Images are read from INPUT/dt=<date>/"),
    "warehouse_root": Param(os.environ.get("IMGFEAT_WAREHOUSE_ROOT", str(paths.var_dir() / "warehouse")),
                            type="string", minLength=1, description="Checkpoints and published tables"),
    "score_threshold": Param(p.DEFAULTS["score_threshold"], type="number", exclusiveMinimum=0,
                             exclusiveMaximum=1, description="Minimum detection score"),
    "code_bits": Param(p.DEFAULTS["code_bits"], type="integer", minimum=p.MIN_CODE_BITS,
                       maximum=p.MAX_CODE_BITS, multipleOf=8, description="Binary code length K"),
    "engine": Param(p.DEFAULTS["engine"], type="string", enum=["openvino", "bigdl"],
                    description="Inference engine of detect and embed"),
    "max_inference_failures": Param(p.DEFAULTS["max_inference_failures"], type="number", minimum=0, maximum=1,
                                    description="detect/embed fail when more than this share of the images they "
                                                "infer (and more than one) fail inference: a broken engine"),
    "wait": Param(False, type="boolean",
                  description="Manual runs: wait for the input partition to be ready, as scheduled and backfill "
                              "runs always do; false: check only that it exists"),
    "ready_marker": Param(p.READY_DEFAULTS["ready_marker"], type="string", maxLength=255,
                          pattern=r"^$|^[_.][A-Za-z0-9._-]*$",
                          description="The partition is ready when this file exists in it (hidden name); "
                                      "empty: when its listing stays unchanged for quiet_period_s"),
    "quiet_period_s": Param(p.READY_DEFAULTS["quiet_period_s"], type="number", minimum=0,
                            description="Without a marker: seconds the listing (names, sizes) must stay unchanged"),
    "poke_interval_s": Param(p.READY_DEFAULTS["poke_interval_s"], type="number", exclusiveMinimum=0,
                             description="Seconds between two looks at the partition (the worker slot is free between)"),
    "wait_timeout_s": Param(p.READY_DEFAULTS["wait_timeout_s"], type="number", minimum=0,
                            description="Fail the run when the partition is not ready after this many seconds"),
    "lookback_days": Param(p.READY_DEFAULTS["lookback_days"], type="integer", minimum=0,
                           maximum=p.MAX_LOOKBACK_DAYS,
                           description="Scheduled and backfill runs: revisit the partitions of this many days before "
                                       "theirs that gained or changed files since their ingest; 0: off"),
    "force": Param(False, type="boolean",
                   description="Recompute stages whose checkpoint is committed and current"),
    "reuse": Param(True, type="boolean",
                   description="Copy the published results of images whose content was already published "
                               "with the same model (in this or another partition) instead of inferring again"),
}

# The published features, as an Asset: each successful publish emits an event whose `extra` names
# the partition, so downstream DAGs (feature_catalog, later the search index) process exactly it.
FEATURES = Asset(name="imgfeat_features", uri="imgfeat://warehouse/features")

STAGE_ARGS = [
    "--partition-date", PARTITION_DATE,
    "--input-root", "{{ params.input_root }}",
    "--warehouse-root", "{{ params.warehouse_root }}",
    "--score-threshold", "{{ params.score_threshold }}",
    "--code-bits", "{{ params.code_bits }}",
    "--engine", "{{ params.engine }}",
    "--reuse", "{{ params.reuse | lower }}",
    "--force", "{{ params.force | lower }}",
    "--max-inference-failures", "{{ params.max_inference_failures }}",
    "--model-dir", os.environ.get("IMGFEAT_MODEL_DIR", str(paths.model_dir())),
]

SPARK_CONF = {
    "spark.python.worker.reuse": "true",  # keeps each worker's loaded model across tasks
    "spark.sql.parquet.compression.codec": "snappy",
}

DEFAULT_ARGS = {
    "owner": "imgfeat",
    "retries": 2,
    "retry_delay": timedelta(seconds=int(os.environ.get("IMGFEAT_RETRY_DELAY_S", "60"))),
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


def _connection(conn_id: str) -> tuple[str, str | None]:
    """(master, deploy mode) of a spark connection, as SparkSubmitHook resolves them."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    master = f"{conn.host}:{conn.port}" if conn.port else conn.host
    return master, conn.extra_dejson.get("deploy-mode")


def event_partitions(triggering_asset_events) -> list[tuple[str, str]]:
    """(warehouse_root, partition_date) pairs named by a run's triggering Asset events (the
    `triggering_asset_events` of its context: asset -> events), validated by
    imgfeat.params.asset_event_partitions (ParamError naming the bad key), sorted, without repeats.
    The one reading of publish's events: feature_index and feature_catalog both use it."""
    events = triggering_asset_events or {}
    return p.asset_event_partitions(getattr(e, "extra", None) for evs in events.values() for e in evs)


class AppSubmitOperator(SparkSubmitOperator):
    """Submits one of spark_apps/ with what every imgfeat app needs: the library zip, the
    executors' Python and models for the connection's deploy mode, and BigDL's jars when asked."""

    ui_color = "#e8f0fe"

    def __init__(self, *, app: str, application_args: list, **kwargs):
        kwargs.setdefault("conn_id", "spark_default")
        kwargs.setdefault("conf", dict(SPARK_CONF))
        kwargs.setdefault("task_id", app)
        super().__init__(application=str(HOME / "spark_apps" / f"{app}.py"), application_args=application_args,
                         name=f"imgfeat-{app}", **kwargs)
        self.app = app
        self._label = app  # how errors name the task
        self._shipped = False

    def submit(self, context, bigdl_engine: str | None = None):
        """spark-submit, after shipping (`bigdl_engine`: BigDL's engine type, or None for no BigDL)."""
        from airflow.sdk.exceptions import AirflowFailException

        from imgfeat.packaging import build_zip

        if not self.py_files:
            self.py_files = str(build_zip())  # executors import imgfeat from this zip
        if not self._shipped:
            try:
                self._ship_app(bigdl_engine)
            except ValueError as e:
                raise AirflowFailException(f"{self._label}: {e}") from None
            self._shipped = True
        return super().execute(context)

    def _ship_app(self, bigdl_engine: str | None) -> None:
        """Settle archives, the executors' Python, the model dir and BigDL's jars and settings
        for the connection's deploy mode."""
        _, deploy_mode = _connection(self._conn_id)
        deploy_mode = self._deploy_mode or deploy_mode
        if bigdl_engine:
            from imgfeat.engines.bigdl import submit_settings

            bigdl = submit_settings(deploy_mode, engine=bigdl_engine)
            self.jars = ",".join(filter(None, [self.jars, bigdl["jars"]]))
            self.driver_class_path = ":".join(filter(None, [self.driver_class_path, bigdl["driver_class_path"]]))
            self.conf = {**bigdl["conf"], **(self.conf or {})}
            self._driver_memory = self._driver_memory or bigdl["driver_memory"]
        ship = shipping(deploy_mode, os.environ.get("IMGFEAT_PYSPARK_PYTHON", sys.executable))
        self.env_vars = {**ship["env_vars"], **(self.env_vars or {})} or None
        self.conf = {**(self.conf or {}), **ship["conf"]}
        if ship["archives"]:
            self._archives = ",".join(filter(None, [self._archives, ship["archives"]]))
        if ship["model_dir"] and "--model-dir" in [str(a) for a in self.application_args]:
            args = [str(a) for a in self.application_args]
            args[args.index("--model-dir") + 1] = ship["model_dir"]
            self.application_args = args


LEASE_OWNER_ENV = ("AIRFLOW_CTX_DAG_ID", "AIRFLOW_CTX_DAG_RUN_ID", "AIRFLOW_CTX_TASK_ID", "AIRFLOW_CTX_TRY_NUMBER")


WAITING_RUN_TYPES = ("scheduled", "backfill")  # these runs always wait for their partition, and look back
NO_INTERVAL = ("partition_date is required when the run has no data interval (a manual trigger without "
               "logical date, or an Asset-triggered run)")


def _run_type(context) -> str:
    run_type = getattr(context.get("dag_run"), "run_type", None)
    return str(getattr(run_type, "value", run_type) or "manual")


def _partition(task_id: str, partition_date, input_root, warehouse_root) -> dict:
    """The rendered partition fields of a task, validated; AirflowFailException in one line naming
    the bad one."""
    from airflow.sdk.exceptions import AirflowFailException

    if not str(partition_date or "").strip():
        raise AirflowFailException(f"{task_id}: invalid parameter: {NO_INTERVAL}")
    try:
        return {"date": p.partition_date(partition_date), "input_root": p.root(input_root, "input_root"),
                "warehouse_root": p.warehouse_root(warehouse_root)}
    except p.ParamError as e:
        raise AirflowFailException(f"{task_id}: invalid parameter: {e}") from None


class WaitForPartitionSensor(BaseSensorOperator):
    """The readiness gate before ingest: waits until the run's input partition is complete.

    Ready when INPUT/dt=<date>/<ready_marker> exists or, with `ready_marker` empty, when the
    partition's listing (names and sizes, as ingest lists it) has not changed for `quiet_period_s`
    (imgfeat.checkpoints.partition_ready). Scheduled and backfill runs wait; manual runs only with
    `wait=true` (otherwise ingest checks at once that the partition exists, as before). It waits in
    reschedule mode: between two looks (`poke_interval_s`) the task is up_for_reschedule and holds
    no worker slot. The quiet-period state lives in WAREHOUSE/_staging/ready/dt=<date>.json while it
    waits. After `wait_timeout_s` it fails, not retried, in one line naming the partition and what
    was missing; nothing else is written to the warehouse.
    """

    template_fields = ("partition_date", "input_root", "warehouse_root")
    ui_color = "#fff4d6"

    def __init__(self, *, task_id: str = "wait_for_partition", partition_date: str = PARTITION_DATE,
                 input_root: str = "{{ params.input_root }}", warehouse_root: str = "{{ params.warehouse_root }}",
                 **kwargs):
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", p.READY_DEFAULTS["poke_interval_s"])
        kwargs.setdefault("timeout", p.READY_DEFAULTS["wait_timeout_s"])
        super().__init__(task_id=task_id, **kwargs)
        self.partition_date, self.input_root, self.warehouse_root = partition_date, input_root, warehouse_root
        self._settings: dict = {}

    @staticmethod
    def settings(params: dict) -> dict:
        """The gate's own params, validated (ParamError naming the first bad one)."""
        params = params or {}
        get = lambda k: params.get(k, p.READY_DEFAULTS.get(k))  # noqa: E731
        return {"wait": p.boolean(params.get("wait", False), "wait"),
                "ready_marker": p.ready_marker(get("ready_marker")),
                "quiet_period_s": p.seconds(get("quiet_period_s"), "quiet_period_s"),
                "poke_interval_s": p.seconds(get("poke_interval_s"), "poke_interval_s", positive=True),
                "wait_timeout_s": p.seconds(get("wait_timeout_s"), "wait_timeout_s")}

    @staticmethod
    def waits(run_type, wait: bool) -> bool:
        """Whether a run of `run_type` waits: scheduled and backfill runs always, others when asked."""
        return str(getattr(run_type, "value", run_type) or "") in WAITING_RUN_TYPES or wait

    def execute(self, context):
        from airflow.sdk import timezone
        from airflow.sdk.exceptions import AirflowFailException

        try:
            s = self.settings(context.get("params"))
        except p.ParamError as e:
            raise AirflowFailException(f"{self.task_id}: invalid parameter: {e}") from None
        run_type = _run_type(context)
        if not self.waits(run_type, s["wait"]):
            self.log.info("a %s run with wait=false does not wait: ingest checks that the partition exists", run_type)
            return None
        s.update(_partition(self.task_id, self.partition_date, self.input_root, self.warehouse_root))
        self._settings = s
        self._first_look = timezone.utcnow()
        self.poke_interval = s["poke_interval_s"]
        # poke() fails first, with its own one-line message; this is only the sensor's safety net.
        self.timeout = s["wait_timeout_s"] + s["poke_interval_s"] + 3600
        return super().execute(context)

    def poke(self, context) -> bool:
        import time

        from airflow.sdk import timezone
        from airflow.sdk.exceptions import AirflowFailException

        from imgfeat import checkpoints, storage
        from imgfeat.layout import Warehouse, input_partition

        s = self._settings
        date, marker = s["date"], s["ready_marker"]
        part = input_partition(s["input_root"], date)
        state = Warehouse(s["warehouse_root"]).ready_state(date)
        ti = context.get("ti")
        started = (ti.get_first_reschedule_date(context) if ti is not None else None) or self._first_look
        waited = (timezone.utcnow() - started).total_seconds()
        try:
            seen = None
            if not marker:
                try:
                    seen = storage.read_json(state)
                except ValueError:
                    seen = None  # a torn state file: start the quiet period again
            ready = checkpoints.partition_ready(s["input_root"], date, marker, s["quiet_period_s"],
                                                now=time.time(), seen=seen)
        except storage.StorageError as e:
            if not e.transient:
                raise AirflowFailException(f"{self.task_id}: {e}") from None
            ready, seen = checkpoints.Readiness(False, str(e)), None  # the NameNode may come back: keep waiting
        try:
            if ready.ready or waited >= s["wait_timeout_s"]:
                if not marker:
                    storage.remove(state)
            elif ready.seen and ready.seen != seen:
                storage.write_json(state, ready.seen)
        except Exception as e:  # noqa: BLE001 - storage refused the state file: one line
            raise AirflowFailException(f"{self.task_id}: cannot keep its state in {state}: "
                                       f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        if ready.ready:
            self.log.info("input partition %s is ready: %s", part, ready.reason)
            return True
        if waited >= s["wait_timeout_s"]:
            raise AirflowFailException(f"{self.task_id}: input partition {part} not ready after {waited:.0f} s: "
                                       f"{ready.reason}")
        self.log.info("input partition %s not ready: %s; looking again in %g s (waited %.0f of %g s)",
                      part, ready.reason, s["poke_interval_s"], waited, s["wait_timeout_s"])
        return False


class FindLateFilesOperator(BaseOperator):
    """Late files: the task `find_late_files` returns the earlier partitions to revisit.

    A scheduled or backfill run looks at the `lookback_days` days before its partition and returns
    the dates of those that were ingested and whose input listing has changed since (a file landed
    late, or was replaced): imgfeat.checkpoints.changed_since_ingest. The DAG maps its `revisit`
    group of stage tasks over them after publish; as in any re-run, ingest reads the partition
    again and (with `reuse`) only the new files are inferred. Manual runs do not look back.
    """

    template_fields = ("partition_date", "input_root", "warehouse_root")
    ui_color = "#fff4d6"

    def __init__(self, *, task_id: str = "find_late_files", partition_date: str = PARTITION_DATE,
                 input_root: str = "{{ params.input_root }}", warehouse_root: str = "{{ params.warehouse_root }}",
                 **kwargs):
        super().__init__(task_id=task_id, **kwargs)
        self.partition_date, self.input_root, self.warehouse_root = partition_date, input_root, warehouse_root

    def execute(self, context) -> list[str]:
        from airflow.sdk.exceptions import AirflowException, AirflowFailException

        from imgfeat import checkpoints, storage

        params = context.get("params") or {}
        try:
            days = p.lookback_days(params.get("lookback_days", p.READY_DEFAULTS["lookback_days"]))
        except p.ParamError as e:
            raise AirflowFailException(f"{self.task_id}: invalid parameter: {e}") from None
        run_type = _run_type(context)
        if run_type not in WAITING_RUN_TYPES or days == 0:
            self.log.info("a %s run with lookback_days=%d does not look back", run_type, days)
            return []
        s = _partition(self.task_id, self.partition_date, self.input_root, self.warehouse_root)
        try:
            late = checkpoints.changed_since_ingest(s["input_root"], s["warehouse_root"], s["date"], days)
        except storage.StorageError as e:
            raise (AirflowException if e.transient else AirflowFailException)(f"{self.task_id}: {e}") from None
        for c in late:
            self.log.info("dt=%s gained or changed files since its ingest (%d files then, %d now): revisiting it "
                          "after publish", c["partition_date"], c["files_then"], c["files_now"])
        self.log.info("looked back %d days before dt=%s: %d partitions to revisit", days, s["date"], len(late))
        return [c["partition_date"] for c in late]


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
        from imgfeat.spark.runner import InvalidArguments, parse

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
        return self.submit(context, self._bigdl_engine(args.engine))

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

    def _bigdl_engine(self, engine: str) -> str | None:
        # detect and embed run BigDL's inference graphs on its MKL-DNN engine
        return "mkldnn" if engine == "bigdl" and self.stage in ("detect", "embed") else None

    def _ship(self, engine: str) -> None:
        self._ship_app(self._bigdl_engine(engine))


TRAIN_ARGS = [
    "--warehouse-root", "{{ params.warehouse_root }}",
    "--code-bits", "{{ params.code_bits }}",
    "--partitions", "{{ params.partitions }}",
    "--max-crops", "{{ params.max_crops }}",
    "--rounds", "{{ params.rounds }}",
    "--epochs", "{{ params.epochs }}",
    "--activate", "{{ params.activate | lower }}",
    "--model-dir", os.environ.get("IMGFEAT_MODEL_DIR", str(paths.model_dir())),
]

TRAIN_PARAMS = {
    "warehouse_root": PARAMS["warehouse_root"],
    "code_bits": PARAMS["code_bits"],
    "partitions": Param(30, type="integer", minimum=1, description="Sample the crops of this many latest partitions"),
    "max_crops": Param(20000, type="integer", minimum=1, description="At most this many distinct crops"),
    "rounds": Param(5, type="integer", minimum=1, description="Rounds of fixed binary targets"),
    "epochs": Param(30, type="integer", minimum=1, description="BigDL epochs per round"),
    "activate": Param(True, type="boolean", description="Make the new layer the one new runs use"),
}


class TrainDescriptorOperator(AppSubmitOperator):
    """Submits spark_apps/train_descriptor.py: BigDL's distributed training of the DeepBit layer."""

    def __init__(self, **kwargs):
        super().__init__(app="train_descriptor", application_args=list(TRAIN_ARGS), **kwargs)

    def execute(self, context):
        from airflow.sdk.exceptions import AirflowFailException

        from imgfeat.spark import train_descriptor
        from imgfeat.spark.runner import InvalidArguments

        parser = train_descriptor.build_parser()
        parser.raise_errors = True
        try:
            parser.parse_args([str(a) for a in self.application_args])
        except InvalidArguments as e:
            raise AirflowFailException(f"train_descriptor: invalid parameter: {e}") from None
        return self.submit(context, train_descriptor.ENGINE_TYPE)


INDEX_PARAMS = {
    "partition_date": PARAMS["partition_date"],
    "warehouse_root": PARAMS["warehouse_root"],
    "duplicate_radius": Param(None, type=["null", "integer"], minimum=0,
                              description="Hamming radius of a near-duplicate; empty: by code length"),
}


class IndexSubmitOperator(AppSubmitOperator):
    """Submits spark_apps/index.py for each partition named by the triggering Asset events (or, in a
    manual run, by the `partition_date` and `warehouse_root` params)."""

    def __init__(self, **kwargs):
        super().__init__(app="index", application_args=[], **kwargs)

    @staticmethod
    def partitions(context) -> list[tuple[str, str]]:
        """(warehouse_root, partition_date) pairs to index, in order, without repeats: those of the
        triggering Asset events (validated; a bad or missing `extra` raises ParamError), else the params'."""
        found = event_partitions(context.get("triggering_asset_events"))
        params = context.get("params") or {}
        if not found and params.get("partition_date"):
            found = [(params["warehouse_root"], params["partition_date"])]
        return sorted(set(found), key=lambda wd: (wd[1], wd[0]))

    def execute(self, context):
        from airflow.sdk.exceptions import AirflowFailException

        from imgfeat.spark import index
        from imgfeat.spark.runner import InvalidArguments

        try:
            todo = self.partitions(context)
        except p.ParamError as e:
            raise AirflowFailException(f"index: invalid parameter: {e}") from None
        if not todo:
            raise AirflowFailException("index: invalid parameter: partition_date is required when no Asset event "
                                       "names a partition")
        radius = (context.get("params") or {}).get("duplicate_radius")
        parser = index.build_parser()
        parser.raise_errors = True
        results = []
        for warehouse, date in todo:
            args = ["--warehouse-root", warehouse, "--partition-date", date]
            args += ["--duplicate-radius", str(radius)] if radius is not None else []
            try:
                parser.parse_args(args)
            except InvalidArguments as e:
                raise AirflowFailException(f"index: invalid parameter: {e}") from None
            self.application_args = args
            self._hook = None
            results.append(self.submit(context))
        return results

"""The gates before a run's stages: tasks that look at the input, never submit Spark.

- `WaitForPartitionSensor`: the readiness gate before ingest (task `wait_for_partition`): scheduled
  and backfill runs wait, in reschedule mode, until the input partition is complete (a marker
  file, or a listing that stays unchanged for a quiet period); manual runs only when `wait` is set.
- `FindLateFilesOperator`: late files (task `find_late_files`): scheduled and backfill runs name the
  earlier partitions (`lookback_days` back) whose input changed since their ingest; the DAG's
  `revisit` group runs the stages again for each (`StageSubmitOperator(partition_date=...)`).
Storage is local or hdfs:// (IMGFEAT_WEBHDFS_URL: WebHDFS, default http://<namenode>:9870).
"""

from __future__ import annotations

from airflow.sdk import BaseOperator, BaseSensorOperator

from imgfeat import params as p

from .params import NO_INTERVAL, PARTITION_DATE

WAITING_RUN_TYPES = ("scheduled", "backfill")  # these runs always wait for their partition, and look back


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

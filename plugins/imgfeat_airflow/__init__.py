"""The imgfeat pipeline's Airflow side: what the DAG files in dags/ build their tasks from.

- `params`: what the DAGs declare, read when a DAG file is parsed: the run parameters (`PARAMS`,
  `TRAIN_PARAMS`, `INDEX_PARAMS`), the argument templates the tasks render, the `FEATURES` Asset
  and the reading of its events (`event_partitions`), the task defaults (`DEFAULT_ARGS`).
- `submit`: the spark-submit operators (`AppSubmitOperator` and its stage, training and index
  flavours), how Python and models reach a cluster (`shipping`), feature_index's partitions.
- `gates`: the tasks before a run's stages, which look at the input and submit nothing: the
  readiness gate (`WaitForPartitionSensor`) and the late files (`FindLateFilesOperator`).
- `ui`: the UI's pages (a run's report, picture search), a FastAPI app that plugins/imgfeat_ui.py
  mounts on the api-server; not imported here (DAG files do not need it).

Spark's master comes from the `spark_default` connection (`local[2]`, `yarn`, `spark://h:p`).
Environment (read when a DAG file is parsed; cheap):
  IMGFEAT_HOME           where spark_apps/ lives (default: this repository)
  IMGFEAT_INPUT_ROOT     default input root        IMGFEAT_WAREHOUSE_ROOT  default warehouse root
  IMGFEAT_MODEL_DIR      converted models           IMGFEAT_PYSPARK_PYTHON  Python of executors
  IMGFEAT_WEBHDFS_URL    WebHDFS of an hdfs:// warehouse (default http://<namenode>:9870)
  IMGFEAT_ALLOWED_ROOTS  comma-separated prefixes every input/warehouse root must live under
Environment read when a task runs (cluster submission, see `shipping`):
  IMGFEAT_PYTHON_ARCHIVE venv-pack tarball of the Python environment (`make pack`), unpacked as ./env
  IMGFEAT_MODEL_ARCHIVE  tarball of the model directory (`make pack`), unpacked as ./models

Airflow puts plugins/ on sys.path, so a DAG file does `from imgfeat_airflow import ...`; importing
it loads Airflow's SDK and the Spark provider, never Spark itself. It defines no AirflowPlugin
(plugins/imgfeat_ui.py is the one): plugins/.airflowignore keeps Airflow's plugin loader from
importing its files as top-level modules.
"""

from .gates import FindLateFilesOperator, WaitForPartitionSensor
from .params import (DEFAULT_ARGS, FEATURES, INDEX_PARAMS, LATE_PARTITIONS, MAX_ACTIVE_RUNS, NO_INTERVAL, PARAMS,
                     PARTITION_DATE, STAGE_ARGS, TRAIN_ARGS, TRAIN_PARAMS, event_partitions)
from .submit import (HOME, SPARK_CONF, AppSubmitOperator, IndexSubmitOperator, StageSubmitOperator,
                     TrainDescriptorOperator, index_arguments, index_partitions, shipping)

__all__ = [
    "DEFAULT_ARGS", "FEATURES", "HOME", "INDEX_PARAMS", "LATE_PARTITIONS", "MAX_ACTIVE_RUNS", "NO_INTERVAL", "PARAMS",
    "PARTITION_DATE", "SPARK_CONF", "STAGE_ARGS", "TRAIN_ARGS", "TRAIN_PARAMS", "AppSubmitOperator",
    "FindLateFilesOperator", "IndexSubmitOperator", "StageSubmitOperator", "TrainDescriptorOperator",
    "WaitForPartitionSensor", "event_partitions", "index_arguments", "index_partitions", "shipping",
]

"""image_features: detect, crop and describe every image of a date partition.

wait_for_partition -> find_late_files -> ingest -> detect -> crop -> embed -> publish -> revisit[*].
The gate waits (reschedule mode, no worker slot held) until the input partition is complete: its
marker file exists, or its listing stays unchanged for a quiet period. The stages are Spark
applications that each read their predecessor's checkpoint and commit their own under
WAREHOUSE/<stage>/dt=<date>/. Late files: find_late_files names the earlier partitions (up to
`lookback_days` back) that gained files since their ingest; after publish, the `revisit` group runs
the stages again for each of them (only their new files are inferred).
A daily run processes the partition of its data interval's start day; a manual run may name
another partition with the `partition_date` param (and waits only with `wait=true`, never looks back).
"""

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, chain, task_group
from imgfeat_airflow import (DEFAULT_ARGS, MAX_ACTIVE_RUNS, PARAMS, FindLateFilesOperator, StageSubmitOperator,
                             WaitForPartitionSensor)

STAGES = ("ingest", "detect", "crop", "embed", "publish")

with DAG(
    dag_id="image_features",
    description="Object-level image features: detection, crop, descriptor, binary code",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=MAX_ACTIVE_RUNS,
    default_args=DEFAULT_ARGS,
    params=PARAMS,
    doc_md=__doc__,
    tags=["imgfeat", "spark"],
) as dag:

    @task_group
    def revisit(partition_date):
        """The stages again for an earlier partition that gained late files."""
        chain(*(StageSubmitOperator(stage=stage, partition_date=partition_date) for stage in STAGES))

    wait_for_partition = WaitForPartitionSensor()
    find_late_files = FindLateFilesOperator()
    ingest = StageSubmitOperator(stage="ingest")
    detect = StageSubmitOperator(stage="detect")
    crop = StageSubmitOperator(stage="crop")
    embed = StageSubmitOperator(stage="embed")
    publish = StageSubmitOperator(stage="publish")

    wait_for_partition >> find_late_files >> ingest >> detect >> crop >> embed >> publish
    publish >> revisit.expand(partition_date=find_late_files.output)

"""image_features: detect, crop and describe every image of a date partition.

wait_for_partition -> ingest -> detect -> crop -> embed -> publish. The first waits (reschedule
mode, no worker slot held) until the input partition is complete: its marker file exists, or its
listing stays unchanged for a quiet period. The others are Spark applications that each read their
predecessor's checkpoint and commit their own under WAREHOUSE/<stage>/dt=<date>/.
A daily run processes the partition of its data interval's start day; a manual run may name
another partition with the `partition_date` param (and waits only with `wait=true`).
"""

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable
from imgfeat_airflow import DEFAULT_ARGS, MAX_ACTIVE_RUNS, PARAMS, StageSubmitOperator, WaitForPartitionSensor

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
    wait_for_partition = WaitForPartitionSensor()
    ingest = StageSubmitOperator(stage="ingest")
    detect = StageSubmitOperator(stage="detect")
    crop = StageSubmitOperator(stage="crop")
    embed = StageSubmitOperator(stage="embed")
    publish = StageSubmitOperator(stage="publish")

    wait_for_partition >> ingest >> detect >> crop >> embed >> publish

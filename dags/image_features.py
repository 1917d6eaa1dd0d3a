"""image_features: detect, crop and describe every image of a date partition.

ingest -> detect -> crop -> embed -> publish, each a Spark application that reads its
predecessor's checkpoint and commits its own under WAREHOUSE/<stage>/dt=<date>/.
A daily run processes the partition of its data interval's start day; a manual run may name
another partition with the `partition_date` param.
"""

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable
from imgfeat_airflow import DEFAULT_ARGS, MAX_ACTIVE_RUNS, PARAMS, StageSubmitOperator

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
    ingest = StageSubmitOperator(stage="ingest")
    detect = StageSubmitOperator(stage="detect")
    crop = StageSubmitOperator(stage="crop")
    embed = StageSubmitOperator(stage="embed")
    publish = StageSubmitOperator(stage="publish")

    ingest >> detect >> crop >> embed >> publish

"""train_descriptor: learn the binary code layers from recent pictures, on Spark (BigDL optionally).

One task, a Spark application: it samples distinct pictures published in the latest partitions,
and for their crops, then for the pictures whole, describes each image and its views (rotations and
near-duplicate edits), learns a K-bit layer by whitening away what the views change, and with
`rounds` > 0 refines it with BigDL's distributed optimizer (DeepBit: quantization, evenly
distributed bits, invariance). The layers are written to WAREHOUSE/descriptors/deepbit<K>/ (crops:
the `code` column) and picture-deepbit<K>/ (whole pictures: `picture_code`, what duplicates compare)
and, with `activate`, become the ones image_features' embed uses from its next run on (their
versions are in the `model` column). Until a layer exists, embed uses the fixed projection.

Manual by default; set IMGFEAT_TRAIN_SCHEDULE (for example "@weekly") to retrain on a schedule.
"""

import os

import pendulum
from airflow.sdk import DAG
from imgfeat_airflow import DEFAULT_ARGS, TRAIN_PARAMS, TrainDescriptorOperator

with DAG(
    dag_id="train_descriptor",
    description="Learn the DeepBit binary code layers of crops and pictures (BigDL distributed training)",
    schedule=os.environ.get("IMGFEAT_TRAIN_SCHEDULE") or None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 0},
    params=TRAIN_PARAMS,
    doc_md=__doc__,
    tags=["imgfeat", "spark", "bigdl"],
) as dag:
    TrainDescriptorOperator()

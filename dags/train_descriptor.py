"""train_descriptor: learn the binary code layer from recent crops, on Spark (BigDL optionally).

One task, a Spark application: it samples distinct crops of the pictures published in the latest
partitions, describes each crop and its views (rotations and near-duplicate edits), learns the
K-bit layer by whitening away what the views change, and with `rounds` > 0 refines it with BigDL's
distributed optimizer (DeepBit: quantization, evenly distributed bits, invariance). The layer is
written to WAREHOUSE/descriptors/deepbit<K>/<version>.json and, with `activate`, becomes the one
image_features' embed uses from its next run on (the version is in the `model` column). Until a
layer exists, embed uses the fixed projection.

Manual by default; set IMGFEAT_TRAIN_SCHEDULE (for example "@weekly") to retrain on a schedule.
"""

import os

import pendulum
from airflow.sdk import DAG
from imgfeat_airflow import DEFAULT_ARGS, TRAIN_PARAMS, TrainDescriptorOperator

with DAG(
    dag_id="train_descriptor",
    description="Learn the DeepBit binary code layer (BigDL distributed training)",
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

"""What the imgfeat DAGs declare, read when a DAG file is parsed (cheap: no Spark, no storage).

- `PARAMS`: the run parameters of image_features (validated by Airflow on trigger, again by the
  operators); `TRAIN_PARAMS` (train_descriptor) and `INDEX_PARAMS` (feature_index).
- The templates the tasks render: `PARTITION_DATE` (the run's partition), `LATE_PARTITIONS`,
  `STAGE_ARGS` (the arguments of every stage app), `TRAIN_ARGS`.
- `FEATURES`: the Asset publish emits, and `event_partitions`, the one reading of its events.
- `DEFAULT_ARGS` (retries and their delay) and `MAX_ACTIVE_RUNS`.
Environment: IMGFEAT_INPUT_ROOT and IMGFEAT_WAREHOUSE_ROOT (default roots), IMGFEAT_MODEL_DIR
(converted models), IMGFEAT_RETRY_DELAY_S.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import Asset, Param

from imgfeat import params as p
from imgfeat import paths

MAX_ACTIVE_RUNS = 2

# The partition of a run: the `partition_date` param when given (UI triggers), else the start
# day of the data interval (scheduled runs and backfills process the day that just ended).
# Runs without a data interval (a manual trigger without logical date, an Asset event) render
# "" here, and the operator asks for `partition_date` instead of failing at template rendering.
PARTITION_DATE = ("{{ params.partition_date or (data_interval_start | ds "
                  "if data_interval_start is defined and data_interval_start else '') }}")

# The earlier partitions find_late_files returned (comma-separated; "" when none or not run).
LATE_PARTITIONS = "{{ (ti.xcom_pull(task_ids='find_late_files') or []) | join(',') }}"

# How a task that needs the run's partition refuses a run without one.
NO_INTERVAL = ("partition_date is required when the run has no data interval (a manual trigger without "
               "logical date, or an Asset-triggered run)")


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
    "keep_checkpoints_days": Param(p.DEFAULTS["keep_checkpoints_days"], type="integer", minimum=0,
                                   description="After publish, delete the intermediate checkpoints (ingest to "
                                               "embed) of partitions published more than this many days ago; "
                                               "features, quarantine and manifests stay; 0: keep them"),
    "reuse": Param(True, type="boolean",
                   description="Copy the published results of images whose content was already published "
                               "with the same model (in this or another partition) instead of inferring again"),
}

# The published features, as an Asset: each successful publish emits an event whose `extra` names
# the partition, so downstream DAGs (feature_catalog, feature_index) process exactly it.
FEATURES = Asset(name="imgfeat_features", uri="imgfeat://warehouse/features")

MODEL_DIR = os.environ.get("IMGFEAT_MODEL_DIR", str(paths.model_dir()))  # the converted models

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
    "--keep-checkpoints-days", "{{ params.keep_checkpoints_days }}",
    "--model-dir", MODEL_DIR,
]

DEFAULT_ARGS = {
    "owner": "imgfeat",
    "retries": 2,
    "retry_delay": timedelta(seconds=int(os.environ.get("IMGFEAT_RETRY_DELAY_S", "60"))),
}


def event_partitions(triggering_asset_events) -> list[tuple[str, str]]:
    """(warehouse_root, partition_date) pairs named by a run's triggering Asset events (the
    `triggering_asset_events` of its context: asset -> events), validated by
    imgfeat.params.asset_event_partitions (ParamError naming the bad key), sorted, without repeats.
    The one reading of publish's events: feature_index and feature_catalog both use it."""
    events = triggering_asset_events or {}
    return p.asset_event_partitions(getattr(e, "extra", None) for evs in events.values() for e in evs)


TRAIN_ARGS = [
    "--warehouse-root", "{{ params.warehouse_root }}",
    "--code-bits", "{{ params.code_bits }}",
    "--partitions", "{{ params.partitions }}",
    "--max-crops", "{{ params.max_crops }}",
    "--rounds", "{{ params.rounds }}",
    "--epochs", "{{ params.epochs }}",
    "--activate", "{{ params.activate | lower }}",
    "--model-dir", MODEL_DIR,
]

TRAIN_PARAMS = {
    "warehouse_root": PARAMS["warehouse_root"],
    "code_bits": PARAMS["code_bits"],
    "partitions": Param(30, type="integer", minimum=1, description="Sample the pictures of this many latest partitions"),
    "max_crops": Param(p.MAX_CROPS, type="integer", minimum=1, maximum=p.MAX_CROPS,
                       description="At most this many distinct pictures (the driver holds the sample)"),
    "rounds": Param(0, type="integer", minimum=0,
                    description="Rounds of DeepBit's BigDL optimizer after the whitened start (0: the start; see README)"),
    "epochs": Param(30, type="integer", minimum=1, description="BigDL epochs per round"),
    "activate": Param(True, type="boolean", description="Make the new layers the ones new runs use"),
}


INDEX_PARAMS = {
    "partition_date": PARAMS["partition_date"],
    "warehouse_root": PARAMS["warehouse_root"],
    "duplicate_radius": Param(None, type=["null", "integer"], minimum=0,
                              description="Hamming radius of a near-duplicate (between pictures' codes); empty: by code kind and "
                                          "length, and wider where the pictures' vectors verify the matches"),
    "duplicate_similarity": Param(None, type=["null", "number"], minimum=-1, maximum=1,
                                  description="Least cosine of two pictures' vectors (learned picture codes) for a match "
                                              "within the radius; -1 keeps every one (at the code alone's radius); "
                                              "empty: by code length"),
}

"""feature_index: the similarity index and the near-duplicates of each published partition.

Scheduled on the `imgfeat_features` Asset, so it runs after every successful publish (without a
logical date: the partition comes from the Asset event). The task `partitions` names the partitions
of the run's events, validated: a bad or missing event `extra` fails the run naming the key, before
any spark-submit. `index` is mapped over them: one Spark application (one task instance, retried
alone) per partition writes its shard of the index, WAREHOUSE/index/<code>/shards/dt=<date>/ (which
`python -m imgfeat.cli similar` searches with every other shard of the code), and its near-duplicates,
WAREHOUSE/duplicates/dt=<date>/ (spark_apps/index.py). A manual run indexes the partition named by the `partition_date` param.
"""

import pendulum
from airflow.sdk import DAG, task
from imgfeat_airflow import DEFAULT_ARGS, FEATURES, INDEX_PARAMS, IndexSubmitOperator

with DAG(
    dag_id="feature_index",
    description="Similarity index and near-duplicate groups of published partitions",
    schedule=[FEATURES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=INDEX_PARAMS,
    doc_md=__doc__,
    tags=["imgfeat", "spark"],
) as dag:

    @task
    def partitions(triggering_asset_events=None, params=None) -> list:
        """[warehouse_root, partition_date] of each partition to index (imgfeat_airflow.index_partitions)."""
        from imgfeat_airflow import index_partitions

        return index_partitions(triggering_asset_events, params)

    IndexSubmitOperator.partial(task_id="index").expand(partition=partitions())

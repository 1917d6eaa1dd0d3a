"""feature_catalog: records each partition that image_features publishes.

Scheduled on the `imgfeat_features` Asset, so it runs after every successful publish, without a
logical date: the partition comes from the Asset event. It writes
WAREHOUSE/catalog/dt=<date>.json (counts, model, commit) for the tools that read the features.
"""

import pendulum
from airflow.sdk import DAG, task
from imgfeat_airflow import FEATURES

with DAG(
    dag_id="feature_catalog",
    description="Catalog of published feature partitions (triggered by image_features' publish)",
    schedule=[FEATURES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["imgfeat"],
) as dag:

    @task
    def record_partitions(triggering_asset_events=None) -> list:
        from imgfeat.catalog import record

        return [record(e.extra["warehouse_root"], e.extra["partition_date"])
                for events in triggering_asset_events.values() for e in events]

    record_partitions()

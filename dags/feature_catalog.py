"""feature_catalog: records each partition that image_features publishes.

Scheduled on the `imgfeat_features` Asset, so it runs after every successful publish, without a
logical date: the partition comes from the Asset event. It writes
WAREHOUSE/catalog/dt=<date>.json (counts, model, commit) for the tools that read the features.
The events' `extra` is validated first, as feature_index does (imgfeat_airflow.event_partitions):
a missing or bad partition_date or warehouse_root (outside IMGFEAT_ALLOWED_ROOTS, say) fails the
run with one line naming it, before anything is written.
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
        from airflow.sdk.exceptions import AirflowFailException
        from imgfeat_airflow import event_partitions

        from imgfeat.catalog import record
        from imgfeat.params import ParamError

        try:  # every event is validated before the first write
            todo = event_partitions(triggering_asset_events)
        except ParamError as e:
            raise AirflowFailException(f"feature_catalog: invalid parameter: {e}") from None
        if not todo:
            raise AirflowFailException("feature_catalog: invalid parameter: partition_date: no Asset event names a "
                                       "partition (this DAG runs on image_features' publish)")
        return [record(warehouse, date) for warehouse, date in todo]

    record_partitions()

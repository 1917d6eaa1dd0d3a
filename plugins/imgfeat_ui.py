"""The Airflow plugin of imgfeat's pages (imgfeat_airflow/ui.py): the run report and the picture
search, served by the api-server at /imgfeat, with a "Report" link on every DAG run and a
"Picture search" entry in the navigation."""

from airflow.plugins_manager import AirflowPlugin

from imgfeat_airflow.ui import app


class ImgfeatUiPlugin(AirflowPlugin):
    name = "imgfeat_ui"
    fastapi_apps = [{"app": app, "url_prefix": "/imgfeat", "name": "imgfeat reports and search"}]
    external_views = [
        # url_route: the UI shows views of a DAG run only with one, as a tab holding the page
        {"name": "Report", "href": "/imgfeat/runs/{DAG_ID}/{RUN_ID}/report/index.html", "destination": "dag_run",
         "url_route": "imgfeat-report"},
        {"name": "Picture search", "href": "/imgfeat/search", "destination": "nav"},
    ]

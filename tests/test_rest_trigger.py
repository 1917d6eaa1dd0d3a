"""UI/REST triggers through a real local Airflow: api-server, scheduler (LocalExecutor),
dag-processor and triggerer, started and stopped as `make airflow` / `make airflow-stop` do."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from conftest import E2E_DATE, feature_rows
from imgfeat.airflow_services import LocalAirflow
from imgfeat.devhdfs import _alive

pytestmark = [pytest.mark.airflow, pytest.mark.slow]
DAG = "image_features"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    af = LocalAirflow(home=tmp_path_factory.mktemp("airflow-services"), port=_free_port())
    af.start()
    yield af
    af.stop()


class Api:
    def __init__(self, af: LocalAirflow):
        self.url, self.token = af.url, af.token()

    def __call__(self, method, path, body=None):
        req = urllib.request.Request(f"{self.url}/api/v2{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


@pytest.fixture(scope="module")
def api(airflow):
    api = Api(airflow)
    deadline = time.monotonic() + 120
    while api("GET", f"/dags/{DAG}")[0] != 200:  # the dag-processor has not parsed the file yet
        assert time.monotonic() < deadline, "the DAG never appeared"
        time.sleep(2)
    status, _ = api("PATCH", f"/dags/{DAG}", {"is_paused": False})
    assert status == 200
    return api


def _trigger(api, conf) -> str:
    status, run = api("POST", f"/dags/{DAG}/dagRuns", {"logical_date": None, "conf": conf})
    assert status == 200, run
    return run["dag_run_id"]


def _wait(api, run_id, timeout=900) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, run = api("GET", f"/dags/{DAG}/dagRuns/{run_id}")
        assert status == 200, run
        if run["state"] in ("success", "failed"):
            _, tis = api("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances")
            return {"state": run["state"], "tasks": {t["task_id"]: (t["state"], t["try_number"]) for t in tis["task_instances"]}}
        assert time.monotonic() < deadline, f"run {run_id} still {run['state']}"
        time.sleep(3)


def test_a_rest_trigger_with_params_publishes_the_partition(api, local_run, tmp_path):
    warehouse = tmp_path / "warehouse"
    run_id = _trigger(api, {"partition_date": E2E_DATE, "input_root": str(local_run["root"]),
                            "warehouse_root": str(warehouse)})
    result = _wait(api, run_id)
    assert result["state"] == "success", result
    assert all(state == "success" and tries == 1 for state, tries in result["tasks"].values())
    assert feature_rows(warehouse / "features" / f"dt={E2E_DATE}") == \
        feature_rows(local_run["warehouse"] / "features" / f"dt={E2E_DATE}")


@pytest.mark.parametrize("conf,field", [({"code_bits": 12}, "code_bits"), ({"engine": "tensorrt"}, "engine"),
                                        ({"partition_date": "2026-1-5"}, "partition_date")])
def test_the_api_refuses_params_out_of_their_schema(api, conf, field):
    status, body = api("POST", f"/dags/{DAG}/dagRuns", {"logical_date": None, "conf": conf})
    assert status == 400 and field in body


@pytest.mark.parametrize("conf,message", [
    ({"partition_date": E2E_DATE, "input_root": "/tmp/../etc"}, "invalid parameter: argument --input-root: '/tmp/../etc' contains '..'"),
    ({"partition_date": "2026-02-30"}, "invalid parameter: argument --partition-date: '2026-02-30' is not a calendar date"),
    ({}, "invalid parameter: partition_date is required when the run has no data interval"),
])
def test_a_bad_param_fails_the_first_task_once_before_spark(api, airflow, conf, message):
    run_id = _trigger(api, conf)
    result = _wait(api, run_id, timeout=300)
    assert result["state"] == "failed" and result["tasks"]["ingest"] == ("failed", 1)  # not retried
    logs = "".join(p.read_text() for p in (airflow.home / "logs" / f"dag_id={DAG}" / f"run_id={run_id}").rglob("*.log"))
    assert message in logs and "spark-submit" not in logs


def test_stop_leaves_no_process(airflow, api):
    pids = airflow.stop()
    assert set(pids) == {"api-server", "scheduler", "dag-processor", "triggerer"}
    assert not any(_alive(p) for p in pids.values())
    assert airflow.pids() == {}

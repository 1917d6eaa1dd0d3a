"""UI/REST triggers through a real local Airflow: api-server, scheduler (LocalExecutor),
dag-processor and triggerer, started and stopped as `make airflow` / `make airflow-stop` do."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request

import pytest

from conftest import E2E_DATE, KNOWN
from devtools.airflow_services import LocalAirflow
from devtools.processes import alive

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
        self.af, self.url, self.token = af, af.url, af.token()

    def scheduler_alive(self) -> None:
        """Fails at once when the scheduler process is gone (nothing would ever run again)."""
        assert "scheduler" in self.af.pids(), \
            f"the scheduler died: see {self.af.home / 'services' / 'scheduler.log'}"

    def __call__(self, method, path, body=None):
        req = urllib.request.Request(f"{self.url}/api/v2{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                data = r.read()
                return r.status, json.loads(data) if data else None
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


@pytest.fixture(scope="module")
def api(airflow):
    api = Api(airflow)
    deadline = time.monotonic() + 120
    while api("GET", f"/dags/{DAG}")[0] != 200:  # the dag-processor has not parsed the file yet
        assert time.monotonic() < deadline, "the DAG never appeared"
        time.sleep(2)
    for dag_id in (DAG, "feature_catalog", "feature_index"):
        while api("GET", f"/dags/{dag_id}")[0] != 200:
            assert time.monotonic() < deadline, f"{dag_id} never appeared"
            time.sleep(2)
        status, _ = api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        assert status == 200
    return api


def _trigger(api, conf) -> str:
    status, run = api("POST", f"/dags/{DAG}/dagRuns", {"logical_date": None, "conf": conf})
    assert status == 200, run
    return run["dag_run_id"]


def _wait(api, run_id, timeout=900, dag_id=DAG) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, run = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        assert status == 200, run
        if run["state"] in ("success", "failed"):
            _, tis = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
            return {"state": run["state"], "tasks": {t["task_id"]: (t["state"], t["try_number"]) for t in tis["task_instances"]}}
        assert time.monotonic() < deadline, f"run {run_id} still {run['state']}"
        api.scheduler_alive()
        time.sleep(3)


def test_login_takes_the_generated_password_only(airflow):
    import stat

    for f in ("secrets.json", "passwords.json"):  # generated at first start, private
        assert stat.S_IMODE((airflow.home / f).stat().st_mode) == 0o600, f
    # the api-server's passwords file holds the password generated into secrets.json
    generated = json.loads((airflow.home / "secrets.json").read_text())["admin_password"]
    assert len(generated) >= 20 and json.loads((airflow.home / "passwords.json").read_text()) == {"admin": generated}

    def login(password):
        req = urllib.request.Request(f"{airflow.url}/auth/token", method="POST",
                                     data=json.dumps({"username": "admin", "password": password}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert login("admin") == 401  # no fixed password
    assert login(generated) == 201


@pytest.fixture(scope="module")
def rest_run(api, e2e_input, tmp_path_factory) -> dict:
    """One REST trigger with params, waited for: its run's outcome, and the partition it published
    (then catalogued and indexed by the DAGs its Asset starts), which the UI tests look at."""
    warehouse = tmp_path_factory.mktemp("rest") / "warehouse"
    run_id = _trigger(api, {"partition_date": E2E_DATE, "input_root": str(e2e_input["root"]),
                            "warehouse_root": str(warehouse)})
    return {"run_id": run_id, "warehouse": warehouse, "result": _wait(api, run_id)}


def test_a_rest_trigger_with_params_publishes_the_partition(api, e2e_input, rest_run):
    import pyarrow.parquet as pq

    warehouse, result = rest_run["warehouse"], rest_run["result"]
    assert result["state"] == "success", result
    # every task ran once and succeeded; the revisit group, mapped over no late partition (a manual
    # run does not look back), was skipped
    revisit = {t: v for t, v in result["tasks"].items() if t.startswith("revisit.")}
    assert revisit and all(v == ("skipped", 0) for v in revisit.values()), revisit
    assert all(state == "success" and tries == 1 for t, (state, tries) in result["tasks"].items() if t not in revisit)
    # the partition's pictures: the known photos under their labels, every planted bad file quarantined
    # with its reason, every other file published
    rows = {r["image_id"]: r for r in pq.read_table(str(warehouse / "features" / f"dt={E2E_DATE}")).to_pylist()}
    quarantine = pq.read_table(str(warehouse / "quarantine" / f"dt={E2E_DATE}")).to_pylist()
    assert {k: rows[k]["label"] for k in KNOWN} == KNOWN
    bad = {k: v for k, v in e2e_input["bad"].items() if v is not None}
    assert {r["image_id"]: r["reason"].split(":")[0] for r in quarantine} == bad
    assert set(rows) == set(KNOWN) | set(e2e_input["sample"]) | (set(e2e_input["bad"]) - set(bad))
    # publish emitted the features Asset: feature_catalog ran, without a logical date, on that partition.
    deadline = time.monotonic() + 180
    while not (runs := api("GET", "/dags/feature_catalog/dagRuns")[1]["dag_runs"]):
        assert time.monotonic() < deadline, "feature_catalog was never triggered"
        time.sleep(3)
    assert len(runs) == 1 and runs[0]["run_type"] == "asset_triggered" and runs[0]["logical_date"] is None
    assert _wait(api, runs[0]["dag_run_id"], timeout=180, dag_id="feature_catalog")["state"] == "success"
    entry = json.loads((warehouse / "catalog" / f"dt={E2E_DATE}.json").read_text())
    manifest = json.loads((warehouse / "runs" / f"dt={E2E_DATE}" / "manifest.json").read_text())
    assert (entry["partition_date"], entry["published"], entry["commit_id"]) == (
        E2E_DATE, manifest["published"], manifest["commit_id"])
    # ... and so did feature_index: a spark-submit that refreshed the index and wrote the duplicates.
    deadline = time.monotonic() + 180
    while not (runs := api("GET", "/dags/feature_index/dagRuns")[1]["dag_runs"]):
        assert time.monotonic() < deadline, "feature_index was never triggered"
        time.sleep(3)
    result = _wait(api, runs[0]["dag_run_id"], timeout=600, dag_id="feature_index")
    api("PATCH", "/dags/feature_index", {"is_paused": True})  # the later tests' partitions need no index
    assert result["state"] == "success", result
    assert result["tasks"] == {"partitions": ("success", 1), "index": ("success", 1)}
    _, tis = api("GET", f"/dags/feature_index/dagRuns/{runs[0]['dag_run_id']}/taskInstances")
    # index is mapped over the partitions: one task instance for this one, labelled by its date
    assert [(t["map_index"], t["rendered_map_index"]) for t in tis["task_instances"] if t["task_id"] == "index"] == [
        (0, f"dt={E2E_DATE}")]
    meta = json.loads((warehouse / "duplicates" / f"dt={E2E_DATE}" / "_stage.json").read_text())
    assert meta["indexed_images"] == manifest["published"] and meta["code"] == manifest["model"].rsplit("code=", 1)[1]
    assert (warehouse / "index" / meta["code"] / "shards" / f"dt={E2E_DATE}" / "_SUCCESS").is_file()


# --- the imgfeat pages of the UI (plugins/imgfeat_ui.py), in a real headless Chromium -------------
def _get(airflow, path, token=None, data=None, headers=None) -> int:
    req = urllib.request.Request(f"{airflow.url}{path}", data=data, headers={
        **({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture(scope="module")
def browser(airflow):
    """Debian's chromium through its chromedriver (make browser), logged in with the UI's form."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1400"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    try:
        driver.get(f"{airflow.url}/auth/login")
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: d.find_elements(By.NAME, "username"))
        driver.find_element(By.NAME, "username").send_keys("admin")
        driver.find_element(By.NAME, "password").send_keys(airflow.password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: "/auth/login" not in d.current_url)
        yield driver
    finally:
        driver.quit()


def _loaded(driver, images) -> list[int]:
    """The natural widths of <img> elements (0: not loaded), once the page has finished loading them."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(lambda d: all(d.execute_script("return arguments[0].complete", i) for i in images))
    return [driver.execute_script("return arguments[0].naturalWidth", i) for i in images]


def test_the_report_link_of_a_run_opens_its_report_in_a_real_browser(api, airflow, rest_run, browser, tmp_path):
    import io
    from urllib.parse import quote

    import numpy as np
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, plugins = api("GET", "/plugins")
    views = {v["name"]: v for p in plugins["plugins"] for v in p["external_views"]}
    assert views["Report"]["destination"] == "dag_run" and views["Picture search"]["destination"] == "nav"
    # The run's page in the UI has a "Report" tab, which holds the report's page in a frame.
    browser.get(f"{airflow.url}/dags/{DAG}/runs/{quote(rest_run['run_id'], safe='')}")
    WebDriverWait(browser, 120).until(
        lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, "a") if e.text.strip() == "Report"])[0].click()
    frame = WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.TAG_NAME, "iframe"))[0]
    assert frame.get_attribute("src").startswith(f"{airflow.url}/imgfeat/runs/{DAG}/")
    browser.switch_to.frame(frame)
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.ID, "published"))
    manifest = json.loads((rest_run["warehouse"] / "runs" / f"dt={E2E_DATE}" / "manifest.json").read_text())
    assert browser.find_element(By.ID, "published").text == str(manifest["published"])
    assert browser.find_element(By.ID, "quarantined").text == str(manifest["quarantined"])
    thumbs = browser.find_elements(By.CSS_SELECTOR, "img.thumb")
    crops = browser.find_elements(By.CSS_SELECTOR, "img.crop")
    assert len(thumbs) == len(crops) == min(manifest["published"], 48)
    assert min(_loaded(browser, thumbs + crops)) > 0  # every thumbnail was served and decoded
    browser.switch_to.default_content()
    shot = browser.get_screenshot_as_png()  # the UI with the report in its tab
    (tmp_path / "report.png").write_bytes(shot)
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), np.float32)
    assert pixels.std() > 20, "the screenshot is blank"


def test_the_search_page_finds_an_uploaded_pictures_own_published_copy_first(airflow, rest_run, browser, e2e_input):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    # feature_index, started by the run's Asset event, built the index the search reads
    shards = rest_run["warehouse"] / "index"
    deadline = time.monotonic() + 600
    while not list(shards.glob(f"*/shards/dt={E2E_DATE}/_SUCCESS")):
        assert time.monotonic() < deadline, "feature_index never indexed the partition"
        time.sleep(3)
    browser.get(f"{airflow.url}/imgfeat/search")
    Select(browser.find_element(By.NAME, "warehouse")).select_by_visible_text(str(rest_run["warehouse"]))
    browser.find_element(By.NAME, "picture").send_keys(str(e2e_input["part"] / "shop" / "chelsea.jpg"))
    k = browser.find_element(By.NAME, "k")
    k.clear()
    k.send_keys("5")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 300).until(lambda d: d.find_elements(By.ID, "hits") or d.find_elements(By.ID, "error"))
    assert not browser.find_elements(By.ID, "error"), browser.find_element(By.ID, "error").text
    keys = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#hits .key")]
    distances = [int(e.text) for e in browser.find_elements(By.CSS_SELECTOR, "#hits .hamming")]
    assert len(keys) == 5 and keys[0] == f"dt={E2E_DATE}/shop/chelsea.jpg" and distances[0] == 0
    assert distances == sorted(distances)
    assert min(_loaded(browser, browser.find_elements(By.CSS_SELECTOR, "#hits img.thumb"))) > 0


def test_the_pages_refuse_strangers_paths_outside_a_report_other_warehouses_and_big_uploads(airflow, api, rest_run):
    from urllib.parse import quote

    report = f"/imgfeat/runs/{DAG}/{quote(rest_run['run_id'], safe='')}/report"
    assert _get(airflow, f"{report}/index.html") == 401  # no token
    assert _get(airflow, f"{report}/index.html", token="not.a.jwt") == 403
    assert _get(airflow, f"{report}/index.html", token=api.token) == 200
    assert _get(airflow, f"{report}/%2E%2E/%2E%2E/runs/dt={E2E_DATE}/manifest.json", token=api.token) == 403
    assert _get(airflow, f"/imgfeat/picture?warehouse=/etc&key=dt={E2E_DATE}/shop/chelsea.jpg", token=api.token) == 403
    assert _get(airflow, f"/imgfeat/picture?warehouse={quote(str(rest_run['warehouse']))}"
                         f"&key=dt={E2E_DATE}/shop/chelsea.jpg", token=api.token) == 200
    # An upload over the cap is refused on its headers, before its body is sent: the answer comes
    # while the client still holds the 21 MB (a client sending it all would see the connection close).
    with socket.create_connection(("127.0.0.1", airflow.port), timeout=60) as s:
        s.sendall((f"POST /imgfeat/search HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {api.token}\r\n"
                   f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {21 << 20}\r\n\r\n").encode())
        assert s.recv(64).startswith(b"HTTP/1.1 413 ")


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


BACKFILL = {"2026-10-01": {"a/chelsea.jpg": "cat", "a/coffee.jpg": "cup"},
            "2026-10-02": {"astronaut.jpg": "person"},
            "2026-10-03": {"b/c/coffee.jpg": "cup", "chelsea.png": "cat"}}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("scheduled")
    return base / "images", base / "warehouse"


def _create_backfill(airflow, api, root, warehouse, dates, conf=None) -> set:
    """`airflow backfill create` as the README gives it (this test's home and port); returns the ids
    of the backfill runs that existed before it."""
    import subprocess
    import sys

    from imgfeat import paths

    known = {r["dag_run_id"] for r in api("GET", f"/dags/{DAG}/dagRuns?run_type=backfill&limit=100")[1]["dag_runs"]}
    cmd = [sys.executable, "-m", "devtools.airflow_services", "--port", str(airflow.port),
           "--home", str(airflow.home), "cli",
           "backfill", "create", "--dag-id", DAG,
           "--from-date", dates[0], "--to-date", dates[-1], "--max-active-runs", "2",
           "--dag-run-conf", json.dumps({"input_root": str(root), "warehouse_root": str(warehouse), **(conf or {})})]
    # Once, next to the busy scheduler: the CLI waits for SQLite's write lock (devtools.airflow_cli).
    out = subprocess.run(cmd, env=airflow.env, cwd=paths.REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return known


def _wait_backfill(api, known, dates) -> list:
    deadline = time.monotonic() + 1200
    while True:
        runs = [r for r in api("GET", f"/dags/{DAG}/dagRuns?run_type=backfill&limit=100")[1]["dag_runs"]
                if r["dag_run_id"] not in known]
        backfills = api("GET", f"/backfills?dag_id={DAG}")[1]["backfills"]
        # the scheduler marks a backfill complete after its runs; only one may run per DAG
        if (len(runs) == len(dates) and all(r["state"] in ("success", "failed") for r in runs)
                and all(b["completed_at"] for b in backfills)):
            return runs
        assert time.monotonic() < deadline, [(r["logical_date"], r["state"]) for r in runs]
        api.scheduler_alive()
        time.sleep(5)


def _write(root, date, files: dict, photos, marker: bool = True) -> None:
    """Writes the partition's pictures, then (as a producer does when done) its `_SUCCESS` marker,
    which scheduled and backfill runs wait for."""
    from PIL import Image

    from conftest import jpeg

    for image_id, name in files.items():
        f = root / f"dt={date}" / image_id
        f.parent.mkdir(parents=True, exist_ok=True)
        if f.suffix == ".png":
            Image.fromarray(photos[name]).save(f)
        else:
            f.write_bytes(jpeg(photos[name]))
    if marker:
        (root / f"dt={date}" / "_SUCCESS").write_text("")


# The gate's states while it waits. up_for_retry: Airflow 3.3 may count a reschedule as a failure when
# it drains that poke's executor event late (apache/airflow#71172); the gate's retries absorb it.
GATE_WAITING = ("absent", None, "scheduled", "queued", "running", "up_for_reschedule", "up_for_retry")


def _backfill_run(api, known, date, deadline) -> str:
    """The id of the new backfill run of `date`, once the backfill has created it."""
    while not (run_id := next((r["dag_run_id"] for r in api("GET", f"/dags/{DAG}/dagRuns?run_type=backfill&limit=100")[1]
                               ["dag_runs"] if r["dag_run_id"] not in known and r["logical_date"][:10] == date), None)):
        assert time.monotonic() < deadline, f"the backfill created no run for {date}"
        api.scheduler_alive()
        time.sleep(2)
    return run_id


def _task_state(api, run_id, task_id="wait_for_partition"):
    status, ti = api("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}")
    if status == 404:  # a queued run has no task instances yet
        return "absent"
    assert status == 200, ti
    return ti["state"]


def test_a_manual_run_asked_to_wait_fails_after_its_timeout_in_one_line(api, airflow, tmp_path):
    root, warehouse, date = tmp_path / "images", tmp_path / "warehouse", "2026-10-09"
    root.mkdir()
    run_id = _trigger(api, {"partition_date": date, "input_root": str(root), "warehouse_root": str(warehouse),
                            "wait": True, "poke_interval_s": 5, "wait_timeout_s": 12})
    result = _wait(api, run_id, timeout=400)
    assert result["state"] == "failed", result
    gate_state, gate_tries = result["tasks"]["wait_for_partition"]
    assert gate_state == "failed" and result["tasks"]["ingest"][0] == "upstream_failed"
    run_logs = airflow.home / "logs" / f"dag_id={DAG}" / f"run_id={run_id}"
    line = f"wait_for_partition: input partition {root}/dt={date} not ready after "
    timed_out = {int(re.search(r"attempt=(\d+)", str(a)).group(1)): a.read_text()
                 for a in (run_logs / "task_id=wait_for_partition").rglob("attempt=*.log") if line in a.read_text()}
    # The timeout is not retried: only the last try timed out. (Earlier tries can still fail: Airflow 3.3's
    # scheduler may count a reschedule as a failure when it drains that poke's executor event late,
    # apache/airflow#71172; the gate's retries absorb that, so the try count itself is not asserted.)
    assert list(timed_out) == [gate_tries], (gate_tries, sorted(timed_out))
    log = timed_out[gate_tries]
    assert ": no _SUCCESS (the partition does not exist)" in log.split(line, 1)[1].split("\n", 1)[0]
    assert not warehouse.exists()  # nothing written


def test_backfill_publishes_each_partition_after_its_marker_within_max_active_runs(airflow, api, photos, dirs):
    """One backfill of three days: two partitions are complete, the third lands late. Its run waits
    without a worker slot (up_for_reschedule) until the producer's marker, then publishes."""
    import pyarrow.parquet as pq
    from pathlib import Path

    root, warehouse = dirs
    dates = sorted(BACKFILL)
    late = dates[-1]
    for date in dates[:-1]:
        _write(root, date, {image_id: Path(image_id).stem for image_id in BACKFILL[date]}, photos)
    known = _create_backfill(airflow, api, root, warehouse, dates, {"poke_interval_s": 5})
    deadline = time.monotonic() + 600
    run_id = _backfill_run(api, known, late, deadline)
    # No partition yet: the gate is up_for_reschedule between its looks (no worker slot), ingest waits.
    while (state := _task_state(api, run_id)) != "up_for_reschedule":
        assert state in GATE_WAITING and time.monotonic() < deadline, state
        api.scheduler_alive()
        time.sleep(1)
    assert _task_state(api, run_id, "ingest") is None and not (warehouse / "ingest" / f"dt={late}").exists()
    # The folder appears and fills, without its marker: still waiting.
    _write(root, late, {image_id: Path(image_id).stem for image_id in BACKFILL[late]}, photos, marker=False)
    logs = airflow.home / "logs" / f"dag_id={DAG}" / f"run_id={run_id}" / "task_id=wait_for_partition"
    seen = f"input partition {root}/dt={late} not ready: no _SUCCESS; looking again in 5 s"
    while seen not in "".join(p.read_text() for p in logs.rglob("*.log")):
        assert time.monotonic() < deadline, "the gate did not look at the new folder"
        assert _task_state(api, run_id) in GATE_WAITING
        time.sleep(1)
    assert _task_state(api, run_id, "ingest") is None
    # The producer is done: the marker appears, the run goes on and publishes the partition.
    (root / f"dt={late}" / "_SUCCESS").write_text("")
    runs = _wait_backfill(api, known, dates)
    assert sorted(r["logical_date"][:10] for r in runs) == dates
    assert all(r["state"] == "success" for r in runs), runs
    for date, files in BACKFILL.items():
        rows = pq.read_table(str(warehouse / "features" / f"dt={date}")).to_pylist()
        assert {r["image_id"]: r["label"] for r in rows} == files
    assert not (warehouse / "_staging" / "ready").exists()
    # max_active_runs: never more than 2 of the backfill's runs at once
    spans = [(r["start_date"], r["end_date"]) for r in runs]
    for start, _ in spans:
        assert sum(s <= start < e for s, e in spans) <= 2


def test_a_daily_run_waits_for_a_quiet_listing_infers_only_new_content_and_revisits_late_files(
        airflow, api, photos, dirs):
    import datetime as dt

    import pyarrow.parquet as pq

    root, warehouse = dirs

    def published(date):
        rows = pq.read_table(str(warehouse / "features" / f"dt={date}")).to_pylist()
        manifest = json.loads((warehouse / "runs" / f"dt={date}" / "manifest.json").read_text())
        detect = json.loads((warehouse / "detect" / f"dt={date}" / "_stage.json").read_text())
        return {r["image_id"]: r for r in rows}, manifest, (detect["rows"], detect["reused"])

    # 10-03 gains a file after its run (new bytes: 10-02 has the JPEG), without a new marker.
    before = published("2026-10-03")[0]
    _write(root, "2026-10-03", {"late/astronaut.png": "astronaut"}, photos, marker=False)
    # The run of a new day (its data interval's partition). Its producer writes no marker: the gate
    # waits until the listing has not changed for quiet_period_s, while files land 6 s apart.
    day = "2026-10-04"
    (root / f"dt={day}").mkdir()
    known = _create_backfill(airflow, api, root, warehouse, [day],
                             {"ready_marker": "", "quiet_period_s": 12, "poke_interval_s": 4})
    run_id = _backfill_run(api, known, day, time.monotonic() + 300)
    copy = root / f"dt={day}" / "again" / "cat.jpg"  # a copy of a picture published on 10-01
    for write in (lambda: (copy.parent.mkdir(), copy.write_bytes((root / "dt=2026-10-01" / "a" / "chelsea.jpg").read_bytes())),
                  lambda: _write(root, day, {"rocket.jpg": "rocket"}, photos, marker=False)):
        write()
        time.sleep(6)
        assert _task_state(api, run_id, "ingest") in ("absent", None), "ingest started on a changing partition"
        assert _task_state(api, run_id) in GATE_WAITING
    last_change = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=6)
    [run] = _wait_backfill(api, known, [day])
    assert run["state"] == "success", run
    status, ingest = api("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/ingest")
    assert dt.datetime.fromisoformat(ingest["start_date"].replace("Z", "+00:00")) >= last_change + dt.timedelta(seconds=12)
    assert list((warehouse / "_staging" / "ready").glob("*.json")) == []  # the gate's state is gone
    rows, manifest, detect = published(day)
    assert manifest["images_by_source"] == {"inferred": 1, "reused_this_partition": 0, "reused_other_partitions": 1}
    assert detect == (2, 1)  # detected: rocket.jpg only
    source = published("2026-10-01")[0]["a/chelsea.jpg"]
    assert rows["again/cat.jpg"]["reused_from"] == "dt=2026-10-01/a/chelsea.jpg"
    assert {k: rows["again/cat.jpg"][k] for k in ("label", "x1", "y1", "x2", "y2", "code")} == \
        {k: source[k] for k in ("label", "x1", "y1", "x2", "y2", "code")}
    # It looked back 3 days (10-01 to 10-03) and revisited 10-03 after publishing, in its revisit group.
    assert manifest["late_partitions"] == ["2026-10-03"]
    tasks = _wait(api, run["dag_run_id"])["tasks"]
    assert all(tasks[f"revisit.{s}"] == ("success", 1) for s in ("ingest", "detect", "crop", "embed", "publish"))
    rows, manifest, detect = published("2026-10-03")
    assert (manifest["revisited_by"], manifest["revision"], manifest["files_new"]) == (day, 2, 1)
    assert manifest["images_by_source"] == {"inferred": 1, "reused_this_partition": 2, "reused_other_partitions": 0}
    assert detect == (3, 2)  # only the late file was inferred
    assert {k: r["label"] for k, r in rows.items()} == {**BACKFILL["2026-10-03"], "late/astronaut.png": "person"}
    assert all(rows[k] == before[k] for k in before)  # carried over unchanged
    # The revisit's publish emitted the features Asset for 10-03: the catalog says it was revisited.
    entry = warehouse / "catalog" / "dt=2026-10-03.json"
    deadline = time.monotonic() + 300
    while not (entry.exists() and json.loads(entry.read_text()).get("revisited_by") == day):
        assert time.monotonic() < deadline, "the catalog never recorded the revisit"
        time.sleep(3)
    assert {k: json.loads(entry.read_text())[k] for k in ("revision", "files_new", "published")} == {
        "revision": 2, "files_new": 1, "published": 3}


def test_stop_leaves_no_process(airflow, api):
    pids = airflow.stop()
    assert set(pids) == {"api-server", "scheduler", "dag-processor", "triggerer"}
    assert not any(alive(p) for p in pids.values())
    assert airflow.pids() == {}

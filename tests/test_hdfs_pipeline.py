"""The DAG on a real HDFS: on a real Spark standalone cluster, and under faults.

Every run reads the same images as the local reference run (`reference_run`: make run's result,
made by either worker; uploaded to HDFS) and must publish the same rows: same ids, labels, boxes and codes.
- cluster: input and warehouse on hdfs://, master spark://, the library only through --py-files;
- kills: each stage's spark-submit SIGKILLed in the middle of its write, then retried by Airflow;
- restart: NameNode and DataNode restarted between ingest and detect;
- bad input: unreachable NameNode, missing input partition, a warehouse the user may not write.
"""

from __future__ import annotations

import json
import threading
import time

import psutil
import pytest

from conftest import E2E_DATE, feature_rows
from devtools.local import airflow_env, dags_test, ensure_airflow_db
from imgfeat.layout import STAGES

pytestmark = [pytest.mark.hdfs, pytest.mark.airflow, pytest.mark.slow]
DATE = E2E_DATE
STAGING = {"publish": ("features", "quarantine")}  # publish stages two tables; others their own name


@pytest.fixture(scope="module")
def client(hdfs):
    from hdfs import InsecureClient

    return InsecureClient(hdfs.webhdfs_url, user="root")


@pytest.fixture(scope="module")
def hdfs_input(hdfs, client, e2e_input):
    client.upload("/images", str(e2e_input["root"]))
    return f"{hdfs.uri}/images"


@pytest.fixture(scope="module")
def reference(reference_run):
    assert reference_run["rc"] == 0, reference_run["log"][-3000:]
    wh = reference_run["warehouse"]
    return {"features": feature_rows(wh / "features" / f"dt={DATE}"),
            "quarantine": _quarantine(wh / "quarantine" / f"dt={DATE}")}


def _rows(table_dir) -> list:
    import pyarrow.parquet as pq

    return sorted(tuple(r.values()) for r in pq.read_table(str(table_dir)).to_pylist())


def _quarantine(table_dir) -> list:
    import pyarrow.parquet as pq

    return sorted((r["image_id"], r["stage"], r["reason"]) for r in pq.read_table(str(table_dir)).to_pylist())


def _dag(airflow_home, hdfs, tag, input_root, warehouse, env=None, conf=None):
    env = airflow_env(airflow_home, {**hdfs.dfs_env(), "IMGFEAT_RETRY_DELAY_S": "1", **(env or {})})
    ensure_airflow_db(env)
    log = airflow_home / f"hdfs-{tag}.log"
    conf = {"partition_date": DATE, "input_root": input_root, "warehouse_root": warehouse, **(conf or {})}
    rc = dags_test("image_features", DATE, conf, env, log_file=log)
    return rc, log.read_text()


def _download(client, tmp_path, warehouse_path, name):
    local = tmp_path / name
    client.download(f"{warehouse_path}/{name}/dt={DATE}", str(local))
    return local


def _published(client, tmp_path, warehouse_path):
    return {"features": feature_rows(_download(client, tmp_path, warehouse_path, "features")),
            "quarantine": _quarantine(_download(client, tmp_path, warehouse_path, "quarantine"))}


def _commit_id(client, warehouse_path, stage):
    path = (f"{warehouse_path}/runs/dt={DATE}/manifest.json" if stage == "publish"
            else f"{warehouse_path}/{stage}/dt={DATE}/_stage.json")
    if client.status(path, strict=False) is None:
        return None
    with client.read(path, encoding="utf-8") as r:
        return json.load(r)["commit_id"]


def _submits(log, stage):
    """spark-submits of `stage`: the hook logs each command once, as it starts it."""
    return sum(f"spark_apps/{stage}.py --partition-date {DATE}" in line
               for line in log.splitlines() if "Spark-Submit cmd:" in line)


def _ls(client, path) -> list:
    """Names in `path`; [] when it does not exist (or vanished meanwhile)."""
    from hdfs.util import HdfsError

    try:
        return client.list(path) if client.status(path, strict=False) else []
    except HdfsError:
        return []


def _stage_jvm(stage, warehouse):
    """The spark-submit JVM of `stage` writing to `warehouse`, or None."""
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "org.apache.spark.deploy.SparkSubmit" in cmd and f"spark_apps/{stage}.py" in cmd and warehouse in cmd:
            return p
    return None


# --- a real cluster manager ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from devtools.devcluster import StandaloneCluster

    with StandaloneCluster(tmp_path_factory.mktemp("spark-standalone")) as c:
        yield c


def test_dag_on_hdfs_and_a_standalone_cluster_publishes_the_local_rows(
        hdfs, client, hdfs_input, cluster, airflow_home, reference, reference_run, tmp_path):
    warehouse = f"{hdfs.uri}/warehouse/cluster"
    conn = {"conn_type": "spark", "host": "spark://127.0.0.1", "port": cluster.port}
    rc, log = _dag(airflow_home, hdfs, "cluster", hdfs_input, warehouse,
                   env={"AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(conn)})
    assert rc == 0, log[-4000:]
    assert log.count(f"spark-submit --master {cluster.master_url}") == len(STAGES)
    assert log.count("--py-files ") >= len(STAGES)
    assert _published(client, tmp_path, "/warehouse/cluster") == reference
    # The executors ran in the Worker's own directories, and got the library as the zip.
    apps = sorted(cluster.base.glob("work/app-*"))
    assert len(apps) == len(STAGES)
    assert all(list(app.glob("*/imgfeat-*.zip")) for app in apps)
    assert cluster.state()["completedapps"] and len(cluster.state()["completedapps"]) == len(STAGES)
    # The run report is on HDFS, its thumbnails made by the cluster's executors.
    with client.read(f"/warehouse/cluster/runs/dt={DATE}/manifest.json", encoding="utf-8") as r:
        published = json.load(r)["published"]
    with client.read(f"/warehouse/cluster/reports/dt={DATE}/index.html", encoding="utf-8") as r:
        html = r.read()
    assert f'<span id="published">{published}</span>' in html
    thumbs = [n for n in client.list(f"/warehouse/cluster/reports/dt={DATE}/thumbs") if n.endswith(".jpg")]
    assert len(thumbs) == 2 * html.count('class="thumb"') == 2 * min(published, 48)

    # feature_index, as the Asset event would start it: one Spark application on the cluster writes
    # the partition's index shard and duplicates on HDFS, the same rows as the local run's.
    env = airflow_env(airflow_home, {**hdfs.dfs_env(), "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(conn)})
    log = airflow_home / "hdfs-cluster-index.log"
    rc = dags_test("feature_index", None, {"partition_date": DATE, "warehouse_root": warehouse}, env, log_file=log)
    assert rc == 0, log.read_text()[-4000:]
    assert f"spark-submit --master {cluster.master_url}" in log.read_text()
    assert len(cluster.state()["completedapps"]) == len(STAGES) + 1
    local = reference_run["warehouse"]
    code = next((local / "index").iterdir()).name
    for table in ("duplicates", f"index/{code}/shards"):
        (tmp_path / "indexed" / table).parent.mkdir(parents=True, exist_ok=True)
        got = _download(client, tmp_path / "indexed", "/warehouse/cluster", table)
        assert _rows(got) == _rows(local / table / f"dt={DATE}") and _rows(got)


# --- SIGKILL in the middle of every stage --------------------------------------------------------
class StageKiller(threading.Thread):
    """Kills each stage's spark-submit (JVM and Python driver) once, while its attempt is writing
    into the warehouse's staging area, and records the commit ids of the stages before it."""

    def __init__(self, client, warehouse_uri, warehouse_path):
        super().__init__(daemon=True)
        self.client, self.uri, self.path = client, warehouse_uri, warehouse_path
        self.killed: dict[str, dict] = {}
        self.done = threading.Event()

    def _writing(self, stage) -> bool:
        return any(_ls(self.client, f"{self.path}/_staging/{name}/dt={DATE}")
                   for name in STAGING.get(stage, (stage,)))

    def run(self):
        for i, stage in enumerate(STAGES):
            while not self.done.is_set():
                jvm = _stage_jvm(stage, self.uri)
                if jvm is not None and self._writing(stage):
                    tree = [jvm, *jvm.children(recursive=True)]
                    for p in tree:
                        p.kill()
                    self.killed[stage] = {
                        "processes": len(tree),
                        "committed_before": {s: _commit_id(self.client, self.path, s) for s in STAGES[:i]},
                        "own_commit_at_kill": _commit_id(self.client, self.path, stage)}
                    break
                time.sleep(0.05)


def test_a_kill_in_each_stage_is_retried_alone_and_publishes_the_same_rows(
        hdfs, client, hdfs_input, airflow_home, reference, tmp_path):
    warehouse = f"{hdfs.uri}/warehouse/kills"
    killer = StageKiller(client, warehouse, "/warehouse/kills")
    killer.start()
    try:
        rc, log = _dag(airflow_home, hdfs, "kills", hdfs_input, warehouse)
    finally:
        killer.done.set()
        killer.join(10)
    assert set(killer.killed) == set(STAGES), killer.killed
    assert rc == 0, log[-4000:]
    assert _published(client, tmp_path, "/warehouse/kills") == reference
    final = {s: _commit_id(client, "/warehouse/kills", s) for s in STAGES}
    for stage, k in killer.killed.items():
        assert k["processes"] >= 2  # the JVM and its Python driver
        assert k["own_commit_at_kill"] is None  # killed before its commit, not after
        assert _submits(log, stage) == 2  # the killed attempt and Airflow's retry
        # Stages committed before the kill were neither recomputed nor replaced.
        assert all(final[s] == cid for s, cid in k["committed_before"].items())
    assert _ls(client, "/warehouse/kills/_staging/ingest") == []  # the retry cleared the killed attempt


# --- HDFS restarted between two stages -----------------------------------------------------------
def test_hdfs_restart_between_stages_loses_nothing(hdfs, client, hdfs_input, airflow_home, reference, tmp_path):
    warehouse, path = f"{hdfs.uri}/warehouse/restart", "/warehouse/restart"
    seen = {}

    def restart_after_ingest():
        while "restarted" not in seen and not seen.get("stop"):
            try:
                ingest = _commit_id(client, path, "ingest")
            except Exception:  # noqa: BLE001 - HDFS may be busy; poll again
                ingest = None
            if ingest and _stage_jvm("ingest", warehouse) is None:
                seen["ingest"] = ingest
                seen["detect_at_restart"] = _commit_id(client, path, "detect")
                hdfs.restart()
                seen["restarted"] = time.time()
            time.sleep(0.05)

    t = threading.Thread(target=restart_after_ingest, daemon=True)
    t.start()
    try:
        # 10 s between attempts: a stage that starts while HDFS is down is retried after it is back.
        rc, log = _dag(airflow_home, hdfs, "restart", hdfs_input, warehouse, env={"IMGFEAT_RETRY_DELAY_S": "10"})
    finally:
        seen["stop"] = True
        t.join(120)
    assert "restarted" in seen and seen["detect_at_restart"] is None
    assert rc == 0, log[-4000:]
    assert _published(client, tmp_path, path) == reference
    assert _commit_id(client, path, "ingest") == seen["ingest"] and _submits(log, "ingest") == 1


# --- bad input: one line in the task log, no checkpoint ------------------------------------------
def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_namenode_fails_the_task_in_one_line(hdfs, airflow_home, e2e_input):
    rpc, http = _free_port(), _free_port()
    warehouse = f"hdfs://127.0.0.1:{rpc}/warehouse"
    rc, log = _dag(airflow_home, hdfs, "unreachable", str(e2e_input["root"]), warehouse,
                   env={"IMGFEAT_WEBHDFS_URL": f"http://127.0.0.1:{http}"})
    assert rc != 0
    line = (f"stage ingest: NameNode of {warehouse}/ingest/dt={DATE}/_SUCCESS is unreachable "
            f"(WebHDFS http://127.0.0.1:{http} refused the connection)")
    assert line in log
    assert log.count(line) >= 3  # transient: retried (2 retries), then failed
    assert "spark-submit --master" not in log


def test_a_missing_input_partition_fails_the_task_in_one_line(hdfs, client, hdfs_input, airflow_home):
    empty = f"{hdfs.uri}/no-images"
    client.makedirs("/no-images")
    rc, log = _dag(airflow_home, hdfs, "missing", empty, f"{hdfs.uri}/warehouse/missing")
    assert rc != 0
    assert f"stage ingest: input partition {empty}/dt={DATE} does not exist" in log
    assert "spark-submit --master" not in log
    assert client.status("/warehouse/missing/ingest", strict=False) is None


def test_an_unwritable_warehouse_fails_the_task_in_one_line(hdfs, client, hdfs_input, airflow_home):
    client.makedirs("/locked", permission="755")  # owned by root, the superuser
    rc, log = _dag(airflow_home, hdfs, "locked", hdfs_input, f"{hdfs.uri}/locked",
                   env={"HADOOP_USER_NAME": "alice"})
    assert rc != 0
    assert (f"stage ingest: warehouse_root {hdfs.uri}/locked is not writable: Permission denied: "
            "user=alice, access=WRITE") in log
    assert "spark-submit --master" not in log
    assert client.list("/locked") == []


def test_odd_names_on_hdfs_keep_their_exact_image_id(spark, hdfs, photos, tmp_path, monkeypatch):
    """Spark's scan of a remote partition: names are cut from the `path` column, never URL-decoded;
    empty and non-image files are quarantined from the listing; Airflow lists the same files."""
    from conftest import jpeg
    from imgfeat import checkpoints
    from imgfeat.spark.hadoop import HadoopFS
    from imgfeat.spark.runner import parse, run

    monkeypatch.setenv("IMGFEAT_WEBHDFS_URL", hdfs.webhdfs_url)
    data = jpeg(photos["chelsea"])
    names = {"p#1.jpg": None, "photo%20one.jpg": None, "photo one.jpg": None, "café.jpg": None,
             "d/[x]{a}*.JPG": None, "x.jpg?y": "unsupported_extension", "empty.png": "empty_file",
             "notes.txt": "unsupported_extension"}
    fs = HadoopFS(spark)  # not WebHDFS: the `hdfs` package URL-decodes '%20' in names
    for name, code in names.items():
        fs.write_bytes(f"{hdfs.uri}/odd/dt={DATE}/{name}", b"" if code == "empty_file" else data)
    args = parse("ingest", ["--partition-date", DATE, "--input-root", f"{hdfs.uri}/odd",
                            "--warehouse-root", str(tmp_path / "wh")])
    meta = run(spark, "ingest", args)
    rows = {r.image_id: r for r in spark.read.parquet(str(tmp_path / "wh" / "ingest" / f"dt={DATE}")).collect()}
    assert {k: (r.quarantine_reason or "").split(":")[0] or None for k, r in rows.items()} == names
    assert all(bytes(rows[k].content) == data for k, code in names.items() if code is None)
    assert meta["input_listing"] == checkpoints.input_listing(f"{hdfs.uri}/odd", DATE)


def test_the_readiness_gate_and_the_lookback_read_hdfs(hdfs, client, monkeypatch):
    """The gate's two readiness rules and the lookback's comparison, on hdfs:// roots (WebHDFS)."""
    from imgfeat import checkpoints

    monkeypatch.setenv("IMGFEAT_WEBHDFS_URL", hdfs.webhdfs_url)
    root, wh, day, before = f"{hdfs.uri}/gate", f"{hdfs.uri}/gate-wh", "2026-11-20", "2026-11-19"
    assert checkpoints.partition_ready(root, day).reason == "no _SUCCESS (the partition does not exist)"
    client.write(f"/gate/dt={day}/a.jpg", data=b"123")
    assert checkpoints.partition_ready(root, day).reason == "no _SUCCESS"
    client.write(f"/gate/dt={day}/_SUCCESS", data=b"")
    assert checkpoints.partition_ready(root, day).ready
    # quiet mode: the listing (names, sizes) must stay unchanged for the quiet period
    first = checkpoints.partition_ready(root, day, "", 60, now=1000.0)
    assert not first.ready and first.seen == {"digest": checkpoints.input_listing(root, day), "since": 1000.0}
    assert checkpoints.partition_ready(root, day, "", 60, now=1061.0, seen=first.seen).ready
    client.write(f"/gate/dt={day}/sub/b.png", data=b"45")
    changed = checkpoints.partition_ready(root, day, "", 60, now=1062.0, seen=first.seen)
    assert not changed.ready and changed.seen["since"] == 1062.0
    # lookback: an earlier partition whose listing changed since its (committed) ingest
    client.write(f"/gate/dt={before}/a.jpg", data=b"123")
    meta = {"commit_id": "c1", "input_listing": checkpoints.input_listing(root, before)}
    client.write(f"/gate-wh/ingest/dt={before}/_stage.json", data=json.dumps(meta), encoding="utf-8")
    client.write(f"/gate-wh/ingest/dt={before}/_SUCCESS", data=b"")
    assert checkpoints.changed_since_ingest(root, wh, day, 3) == []
    client.write(f"/gate/dt={before}/late.jpg", data=b"6789")
    assert checkpoints.changed_since_ingest(root, wh, day, 3) == [
        {"partition_date": before, "files_then": 1, "files_now": 2}]

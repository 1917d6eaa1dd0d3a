"""docker-compose.yml, checked statically: Docker cannot run on the CI machines.

It must parse, reference only files that exist, publish distinct loopback ports, and configure
Airflow, HDFS, YARN and the Spark connection consistently with each other and with the DAG.
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from urllib.parse import urlparse

import pytest
import yaml

from imgfeat import credentials, paths

AIRFLOW = ("api-server", "scheduler", "dag-processor", "triggerer")
HADOOP = ("namenode", "datanode", "resourcemanager", "nodemanager")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((paths.REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _site(name: str) -> dict:
    root = ET.parse(paths.REPO / "docker" / "hadoop-conf" / name).getroot()
    return {p.findtext("name"): p.findtext("value") for p in root.iter("property")}


def test_the_stack_has_every_component(services):
    assert set(AIRFLOW) | set(HADOOP) | {"postgres", "airflow-init"} <= set(services)
    for name in AIRFLOW:
        assert services[name]["command"][:2] == ["airflow", name]
    assert [services[n]["command"][:2] for n in HADOOP] == [
        ["hdfs", "namenode"], ["hdfs", "datanode"], ["yarn", "resourcemanager"], ["yarn", "nodemanager"]]


def test_hadoop_comes_from_apache_images(services):
    for name in ("namenode", "datanode", "resourcemanager"):
        assert re.fullmatch(r"apache/hadoop:3(\.\d+)*", services[name]["image"])
    dockerfile = (paths.REPO / services["nodemanager"]["build"]["dockerfile"]).read_text()
    image = re.search(r"ARG HADOOP_IMAGE=(\S+)", dockerfile).group(1)
    assert image == services["namenode"]["image"]  # the NodeManager runs the same Hadoop
    assert "COPY --from=hadoop /opt/hadoop /opt/hadoop" in dockerfile


def test_every_referenced_file_exists(services):
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            assert (paths.REPO / build["context"] / build["dockerfile"]).is_file(), name
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (paths.REPO / source).exists(), f"{name}: {source}"
    dockerfile = (paths.REPO / "docker" / "Dockerfile").read_text()
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M):
        for f in copied.split():
            assert (paths.REPO / f).is_file(), f


def test_published_ports_are_distinct_and_on_loopback(services):
    published = [p for svc in services.values() for p in svc.get("ports", [])]
    assert published and all(isinstance(p, str) and p.startswith("127.0.0.1:") for p in published)
    assert not any(svc.get("network_mode") == "host" for svc in services.values())
    host_ports = [p.split(":")[1] for p in published]
    assert len(host_ports) == len(set(host_ports))


def test_depends_on_names_existing_services(services):
    for name, svc in services.items():
        deps = svc.get("depends_on", [])
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown {dep}"


def test_airflow_uses_local_executor_and_the_postgres_service(services):
    pg = services["postgres"]["environment"]
    for name in AIRFLOW + ("airflow-init",):
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        url = urlparse(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        assert (url.hostname, url.username, url.password, url.path.lstrip("/")) == (
            "postgres", pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/imgfeat/dags"
        assert ".:/opt/imgfeat" in services[name]["volumes"]
    api_port = services["api-server"]["command"][-1]
    assert services["api-server"]["ports"] == [f"127.0.0.1:{api_port}:{api_port}"]
    assert urlparse(services["scheduler"]["environment"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).port == int(api_port)
    users = services["api-server"]["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
    passwords = json.loads(credentials.passwords_json("x"))  # the file `make compose-secrets` writes
    assert {u.split(":")[0] for u in users.split(",")} == set(passwords)
    assert services["api-server"]["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == \
        f"/opt/imgfeat/{credentials.COMPOSE_DIR / credentials.COMPOSE_PASSWORDS}"  # under the project mount


def test_hdfs_and_yarn_addresses_agree_with_the_services(services):
    core, hdfs, yarn = _site("core-site.xml"), _site("hdfs-site.xml"), _site("yarn-site.xml")
    fs = urlparse(core["fs.defaultFS"])
    assert fs.hostname == "namenode" and f"namenode:{fs.port}" == hdfs["dfs.namenode.rpc-address"]
    assert yarn["yarn.resourcemanager.hostname"] == "resourcemanager"
    nn_http = hdfs["dfs.namenode.http-address"].split(":")[1]
    assert f"127.0.0.1:{nn_http}:{nn_http}" in services["namenode"]["ports"]
    rm_http = yarn["yarn.resourcemanager.webapp.address"].split(":")[1]
    assert f"127.0.0.1:{rm_http}:{rm_http}" in services["resourcemanager"]["ports"]
    env = services["scheduler"]["environment"]
    for root in ("IMGFEAT_INPUT_ROOT", "IMGFEAT_WAREHOUSE_ROOT"):
        assert env[root].startswith(core["fs.defaultFS"] + "/")
    assert env["IMGFEAT_WEBHDFS_URL"] == f"http://{hdfs['dfs.namenode.http-address']}"
    for name in HADOOP + AIRFLOW:  # every Hadoop client and daemon reads the same configuration
        mounted = {v.split(":")[0] for v in services[name]["volumes"]}
        assert {f"./docker/hadoop-conf/{f}" for f in ("core-site.xml", "hdfs-site.xml", "yarn-site.xml")} <= mounted


def test_the_spark_connection_is_the_one_the_dag_uses(services):
    from airflow.dag_processing.dagbag import DagBag

    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    dag = DagBag(dag_folder=str(paths.REPO / "dags")).dags["image_features"]
    # every spark-submit task (the readiness gate and find_late_files submit nothing)
    conn_ids = {t.conn_id for t in dag.tasks if isinstance(t, SparkSubmitOperator)}
    assert conn_ids == {"spark_default"}
    env = services["scheduler"]["environment"]
    conn = json.loads(env["AIRFLOW_CONN_" + "SPARK_DEFAULT"])
    assert conn["conn_type"] == "spark" and conn["host"] == "yarn"
    assert conn["extra"]["deploy-mode"] == "client"  # the driver runs in the scheduler container
    queues = _site("capacity-scheduler.xml")["yarn.scheduler.capacity.root.queues"].split(",")
    assert conn["extra"]["queue"] in queues
    # Client mode: executors in the NodeManager find the same Python and models as the driver.
    assert services["nodemanager"]["image"] == services["scheduler"]["image"]
    assert ".:/opt/imgfeat" in services["nodemanager"]["volumes"]
    assert env["IMGFEAT_PYSPARK_PYTHON"] == "/opt/venv/bin/python"
    assert env["IMGFEAT_MODEL_DIR"].startswith("/opt/imgfeat/.cache/models/")
    whitelist = _site("yarn-site.xml")["yarn.nodemanager.env-whitelist"].split(",")
    assert "JAVA_HOME" in whitelist


def test_the_default_roots_are_allowed_roots(services):
    env = services["scheduler"]["environment"]
    allowed = env["IMGFEAT_ALLOWED_ROOTS"].split(",")
    for root in ("IMGFEAT_INPUT_ROOT", "IMGFEAT_WAREHOUSE_ROOT"):
        assert any(env[root] == a or env[root].startswith(a + "/") for a in allowed)


def test_no_secret_is_in_the_compose_file(services, tmp_path):
    text = (paths.REPO / "docker-compose.yml").read_text()
    assert "imgfeat-local-only" not in text and "airflow-passwords.json" not in text
    assert not (paths.REPO / "docker" / "airflow-passwords.json").exists()
    env_file = str(credentials.COMPOSE_DIR / credentials.COMPOSE_ENV)
    generated = credentials.read_env_file(credentials.compose(tmp_path)["env_file"])
    assert set(generated) == set(credentials.COMPOSE_KEYS)
    for name in AIRFLOW + ("airflow-init",):
        svc = services[name]
        assert svc["env_file"] == [env_file], name  # the generated file, the same for every component
        for key in credentials.COMPOSE_KEYS:  # `environment` would override the generated value
            assert key not in svc["environment"], f"{name}: {key}"
        assert not any(k.endswith(("SECRET", "SECRET_KEY", "FERNET_KEY")) for k in svc["environment"]), name
        assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS" not in svc["environment"]
    for path in (env_file, str(credentials.COMPOSE_DIR / credentials.COMPOSE_PASSWORDS)):
        assert subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=paths.REPO).returncode == 0, path
    makefile = (paths.REPO / "Makefile").read_text()
    assert re.search(r"^compose-secrets:\n\t\$\(PYTHON\) -m imgfeat.credentials compose$", makefile, re.M)


def test_hdfs_enforces_permissions_and_airflow_is_not_its_superuser(services):
    assert _site("hdfs-site.xml")["dfs.permissions.enabled"] == "true"
    assert _site("core-site.xml")["hadoop.http.staticuser.user"] != "hadoop"  # anonymous web user
    user = services["scheduler"]["environment"]["HADOOP_USER_NAME"]
    assert user == "airflow"
    for name in AIRFLOW + ("airflow-init",):
        assert services[name]["environment"]["HADOOP_USER_NAME"] == user
    init = services["hdfs-init"]
    assert init["image"] == services["namenode"]["image"] and init["environment"]["HADOOP_USER_NAME"] == "hadoop"
    assert init["restart"] == "no" and set(init["depends_on"]) == {"namenode", "datanode"}
    script = init["command"][-1]
    chown = re.search(rf"hdfs dfs -chown {user}:{user} ([^&]+)&&", script).group(1).split()
    env = services["scheduler"]["environment"]
    fs = _site("core-site.xml")["fs.defaultFS"]
    for root in ("IMGFEAT_INPUT_ROOT", "IMGFEAT_WAREHOUSE_ROOT"):
        assert env[root].removeprefix(fs) in chown  # the pipeline's roots belong to its user
    assert f"/user/{user}" in chown  # Spark's staging directory on YARN
    assert script.index("-safemode wait") < script.index("-mkdir") < script.index("-chown")
    # Airflow starts after the directories exist: airflow-init waits for hdfs-init, the rest for airflow-init.
    assert services["airflow-init"]["depends_on"]["hdfs-init"] == {"condition": "service_completed_successfully"}
    for name in AIRFLOW:
        assert services[name]["depends_on"] == {"airflow-init": {"condition": "service_completed_successfully"}}

"""The embedded local setup: SQLite Airflow home under var/, local Spark, this repo's DAGs.

`airflow_env()` is the one definition of that environment, used by `make run`, `make airflow`
and the tests, so they all run the same Airflow against the same DAG folder. Its JWT secret comes
from the home's generated AIRFLOW_HOME/secrets.json (imgfeat.credentials), never from the code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from imgfeat import credentials, paths


SQLITE_CONNECT_ARGS = {"timeout": 60}


def airflow_env(home: Path | None = None, extra: dict | None = None) -> dict:
    home = Path(home or paths.var_dir() / "airflow")
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(paths.REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(paths.REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Signs the tokens of the api-server and the execution API: per install, generated at first use.
        "AIRFLOW__API_AUTH__JWT_SECRET": credentials.local(home)["jwt_secret"],
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        # SQLite allows one writer: wait for the lock instead of failing after sqlite3's 5 s
        # (a CLI backfill next to a busy scheduler hit "database is locked").
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "devtools.local.SQLITE_CONNECT_ARGS",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(
            {"conn_type": "spark", "host": os.environ.get("IMGFEAT_SPARK_MASTER", "local[2]")}),
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        "PYSPARK_PYTHON": sys.executable,
        "IMGFEAT_PYSPARK_PYTHON": sys.executable,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONUNBUFFERED": "1",
        # Airflow imports imgfeat (plugins, DAG) and devtools.local (the connect args above) from the
        # checkout; Spark executors get the imgfeat zip.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(paths.REPO), os.environ.get("PYTHONPATH")])),
    })
    env.update(extra or {})
    return env


def ensure_airflow_db(env: dict) -> None:
    """`airflow db migrate` once per Airflow home (idempotent; ~10 s on SQLite)."""
    home = Path(env["AIRFLOW_HOME"])
    marker = home / ".migrated"
    if marker.exists() and (home / "airflow.db").exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    marker.touch()


def dags_test(dag_id: str, logical_date: str | None, conf: dict, env: dict, log_file: Path | None = None) -> int:
    """Run one DAG run in-process through Airflow (`airflow dags test`); returns its exit code.

    `airflow dags test` records the run as started at its logical date. With `logical_date` None
    the run's logical date is the moment the command starts, so its start and end dates (the UI's
    durations) are the real ones; name the partition with the `partition_date` conf instead."""
    cmd = [str(Path(sys.executable).parent / "airflow"), "dags", "test", dag_id,
           *([logical_date] if logical_date else []), "--conf", json.dumps(conf)]
    if log_file is None:
        return subprocess.run(cmd, env=env).returncode
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as log:
        return subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode

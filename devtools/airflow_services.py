"""A local Airflow for the project: api-server (127.0.0.1 only), scheduler, dag-processor, triggerer.

    python -m devtools.airflow_services start|stop|status     (make airflow / make airflow-stop)
    python -m devtools.airflow_services cli ARGS...          the `airflow` CLI in that environment
                                                             (devtools.airflow_cli: waits for SQLite's lock)

Same home, DAGs and connections as `make run` (devtools.local.airflow_env), LocalExecutor on the
SQLite DB. Each component runs in its own process group, recorded in AIRFLOW_HOME/services.json,
so `stop` signals exactly what `start` started (`airflow standalone` leaves orphans on SIGTERM).
Login: admin, with the password generated at first start into AIRFLOW_HOME/secrets.json
(mode 0600; `start` prints where), as is the JWT secret (imgfeat.credentials). Local use only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from devtools.local import airflow_env, ensure_airflow_db
from devtools.processes import alive, terminate
from imgfeat import credentials

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
USER = credentials.USER


def service_env(home: Path | None = None, port: int = 8080) -> dict:
    env = airflow_env(home)
    home = Path(env["AIRFLOW_HOME"])
    env.update({
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",  # 2 cores: one spark-submit per partition at a time, two runs
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",  # new DAG files show up within 30 s
    })
    return env


def _airflow() -> str:
    return str(Path(sys.executable).parent / "airflow")


class LocalAirflow:
    def __init__(self, home: Path | str | None = None, port: int = 8080):
        self.env = service_env(Path(home) if home else None, port)
        self.home = Path(self.env["AIRFLOW_HOME"])
        self.port = port
        self.state_file = self.home / "services.json"

    @property
    def secrets_file(self) -> Path:
        return credentials.local_file(self.home)

    @property
    def password(self) -> str:
        return credentials.local(self.home)["admin_password"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> dict:
        if not self.state_file.exists():
            return {}
        return {n: p for n, p in json.loads(self.state_file.read_text()).items() if alive(p)}

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as r:
                health = json.load(r)
        except (OSError, ValueError):
            return False
        return all(health.get(c, {}).get("status") == "healthy" for c in ("metadatabase", "scheduler"))

    def start(self, timeout: float = 180) -> dict:
        if running := self.pids():
            return running
        ensure_airflow_db(self.env)
        credentials.write_private(self.home / "passwords.json", credentials.passwords_json(self.password))
        logs = self.home / "services"
        logs.mkdir(parents=True, exist_ok=True)
        pids = {}
        for name in COMPONENTS:
            args = [_airflow(), name] + (["--host", "127.0.0.1", "--port", str(self.port)] if name == "api-server" else [])
            with open(logs / f"{name}.log", "ab") as log:
                pids[name] = subprocess.Popen(args, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True).pid
        self.state_file.write_text(json.dumps(pids))
        deadline = time.monotonic() + timeout
        while not self.healthy():
            dead = [n for n, p in pids.items() if not alive(p)]
            if dead or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"local Airflow did not come up ({dead or 'timeout'}); logs in {logs}")
            time.sleep(1)
        return pids

    def stop(self, timeout: float = 30) -> dict:
        """TERM each component's process group (KILL after `timeout`), api-server last."""
        pids = self.pids()
        for name in reversed(COMPONENTS):
            if name in pids:
                terminate(pids[name], timeout=timeout)
        self.state_file.unlink(missing_ok=True)
        return pids

    def token(self) -> str:
        req = urllib.request.Request(f"{self.url}/auth/token", method="POST",
                                     data=json.dumps({"username": USER, "password": self.password}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)["access_token"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.airflow_services", description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=["start", "stop", "status", "cli"])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--home", type=Path, help="Airflow home (default: var/airflow, as make run)")
    a, rest = ap.parse_known_args(argv)
    af = LocalAirflow(home=a.home, port=a.port)
    if rest and a.action != "cli":
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    if a.action == "cli":  # e.g. cli backfill create --dag-id image_features --from-date ... --to-date ...
        return subprocess.run([sys.executable, "-m", "devtools.airflow_cli", *rest], env=af.env).returncode
    if a.action == "start":
        pids = af.start()
        print(f"Airflow is up at {af.url} (login {USER}, password in {af.secrets_file}); pids {pids}; logs in {af.home / 'services'}")
    elif a.action == "stop":
        pids = af.stop()
        print(f"stopped {pids}" if pids else "not running")
    else:
        pids = af.pids()
        print(json.dumps({"healthy": af.healthy(), "pids": pids, "url": af.url}))
        return 0 if pids else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())

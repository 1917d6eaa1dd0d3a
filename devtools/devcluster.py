"""A real Spark standalone cluster (Master + one Worker) on loopback, from the pyspark distribution.

YARN cannot run on these machines; a standalone cluster is a real cluster manager all the same:
executors run in processes the Worker launches, with their own working directory and environment,
so the project's library must reach them through `--py-files`, never through the driver's cwd.

    with StandaloneCluster(tmp_dir) as c:
        c.master_url          # spark://127.0.0.1:PORT, for the `spark_default` connection
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from devtools.processes import terminate

MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


class StandaloneCluster:
    def __init__(self, base: Path | str, cores: int = 2, memory: str = "4g"):
        self.base = Path(base).resolve()
        self.cores, self.memory = cores, memory
        self.port, self.ui_port, self.worker_ui_port = _free_port(), _free_port(), _free_port()
        self._procs: dict[str, subprocess.Popen] = {}

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _env(self) -> dict:
        # The Worker (and so every executor) gets no PYTHONPATH: executors must import the
        # project from the --py-files zip, as on a real cluster.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update({"SPARK_LOCAL_IP": "127.0.0.1", "SPARK_HOME": str(spark_home()),
                    "SPARK_LOG_DIR": str(self.base / "logs"), "SPARK_NO_DAEMONIZE": "1"})
        return env

    def _spawn(self, name: str, *args: str) -> None:
        (self.base / "logs").mkdir(parents=True, exist_ok=True)
        with open(self.base / "logs" / f"{name}.log", "ab") as log:
            self._procs[name] = subprocess.Popen(
                [str(spark_home() / "bin" / "spark-class"), *args], env=self._env(), cwd=self.base,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def state(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as r:
            return json.load(r)

    def start(self, timeout: float = 90) -> "StandaloneCluster":
        self._spawn("master", MASTER, "--host", "127.0.0.1", "--port", str(self.port),
                    "--webui-port", str(self.ui_port))
        self._spawn("worker", WORKER, self.master_url, "--host", "127.0.0.1", "--cores", str(self.cores),
                    "--memory", self.memory, "--work-dir", str(self.base / "work"),
                    "--webui-port", str(self.worker_ui_port))
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.state().get("aliveworkers", 0) >= 1:
                    return self
            except OSError:
                pass
            dead = [n for n, p in self._procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"standalone cluster not ready ({dead or 'timeout'}); logs in {self.base / 'logs'}")
            time.sleep(0.5)

    def stop(self) -> None:
        for name in ("worker", "master"):
            if p := self._procs.pop(name, None):
                terminate(p.pid, p)

    def __enter__(self) -> "StandaloneCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

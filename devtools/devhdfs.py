"""A real single-node HDFS (NameNode + DataNode, WebHDFS on) on loopback, for tests and local use.

No registry ships Hadoop 3 server jars, so the daemons are Hadoop 2.7.3: its jars (hadoop-hdfs holds
NameNode, DataNode and WebHDFS) travel inside the PyPI *source* archive of pyspark 2.4.8, and the
Jersey 1 that WebHDFS needs comes from Debian (Spark's Jersey 2 is a different API). Hadoop 2.7.3 is
old and unpatched: everything binds 127.0.0.1 only. Spark 3.5's Hadoop 3.3 client talks to it as is.

    python -m devtools.devhdfs start|stop|status [--base DIR]   # fixed ports 9000 / 9870

    with HDFS(tmp_dir) as h:                                   # free ports, own data dirs
        spark.read.parquet(f"{h.uri}/t/")
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from devtools.processes import cmdline, terminate
from imgfeat import paths

HADOOP = "hadoop-2.7.3"
_SDIST = "pyspark==2.4.8"
# hadoop-common/-hdfs 2.7.3 and the helpers its share/hadoop/{common,hdfs}/lib would hold; the other
# ~170 jars of the sdist (Spark, Hive, Jersey 2, ...) stay out of the classpath.
_JARS = re.compile(
    r"(hadoop-(annotations|auth|common|hdfs)-2\.7\.3|jetty-(util-)?6\.|commons-(beanutils|cli|codec|"
    r"collections|compress|configuration|digester|httpclient|io|lang-|logging|math3|net)|guava-|"
    r"protobuf-java-|htrace-core|jackson-(core|mapper)-asl|jackson-(jaxrs|xc)-1|netty-|log4j-1|"
    r"slf4j-(api|log4j12)|xmlenc|zookeeper|curator-|leveldbjni|xercesImpl|javax\.servlet-api|jsp-api|"
    r"jsr305|activation|jaxb-api|stax-api-1\.0-2|apacheds|api-(asn1|util)|gson|httpclient|httpcore|"
    r"paranamer|snappy-java|xz-).*\.jar")
_DEBS = ("libjersey1-core-java", "libjersey1-server-java", "libjersey1-servlet-java", "libjsr311-api-java")
# The HTTP servers refuse to start without these folders on the classpath (empty is enough: the
# web UI's pages are not needed, JMX and WebHDFS are servlets).
_WEBAPPS = ("hdfs", "datanode", "secondary", "journal")

NAMENODE = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DATANODE = "org.apache.hadoop.hdfs.server.datanode.DataNode"
FIXED_PORTS = {"rpc": 9000, "http": 9870, "dn": 9866, "dn_http": 9864, "dn_ipc": 9867}
USER = "root"  # the user that starts the NameNode is HDFS's superuser; clients act as it by default


def _run(cmd: list, what: str, cwd: Path | None = None) -> None:
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode:
        raise RuntimeError(f"devhdfs fetch: {what} failed ({' '.join(map(str, cmd))}):\n{r.stdout[-2000:]}")


def fetch(cache_dir: Path | str | None = None) -> Path:
    """Hadoop 2.7.3 jars + Jersey 1 + webapps folders in `cache_dir/hadoop-2.7.3` (cached: the
    second call downloads nothing). Built in a temporary folder and renamed into place, so an
    interrupted or concurrent fetch never leaves a half-filled home."""
    cache = Path(cache_dir or paths.cache_dir())
    home = cache / HADOOP
    if (home / ".complete").exists():
        return home
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".hadoop-fetch-") as tmp:
        tmp = Path(tmp)
        stage, lib = tmp / HADOOP, tmp / HADOOP / "lib"
        lib.mkdir(parents=True)
        # Download, don't install: its isolated build fails, and we only want the bundled jars.
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
              "--disable-pip-version-check", _SDIST, "-d", tmp / "sdist"], f"pip download {_SDIST}")
        sdist = next((tmp / "sdist").glob("pyspark-*.tar.gz"), None)
        if sdist is None:
            raise RuntimeError(f"devhdfs fetch: pip download {_SDIST} gave no source archive")
        with tarfile.open(sdist) as tf:
            for m in tf:
                name = m.name.rsplit("/", 1)[-1]
                if m.isfile() and "/deps/jars/" in m.name and _JARS.fullmatch(name):
                    with tf.extractfile(m) as src, open(lib / name, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        if not (lib / "hadoop-hdfs-2.7.3.jar").exists():
            raise RuntimeError(f"devhdfs fetch: no hadoop-hdfs-2.7.3.jar in {sdist.name}")
        # Jersey 1 from Debian, unpacked without installing (no root needed for this part).
        debs = tmp / "debs"
        debs.mkdir()
        get = ["apt-get", "download", "-o", "APT::Sandbox::User=root", *_DEBS]
        try:
            _run(get, "apt-get download", cwd=debs)
        except RuntimeError:  # a machine whose package lists were never fetched
            _run(["apt-get", "update", "-qq"], "apt-get update")
            _run(get, "apt-get download", cwd=debs)
        for deb in debs.glob("*.deb"):
            _run(["dpkg-deb", "-x", deb, tmp / "x"], f"dpkg-deb -x {deb.name}")
        jersey = [j for j in (tmp / "x/usr/share/java").glob("*.jar") if not j.is_symlink()]
        if len(jersey) < len(_DEBS):
            raise RuntimeError(f"devhdfs fetch: expected {len(_DEBS)} Jersey 1 jars, got {jersey}")
        for j in jersey:
            shutil.copy2(j, lib / j.name)
        for w in _WEBAPPS:
            (stage / "res/webapps" / w).mkdir(parents=True)
        (stage / ".complete").write_text(f"{_SDIST} {' '.join(_DEBS)}\n")
        if home.exists() and not (home / ".complete").exists():
            shutil.rmtree(home)  # leftover of a pre-rename layout or manual fiddling
        try:
            stage.rename(home)
        except OSError:
            if not (home / ".complete").exists():  # lost a race to a concurrent fetch: fine
                raise
    return home


def free_ports() -> dict:
    """Five distinct free loopback ports (held open together so they differ), below Linux's
    ephemeral range (32768+): a port freed by a restart is never handed to another process's
    bind(0) meanwhile (a CI run failed so, under two test workers)."""
    import random

    socks = []
    try:
        while len(socks) < len(FIXED_PORTS):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", random.randint(20000, 32000)))
            except OSError:
                s.close()
                continue
            socks.append(s)
        return {k: s.getsockname()[1] for k, s in zip(FIXED_PORTS, socks)}
    finally:
        for s in socks:
            s.close()


def _xml(props: dict) -> str:
    body = "".join(f"  <property><name>{k}</name><value>{v}</value></property>\n" for k, v in props.items())
    return f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n'


class HDFS:
    """NameNode + DataNode on 127.0.0.1 with their dirs, config and logs under `base`.

    Ports default to free ones picked once at construction, so `restart()` reuses them and tests
    never collide with a running dev HDFS; pass `ports=FIXED_PORTS` for the usual 9000/9870."""

    def __init__(self, base: Path | str, ports: dict | None = None, home: Path | str | None = None,
                 heap: str = "384m", stop_at_exit: bool = True, permissions: bool = False):
        self.base = Path(base).resolve()
        self.ports = {**(ports or free_ports())}
        self.home = Path(home) if home else None  # None: fetch() into the cache on start
        self.heap = heap
        self.stop_at_exit = stop_at_exit
        # On: HDFS checks owners and modes as a cluster does, so other users can be refused
        # (the superuser, USER, never is).
        self.permissions = permissions
        self._procs: dict[str, subprocess.Popen] = {}

    # --- addresses ------------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        return f"hdfs://127.0.0.1:{self.ports['rpc']}"

    @property
    def webhdfs_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def pids(self) -> dict:
        """{"namenode": pid, "datanode": pid} of the daemons still running."""
        return {k: p.pid for k, p in self._procs.items() if p.poll() is None}

    def dfs_env(self) -> dict:
        """Environment for code that reaches HDFS over WebHDFS (imgfeat.storage)."""
        return {"IMGFEAT_WEBHDFS_URL": self.webhdfs_url, "HADOOP_USER_NAME": USER}

    # --- lifecycle ------------------------------------------------------------------------------
    def _conf(self) -> Path:
        p, conf = self.ports, self.base / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "core-site.xml").write_text(_xml({
            "fs.defaultFS": self.uri, "hadoop.tmp.dir": self.base / "tmp"}))
        (conf / "hdfs-site.xml").write_text(_xml({
            "dfs.namenode.name.dir": f"file://{self.base / 'name'}",
            "dfs.datanode.data.dir": f"file://{self.base / 'data'}",
            "dfs.replication": 1,
            "dfs.namenode.rpc-address": f"127.0.0.1:{p['rpc']}",
            "dfs.namenode.http-address": f"127.0.0.1:{p['http']}",
            "dfs.namenode.secondary.http-address": "127.0.0.1:0",  # no secondary runs
            "dfs.datanode.address": f"127.0.0.1:{p['dn']}",
            "dfs.datanode.http.address": f"127.0.0.1:{p['dn_http']}",
            "dfs.datanode.ipc.address": f"127.0.0.1:{p['dn_ipc']}",
            "dfs.datanode.hostname": "127.0.0.1",  # WebHDFS redirects clients here: stay on loopback
            "dfs.namenode.datanode.registration.ip-hostname-check": "false",
            "dfs.permissions.enabled": str(self.permissions).lower(),
            "dfs.namenode.safemode.extension": 0,  # leave safe mode as soon as the blocks are reported
            "dfs.heartbeat.interval": 1,  # a (re)started DataNode shows up sooner
            # One DataNode: there is no other to swap in during a write pipeline recovery.
            "dfs.client.block.write.replace-datanode-on-failure.enable": "false",
        }))
        (conf / "log4j.properties").write_text(
            "log4j.rootLogger=INFO,console\nlog4j.appender.console=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.console.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n\n")
        return conf

    def _java(self, cls: str, *args: str) -> list:
        java = shutil.which("java")
        if not java:
            raise RuntimeError("devhdfs: no `java` on PATH (apt-get install -y openjdk-17-jre-headless)")
        cp = os.pathsep.join([str(self.base / "conf"), str(self.home / "res"), f"{self.home / 'lib'}/*"])
        return [java, f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-Djava.net.preferIPv4Stack=true",
                f"-Dhadoop.log.dir={self.base / 'logs'}", "-cp", cp, cls, *args]

    def _spawn(self, name: str, cls: str) -> None:
        log = open(self.base / "logs" / f"{name}.log", "ab")
        # Own session/process group: stop() can signal the whole group, and a Ctrl-C in the
        # terminal that started the CLI does not reach the daemons.
        self._procs[name] = subprocess.Popen(self._java(cls), stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, cwd=self.base, start_new_session=True)
        log.close()

    def _check_ports(self, names, wait: float = 15) -> None:
        """Each port must be bindable. A port can be held for a moment by another HDFS's free_ports()
        probe (a CI run failed so on a restart, under two test workers), so it is tried again for
        `wait` seconds before it counts as taken."""
        deadline = time.monotonic() + wait
        for n in names:
            while True:
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM does
                    try:
                        s.bind(("127.0.0.1", self.ports[n]))
                        break
                    except OSError as e:
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"devhdfs: port {self.ports[n]} ({n}) is taken: {e}") from None
                time.sleep(0.2)

    def start(self, wait: bool = True, timeout: float = 120) -> "HDFS":
        """Format on first use, start whichever daemon is not running (NameNode first), and by
        default wait until ready. On failure both are stopped again: no half-started HDFS."""
        running = self.pids
        if len(running) == 2:
            return self.wait_ready(timeout) if wait else self
        self.home = self.home or fetch()
        (self.base / "logs").mkdir(parents=True, exist_ok=True)
        self._conf()
        self._check_ports([k for k in FIXED_PORTS  # only the ports of the daemons to be started
                           if ("datanode" if k.startswith("dn") else "namenode") not in running])
        if not (self.base / "name/current/VERSION").exists():
            r = subprocess.run(self._java(NAMENODE, "-format", "-force", "-nonInteractive"), cwd=self.base,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            (self.base / "logs/format.log").write_text(r.stdout)
            if r.returncode:
                raise RuntimeError(f"devhdfs: NameNode -format failed:\n{r.stdout[-3000:]}")
        if self.stop_at_exit and not getattr(self, "_atexit", False):
            atexit.register(self.stop)  # an interrupted test session leaves no JVMs behind
            self._atexit = True
        try:
            for name, cls in (("namenode", NAMENODE), ("datanode", DATANODE)):
                if name not in running:
                    self._spawn(name, cls)
            if wait:
                self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _jmx(self, port: str, bean: str) -> dict:
        url = f"http://127.0.0.1:{self.ports[port]}/jmx?qry=Hadoop:{bean}"
        with urllib.request.urlopen(url, timeout=5) as r:
            beans = json.load(r)["beans"]
        return beans[0] if beans else {}

    def ready(self) -> bool:
        """NameNode: a live DataNode with space reported, safe mode off. DataNode: its own JMX says it
        joined the NameNode's block pool; the NameNode alone cannot tell a restarted DataNode from the
        one it last heard of (it is declared dead only after ~10 min)."""
        try:
            state = self._jmx("http", "service=NameNode,name=FSNamesystemState")
            return (state.get("NumLiveDataNodes", 0) >= 1 and state.get("CapacityRemaining", 0) > 0
                    and self._jmx("http", "service=NameNode,name=NameNodeInfo").get("Safemode", "?") == ""
                    and json.loads(self._jmx("dn_http", "service=DataNode,name=DataNodeInfo")
                                   .get("NamenodeAddresses") or "{}") != {})
        except (OSError, ValueError):
            return False

    def wait_ready(self, timeout: float = 120) -> "HDFS":
        deadline = time.monotonic() + timeout
        while not self.ready():
            dead = [n for n, p in self._procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{dead} exited" if dead else f"not ready after {timeout:.0f} s"
                tail = "".join(f"\n--- {n}.log ---\n{self.log_tail(n)}" for n in dead or self._procs)
                raise RuntimeError(f"devhdfs: {why} (logs in {self.base / 'logs'}){tail}")
            time.sleep(0.25)
        return self

    def log_tail(self, name: str, chars: int = 3000) -> str:
        p = self.base / "logs" / f"{name}.log"
        return p.read_text(errors="replace")[-chars:] if p.exists() else ""

    def stop(self) -> None:
        """DataNode first (it would otherwise retry the vanished NameNode), then NameNode."""
        for name in ("datanode", "namenode"):
            if p := self._procs.pop(name, None):
                terminate(p.pid, p)

    def restart(self, timeout: float = 120) -> "HDFS":
        """Stop both and start again on the same ports and dirs: the data stays."""
        self.stop()
        return self.start(timeout=timeout)

    def __enter__(self) -> "HDFS":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- CLI: a dev HDFS that outlives the command (pids in BASE/pids.json) ---------------------------
def _cli(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.devhdfs", description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=["start", "stop", "status"])
    ap.add_argument("--base", type=Path, default=paths.var_dir() / "hdfs",
                    help="name/data dirs, config, logs, pids.json (default: %(default)s)")
    a = ap.parse_args(argv)
    base = a.base.resolve()
    pidfile = base / "pids.json"
    known = json.loads(pidfile.read_text()) if pidfile.exists() else {}
    # A pid counts only if that process is still our daemon (pids get reused after a reboot).
    ours = {n: pid for n, pid in known.get("pids", {}).items() if str(base) in "\0".join(cmdline(pid))}
    h = HDFS(base, ports=known.get("ports", FIXED_PORTS), stop_at_exit=False)
    if a.action == "start":
        if ours:
            print(f"already running: {ours} at {h.uri} ({h.webhdfs_url})")
            return 0
        h.start()
        pidfile.write_text(json.dumps({"pids": h.pids, "ports": h.ports}))
        print(f"HDFS ready at {h.uri}  WebHDFS {h.webhdfs_url}  pids {h.pids}  logs {base / 'logs'}")
    elif a.action == "stop":
        for name in ("datanode", "namenode"):
            if name in ours:
                terminate(ours[name])
        pidfile.unlink(missing_ok=True)
        print(f"stopped {ours}" if ours else "not running")
    else:
        state = "ready" if ours and h.ready() else "starting" if ours else "stopped"
        print(json.dumps({"state": state, "pids": ours, "uri": h.uri, "webhdfs": h.webhdfs_url}))
        return 0 if state == "ready" else 3
    return 0


if __name__ == "__main__":
    sys.exit(_cli())

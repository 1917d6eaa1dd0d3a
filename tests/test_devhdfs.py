"""The dev HDFS is real: WebHDFS and Spark 3.5 round-trip bytes and rows through it, restart()
keeps them, stop() leaves no process. One HDFS (free ports, tmp dirs) for the whole module."""

from __future__ import annotations

import os
import socket
import sys
import time

import psutil
import pytest

from devtools.devhdfs import HDFS
from devtools.processes import alive

pytestmark = pytest.mark.hdfs


@pytest.fixture(scope="module")
def dfs(tmp_path_factory):
    with HDFS(tmp_path_factory.mktemp("hdfs")) as h:
        yield h


@pytest.fixture(scope="module")
def client(dfs):
    from hdfs import InsecureClient

    return InsecureClient(dfs.webhdfs_url, user="root")


@pytest.fixture(scope="module")
def session():
    """local[1] of our own, unless the suite's session-wide SparkSession already runs (one per JVM):
    then borrow it and leave it running."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    borrowed = SparkContext._active_spark_context is not None
    s = (SparkSession.builder.master("local[1]").appName("devhdfs-test")
         .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1").getOrCreate())
    yield s
    if not borrowed:
        s.stop()


# Partition values Spark would not infer as dates or numbers, so rows come back exactly as written.
ROWS = [(i, f"name-{i}", i * 0.5, f"p{i % 3}") for i in range(60)]


def _read(client, path) -> bytes:
    with client.read(path) as r:
        return r.read()


def test_a_port_held_for_a_moment_is_waited_for_and_one_held_on_is_refused_by_name(tmp_path):
    import threading

    h = HDFS(tmp_path)  # no daemon is started: only the port check runs
    held = socket.socket()
    held.bind(("127.0.0.1", h.ports["rpc"]))
    threading.Timer(1.0, held.close).start()
    h._check_ports(["rpc"], wait=10)  # returns once the holder let go
    with socket.socket() as s:
        s.bind(("127.0.0.1", h.ports["http"]))
        s.listen()
        with pytest.raises(RuntimeError, match=f"port {h.ports['http']} \\(http\\) is taken"):
            h._check_ports(["http"], wait=0.5)


def test_addresses(dfs):
    assert dfs.uri == f"hdfs://127.0.0.1:{dfs.ports['rpc']}"
    assert dfs.webhdfs_url == f"http://127.0.0.1:{dfs.ports['http']}"
    assert set(dfs.pids) == {"namenode", "datanode"}
    assert dfs.dfs_env()["IMGFEAT_WEBHDFS_URL"] == dfs.webhdfs_url


def test_webhdfs_write_read_rename_delete(dfs, client):
    data = os.urandom(5 * 1024 * 1024 + 123)  # a few MB, not block-aligned
    client.write("/w/a.bin", data)
    assert client.status("/w/a.bin")["length"] == len(data)
    assert _read(client, "/w/a.bin") == data
    client.rename("/w/a.bin", "/w/b.bin")
    assert client.status("/w/a.bin", strict=False) is None
    assert _read(client, "/w/b.bin") == data
    assert client.list("/w") == ["b.bin"]
    assert client.delete("/w", recursive=True)
    assert client.status("/w", strict=False) is None


def test_spark_parquet_roundtrip(dfs, client, session):
    df = session.createDataFrame(ROWS, "id long, name string, score double, dt string")
    df.write.mode("overwrite").partitionBy("dt").parquet(f"{dfs.uri}/t/")  # the URI alone: no conf
    back = session.read.parquet(f"{dfs.uri}/t/").select("id", "name", "score", "dt")
    assert sorted(tuple(r) for r in back.collect()) == ROWS
    # The partitions really are in HDFS, seen through the other protocol.
    assert sorted(p for p in client.list("/t") if p.startswith("dt=")) == [
        "dt=p0", "dt=p1", "dt=p2"]


def test_restart_keeps_data(dfs, client, session):
    data = os.urandom(2 * 1024 * 1024)
    client.write("/r/keep.bin", data, overwrite=True)
    session.createDataFrame(ROWS, "id long, name string, score double, dt string") \
        .write.mode("overwrite").partitionBy("dt").parquet(f"{dfs.uri}/r/t/")
    before_pids, before_ports = dict(dfs.pids), dict(dfs.ports)

    dfs.restart()

    assert dfs.ports == before_ports
    assert set(dfs.pids) == {"namenode", "datanode"} and not set(dfs.pids.values()) & set(before_pids.values())
    assert not any(alive(p) for p in before_pids.values())
    assert _read(client, "/r/keep.bin") == data
    back = session.read.parquet(f"{dfs.uri}/r/t/").select("id", "name", "score", "dt")
    assert sorted(tuple(r) for r in back.collect()) == ROWS


def test_datanode_stop_start(dfs, client):
    """A DataNode that went away is started again by start() alone, next to the running NameNode."""
    client.write("/d/x.txt", b"still here", overwrite=True)
    dn, nn = psutil.Process(dfs.pids["datanode"]), dfs.pids["namenode"]
    dn.terminate()
    dn.wait(timeout=30)  # our child: reaped
    assert "datanode" not in dfs.pids and not alive(dn.pid)
    dfs.start()
    assert dfs.pids["namenode"] == nn and "datanode" in dfs.pids
    assert _read(client, "/d/x.txt") == b"still here"


def test_stop_leaves_nothing(dfs):
    """Last test of the module: it stops the module's HDFS (the fixture's stop is then a no-op)."""
    pids = dict(dfs.pids)
    dfs.stop()
    assert dfs.pids == {}
    assert not any(alive(p) for p in pids.values())
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(dfs.base) in "\0".join(p.info["cmdline"] or [])]
    # Nothing of ours listens any more. A freed port may be handed to another test's process at once
    # (the other xdist worker's Spark or HDFS bind ephemeral ports), so a port that answers is checked
    # by the owner of its listener, looked up after it answered (a CI run failed when the port was
    # taken between an earlier lookup and the connect).
    # A listener can also go away between the connect and the lookup (a CI run failed so): that
    # is tried again, and a port counts as answering with no listener only if it does so each time.
    for name, port in dfs.ports.items():
        for _ in range(5):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) != 0:
                    owner = None
                    break
                listening = {c.laddr.port: c.pid for c in psutil.net_connections("tcp")
                             if c.status == psutil.CONN_LISTEN}
            if (owner := listening.get(port)) is not None:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"{name} port {port} answers with no listener, five times (a socket of a process of ours?)")
        if owner is None:
            continue
        try:
            owner_cmd = " ".join(psutil.Process(owner).cmdline())
        except psutil.NoSuchProcess:  # it went away meanwhile: not a listener of ours either
            owner_cmd = ""
        assert owner not in pids.values() and str(dfs.base) not in owner_cmd, \
            f"{name} port {port} still answers: pid {owner} {owner_cmd[:200]}"

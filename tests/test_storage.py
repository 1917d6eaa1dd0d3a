"""imgfeat.storage: one API over local paths, file: URIs and hdfs:// roots (WebHDFS), one-line errors.

Local files directly; WebHDFS against a stand-in NameNode on loopback (what the client sends: exact
quoted names, the user, the URL; what it makes of the answers); a real HDFS under the `hdfs` mark."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests

from imgfeat import storage

ODD = ["p#1.jpg", "photo%20one.jpg", "photo one.jpg", "café.jpg", "d/[x]{a}*.JPG", "x.jpg?y", "12:30.jpg"]


def test_local_paths_and_file_uris(tmp_path):
    for root in (str(tmp_path), f"file://{tmp_path}", f"file:{tmp_path}"):
        path = f"{root}/a/b/state.json"
        assert not storage.exists(path) and storage.read_json(path) is None and storage.list_names(f"{root}/a/b") == []
        storage.write_json(path, {"x": 1})
        storage.write_json(path, {"x": 2})  # replaced
        assert storage.read_json(path) == {"x": 2} and storage.exists(path) and not storage.is_dir(path)
        assert storage.is_dir(f"{root}/a") and storage.list_names(f"{root}/a/b") == ["state.json"]
        assert not [p for p in (tmp_path / "a" / "b").iterdir() if p.name.endswith(".tmp")]
        storage.remove(path)
        storage.remove(path)  # gone already: nothing to do
        assert storage.list_names(f"{root}/a/b") == []


def test_list_files_gives_exact_relative_names_and_sizes(tmp_path):
    for i, name in enumerate(ODD):
        (tmp_path / "part" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "part" / name).write_bytes(b"x" * i)
    assert storage.list_files(str(tmp_path / "part")) == sorted((name, i) for i, name in enumerate(ODD))
    assert storage.list_files(str(tmp_path / "missing")) is None
    assert storage.list_files(str(tmp_path / "part" / "p#1.jpg")) is None


def test_check_writable(tmp_path):
    storage.check_writable(str(tmp_path / "new" / "warehouse"))
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(storage.StorageError, match="^warehouse_root .*a-file is not writable: Not a directory$"):
        storage.check_writable(str(tmp_path / "a-file"))
    assert not any(p.name.startswith(".probe") for p in tmp_path.rglob("*"))


# --- WebHDFS, against a stand-in NameNode -------------------------------------------------------
class NameNode(BaseHTTPRequestHandler):
    """Answers GETFILESTATUS, LISTSTATUS, OPEN and MKDIRS over `files` ({path: bytes}) as WebHDFS
    does, and records each request: (op, decoded path, query)."""

    prefix = "/gw/webhdfs/v1"
    files: dict[str, bytes] = {}
    seen: list = []

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _remote(self, status: int, exception: str, message: str) -> None:
        self._answer(status, {"RemoteException": {"exception": exception, "message": message}})

    def do_GET(self):
        url = urlsplit(self.path)
        assert url.path.startswith(self.prefix)
        path, query = unquote(url.path[len(self.prefix):]), parse_qs(url.query)
        op = query["op"][0]
        self.seen.append((op, path, query))
        children = {k[len(path.rstrip("/")) + 1:].split("/")[0] for k in self.files if k.startswith(path.rstrip("/") + "/")}
        if path not in self.files and not children:
            return self._remote(404, "FileNotFoundException", f"File does not exist: {path}")
        if op == "OPEN":
            data = self.files[path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return self.wfile.write(data)

        def status(p, suffix):
            if p in self.files:
                return {"type": "FILE", "length": len(self.files[p]), "pathSuffix": suffix}
            return {"type": "DIRECTORY", "length": 0, "pathSuffix": suffix}
        if op == "GETFILESTATUS":
            return self._answer(200, {"FileStatus": status(path, "")})
        entries = [status(f"{path.rstrip('/')}/{c}", c) for c in sorted(children)]
        return self._answer(200, {"FileStatuses": {"FileStatus": entries}})

    def do_PUT(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self.seen.append((query["op"][0], unquote(url.path[len(self.prefix):]), query))
        user = query["user.name"][0]
        self._remote(403, "AccessControlException",
                     f'Permission denied: user={user}, access=WRITE, inode="/locked":root:supergroup:drwxr-xr-x')


@pytest.fixture
def namenode(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), NameNode)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    NameNode.files, NameNode.seen = {}, []
    monkeypatch.setenv("IMGFEAT_WEBHDFS_URL", f"http://127.0.0.1:{server.server_port}/gw")
    monkeypatch.setenv("HADOOP_USER_NAME", "alice")
    yield NameNode
    server.shutdown()
    server.server_close()


def test_webhdfs_keeps_exact_names(namenode):
    namenode.files = {f"/in/dt=1/{name}": name.encode() for name in ODD}
    part = "hdfs://nn:8020/in/dt=1"
    assert storage.list_files(part) == sorted((name, len(name.encode())) for name in ODD)
    assert storage.list_names(part) == sorted({name.split("/")[0] for name in ODD})
    for name in ODD:
        assert storage.exists(f"{part}/{name}") and storage.read_bytes(f"{part}/{name}") == name.encode()
    assert storage.read_bytes(f"{part}/photo%2520one.jpg") is None and not storage.exists(f"{part}/nope")
    # every request named its path exactly (decoded once by the server), as the user, under the URL's prefix
    assert {path for _, path, _ in namenode.seen} >= {f"/in/dt=1/{name}" for name in ODD}
    assert all(q["user.name"] == ["alice"] for _, _, q in namenode.seen)


def test_webhdfs_refused_write_is_one_line_and_not_transient(namenode):
    with pytest.raises(storage.StorageError) as e:
        storage.check_writable("hdfs://nn:8020/locked")
    assert str(e.value) == ('warehouse_root hdfs://nn:8020/locked is not writable: Permission denied: user=alice, '
                            'access=WRITE, inode="/locked":root:supergroup:drwxr-xr-x')
    assert not e.value.transient
    assert [(op, path.rsplit("/", 1)[0]) for op, path, _ in namenode.seen] == [("MKDIRS", "/locked/_staging")]


def test_an_unreachable_namenode_is_one_transient_line(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("IMGFEAT_WEBHDFS_URL", f"http://127.0.0.1:{port}")
    uri = "hdfs://nn:8020/wh/x.json"
    for call in (storage.exists, storage.is_dir, storage.read_bytes, storage.read_json, storage.list_names,
                 storage.list_files, storage.remove, lambda p: storage.write_json(p, {}), storage.check_writable):
        with pytest.raises(storage.StorageError) as e:
            call(uri)
        assert str(e.value) == f"NameNode of {uri} is unreachable (WebHDFS http://127.0.0.1:{port} refused the connection)"
        assert e.value.transient


def test_a_silent_namenode_times_out(monkeypatch):
    with socket.socket() as s:  # accepts the connection, never answers
        s.bind(("127.0.0.1", 0))
        s.listen()
        monkeypatch.setenv("IMGFEAT_WEBHDFS_URL", f"http://127.0.0.1:{s.getsockname()[1]}")
        monkeypatch.setattr(storage, "TIMEOUT_S", 0.2)
        with pytest.raises(requests.exceptions.ReadTimeout):
            storage.exists("hdfs://nn:8020/wh")


def test_the_webhdfs_address(monkeypatch):
    monkeypatch.delenv("IMGFEAT_WEBHDFS_URL", raising=False)
    assert storage.webhdfs_url("hdfs://namenode.example:8020/wh") == "http://namenode.example:9870"
    monkeypatch.setenv("IMGFEAT_WEBHDFS_URL", "https://gateway:8443/nn1")
    assert storage.webhdfs_url("hdfs://namenode.example:8020/wh") == "https://gateway:8443/nn1"


# --- a real HDFS --------------------------------------------------------------------------------
@pytest.mark.hdfs
def test_on_a_real_hdfs(hdfs, monkeypatch):
    """Odd names through reads and writes. Not ':', which HDFS refuses in a name; nor '%': Hadoop
    2.7's DataNode decodes a path twice, so no WebHDFS client can read or write 'photo%20one.jpg'
    there (listings, NameNode calls, keep it: test_hdfs_pipeline.py::test_odd_names_on_hdfs_...)."""
    for k, v in hdfs.dfs_env().items():
        monkeypatch.setenv(k, v)
    root = f"{hdfs.uri}/storage-test"
    names = [name for name in ODD if "%" not in name and ":" not in name]
    for i, name in enumerate(names):
        storage.write_json(f"{root}/part/{name}", {"i": i})
    assert storage.list_files(f"{root}/part") == sorted(
        (name, len(json.dumps({"i": i}, indent=2).encode())) for i, name in enumerate(names))
    assert [storage.read_json(f"{root}/part/{name}") for name in names] == [{"i": i} for i in range(len(names))]
    storage.write_json(f"{root}/part/p#1.jpg", {"i": "again"})  # overwritten
    assert storage.read_json(f"{root}/part/p#1.jpg") == {"i": "again"}
    assert storage.list_names(f"{root}/part") == sorted({name.split("/")[0] for name in names})
    assert storage.is_dir(f"{root}/part/d") and not storage.is_dir(f"{root}/part/x.jpg?y")
    storage.remove(f"{root}/part/x.jpg?y")
    storage.remove(f"{root}/part/x.jpg?y")  # gone already: nothing to do
    assert not storage.exists(f"{root}/part/x.jpg?y") and storage.read_bytes(f"{root}/part/x.jpg?y") is None
    storage.check_writable(root)
    assert storage.list_names(f"{root}/_staging") == []
    monkeypatch.setenv("HADOOP_USER_NAME", "alice")
    with pytest.raises(storage.StorageError, match=rf"^warehouse_root {root} is not writable: Permission denied: "
                                                   "user=alice, access=WRITE, ") as e:
        storage.check_writable(root)
    assert not e.value.transient

"""The small files of the Airflow-side code, on local paths, file: URIs and hdfs:// roots (fsspec).

Checkpoint metadata, manifests, the catalog, the readiness gate's state, the similarity index: what
Airflow reads and writes without Spark. (Spark apps reach storage through the JVM: imgfeat.spark.hadoop.)

- A local path or a file: URI: fsspec's LocalFileSystem.
- Any other Hadoop URI (hdfs://HOST:PORT/...): fsspec's WebHDFS client, at $IMGFEAT_WEBHDFS_URL (one
  NameNode; set it when the HTTP port differs) else http://HOST:9870 (Hadoop 3's default), as the
  user $HADOOP_USER_NAME (default root, simple authentication), each request timing out after 20 s.

Every function takes a path or URI. Their errors are mapped in one place (`_errors`):
`StorageError(message, transient)`, one line: an unreachable NameNode is transient (it may come
back); a refused write in `check_writable` is not. Other errors of the file systems propagate as
they are raised (FileNotFoundError, PermissionError, ...).

Names are exact: a remote URI's path is taken as it is written (never URL-decoded, nor cut at '?'
or '#'), and WebHDFS requests quote it, so 'p#1.jpg', 'x.jpg?y' and 'photo%20one.jpg' (next to
'photo one.jpg') are files like any other. (Hadoop 2.7's DataNode, the dev HDFS's, decodes a path
twice: there no WebHDFS client reads or writes the bytes of a name holding '%'. Listings and
statuses are NameNode calls and keep it; the files Airflow reads and writes have plain names.)
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import posixpath
import re
import uuid
from urllib.parse import urlsplit

import requests
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.webhdfs import WebHDFS

from imgfeat import params
from imgfeat.layout import Warehouse

TIMEOUT_S = 20  # per WebHDFS request
_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/]*")  # scheme://host:port, before the path


class StorageError(RuntimeError):
    """Storage is unreachable or refuses an operation; the message is one line. `transient`: worth
    a retry (an unreachable NameNode may come back; a refused permission will not)."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def webhdfs_url(uri: str) -> str:
    """The WebHDFS address of a Hadoop URI's NameNode."""
    return os.environ.get("IMGFEAT_WEBHDFS_URL") or f"http://{urlsplit(uri).hostname}:9870"


class _WebHDFS(WebHDFS):
    """fsspec's WebHDFS at a whole URL (a path prefix of it is kept), with a timeout on every
    request. Not cached: each call gets a fresh client and connection, as the NameNode may have
    restarted since the last one."""

    cachable = False

    def __init__(self, url: str, user: str):
        u = urlsplit(url)
        super().__init__(u.hostname, u.port or (443 if u.scheme == "https" else 80), user=user,
                         use_https=u.scheme == "https")
        self.url = f"{url.rstrip('/')}/webhdfs/v1"

    def _connect(self):
        super()._connect()
        self.session.request = functools.partial(self.session.request, timeout=TIMEOUT_S)


def _resolve(path: str):
    """(file system, path on it) of a local path or URI."""
    local = params.local_path(path)
    if local is not None:
        return LocalFileSystem(), local
    fs = _WebHDFS(webhdfs_url(path), user=os.environ.get("HADOOP_USER_NAME", "root"))
    return fs, _AUTHORITY.sub("", path, count=1) or "/"


def filesystem(path: str):
    """(fsspec file system, path on it) of a local path or URI: for readers such as pyarrow."""
    return _resolve(path)


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return (str(e).splitlines() or [type(e).__name__])[0]


@contextlib.contextmanager
def _errors(path: str, refused: str | None = None):
    """The one place that turns the file systems' errors into StorageError. An unreachable
    NameNode: transient. With `refused` (what the operation was for), a refusal: `refused: reason`."""
    try:
        yield
    except requests.exceptions.ConnectionError:
        raise StorageError(f"NameNode of {path} is unreachable (WebHDFS {webhdfs_url(path)} refused the connection)",
                           transient=True) from None
    except (OSError, RuntimeError, ValueError) as e:
        # A refusal: a local OSError; from WebHDFS, fsspec's PermissionError, RuntimeError, ... (the
        # NameNode's RemoteException) or an error status. Not a timeout or a broken response.
        other_request_error = isinstance(e, requests.exceptions.RequestException) and \
            not isinstance(e, requests.exceptions.HTTPError)
        if refused is None or other_request_error:
            raise
        raise StorageError(f"{refused}: {_reason(e)}") from None


def _mapped(fn):
    """`fn(path, ...)` with its errors mapped by `_errors(path)`."""
    @functools.wraps(fn)
    def wrapper(path: str, *args, **kwargs):
        with _errors(path):
            return fn(path, *args, **kwargs)
    return wrapper


def _info(fs, p: str) -> dict | None:
    try:
        return fs.info(p)
    except FileNotFoundError:
        return None


def _is_dir(fs, p: str) -> bool:
    info = _info(fs, p)
    return info is not None and info["type"] == "directory"


def _name(info: dict) -> str:
    return posixpath.basename(info["name"].rstrip("/"))


@_mapped
def exists(path: str) -> bool:
    return _info(*_resolve(path)) is not None


@_mapped
def is_dir(path: str) -> bool:
    return _is_dir(*_resolve(path))


@_mapped
def read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    fs, p = _resolve(path)
    try:
        return fs.cat_file(p)
    except FileNotFoundError:
        return None


def read_json(path: str) -> dict | None:
    """The JSON document in `path`, or None when it does not exist (ValueError: not JSON)."""
    data = read_bytes(path)
    return None if data is None else json.loads(data)


@_mapped
def write_json(path: str, obj: dict) -> None:
    """Replace `path` with `obj` as JSON, creating its directories, through a hidden temporary file
    next to it, so a reader never sees a part of it. A local file is replaced atomically (rename).
    On HDFS (fsspec's WebHDFS writes a file in two requests, create then append; and a rename does
    not replace a file) the old file is deleted, then the complete temporary one renamed into
    place: a reader in between finds no file, as before the first write."""
    data = json.dumps(obj, indent=2, sort_keys=True).encode()
    fs, p = _resolve(path)
    tmp = f"{posixpath.dirname(p)}/.{posixpath.basename(p)}.{uuid.uuid4().hex}.tmp"
    if isinstance(fs, LocalFileSystem):
        fs.makedirs(posixpath.dirname(p), exist_ok=True)
        fs.pipe_file(tmp, data)
        os.replace(tmp, p)
        return
    fs.pipe_file(tmp, data)  # WebHDFS CREATE makes the parent directories
    try:
        if _info(fs, p) is not None:
            fs.rm(p)
        fs.mv(tmp, p)  # WebHDFS RENAME answers false rather than failing: check
        if _info(fs, tmp) is not None or _info(fs, p) is None:
            raise OSError(f"could not rename {tmp} to {p}")
    finally:
        if _info(fs, tmp) is not None:
            fs.rm(tmp)


@_mapped
def list_names(path: str) -> list[str]:
    """Names in the directory `path`, sorted ([] when it is not a directory)."""
    fs, p = _resolve(path)
    if not _is_dir(fs, p):
        return []
    return sorted(_name(info) for info in fs.ls(p, detail=True))


@_mapped
def list_files(path: str) -> list[tuple[str, int]] | None:
    """(path relative to the directory `path`, '/'-separated; size) of every file below it, at any
    depth (local links to directories are not followed); None when `path` is not a directory.

    Not fsspec's find/walk: below the top directory they drop `on_error` (fsspec 2026.9), so a
    subdirectory that failed to list (an unreachable NameNode, a refused permission) would be
    silently empty. Here any such error propagates."""
    fs, p = _resolve(path)
    if not _is_dir(fs, p):
        return None
    top = p.rstrip("/")
    found, todo = [], [top]
    while todo:
        d = todo.pop()
        for info in fs.ls(d or "/", detail=True):
            child = f"{d}/{_name(info)}"
            if info["type"] == "directory":
                todo.append(child)
            else:
                found.append((child[len(top) + 1:], info["size"]))
    return sorted(found)


@_mapped
def remove(path: str) -> None:
    """Delete the file `path` if it exists."""
    fs, p = _resolve(path)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(p)


def check_writable(warehouse_root: str) -> None:
    """Create and remove a probe directory in the warehouse (`Warehouse.probe`); raise
    StorageError in one line if refused: `warehouse_root <root> is not writable: <reason>`."""
    fs, p = _resolve(Warehouse(warehouse_root).probe())
    with _errors(warehouse_root, refused=f"warehouse_root {warehouse_root} is not writable"):
        fs.mkdir(p)  # with its parents
        fs.rm(p, recursive=True)

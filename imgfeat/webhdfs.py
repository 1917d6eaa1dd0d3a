"""Small WebHDFS reads for Airflow-side code (no JVM): the `hdfs` package over HTTP."""

from __future__ import annotations

import os
from urllib.parse import urlparse


def client_for(uri: str):
    """A WebHDFS client for an hdfs://HOST:PORT/... URI (`IMGFEAT_WEBHDFS_URL` overrides the
    default http://HOST:9870)."""
    from hdfs import InsecureClient

    host = urlparse(uri).hostname
    url = os.environ.get("IMGFEAT_WEBHDFS_URL") or f"http://{host}:9870"
    return InsecureClient(url, user=os.environ.get("HADOOP_USER_NAME", "root"))


def read_text(uri: str) -> str:
    with client_for(uri).read(urlparse(uri).path, encoding="utf-8") as reader:
        return reader.read()

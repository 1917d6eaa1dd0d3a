"""WebHDFS access for Airflow-side code (no JVM): the `hdfs` package over HTTP.

The WebHDFS address of an hdfs://HOST:PORT URI is http://HOST:9870 (Hadoop 3's default), unless
`IMGFEAT_WEBHDFS_URL` names it (one NameNode) — set it when the HTTP port differs.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse


def webhdfs_url(uri: str) -> str:
    return os.environ.get("IMGFEAT_WEBHDFS_URL") or f"http://{urlparse(uri).hostname}:9870"


def client_for(uri: str):
    from hdfs import InsecureClient

    return InsecureClient(webhdfs_url(uri), user=os.environ.get("HADOOP_USER_NAME", "root"), timeout=20)


def read_text(uri: str) -> str:
    with client_for(uri).read(urlparse(uri).path, encoding="utf-8") as reader:
        return reader.read()

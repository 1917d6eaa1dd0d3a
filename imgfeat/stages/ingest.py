"""ingest: validate and fingerprint every file of the input partition."""

from __future__ import annotations

import hashlib
from urllib.parse import unquote, urlparse

import pandas as pd

from imgfeat import decode

STAGE = "ingest"
PAYLOAD = ("width", "height", "format", "content")


def file_path(uri: str) -> str:
    """The path part of a file URI, so `file:/x`, `file:///x` and `/x` compare equal."""
    return unquote(urlparse(uri).path)


def image_id(path: str, partition_uri: str) -> str:
    """Path relative to the partition root, '/'-separated (the published `image_id`)."""
    prefix = file_path(partition_uri).rstrip("/") + "/"
    path = file_path(path)
    if not path.startswith(prefix):
        raise ValueError(f"{path} is not under {partition_uri}")
    return path[len(prefix):]


def ingest_file(image_id: str, content: bytes, max_pixels: int = decode.MAX_PIXELS) -> dict:
    content = bytes(content or b"")
    row = {
        "image_id": image_id,
        "sha256": hashlib.sha256(content).hexdigest(),
        "size_bytes": len(content),
        "width": None, "height": None, "format": None, "content": None,
        "quarantine_stage": None, "quarantine_reason": None,
    }
    try:
        if not decode.has_image_extension(image_id):
            raise decode.BadImage("unsupported_extension", image_id.rsplit("/", 1)[-1])
        info = decode.inspect(content, max_pixels=max_pixels)
    except decode.BadImage as e:
        row["quarantine_stage"], row["quarantine_reason"] = STAGE, e.reason[:500]
        return row
    row.update(width=info.width, height=info.height, format=info.format, content=content)
    return row


def ingest_batch(files: pd.DataFrame, partition_uri: str, max_pixels: int = decode.MAX_PIXELS) -> pd.DataFrame:
    """`files` has Spark's binaryFile columns `path` and `content`."""
    rows = [ingest_file(image_id(p, partition_uri), c, max_pixels) for p, c in zip(files["path"], files["content"])]
    return pd.DataFrame(rows, columns=[
        "image_id", "sha256", "width", "height", "format", "size_bytes", "content",
        "quarantine_stage", "quarantine_reason"])

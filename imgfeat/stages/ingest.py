"""ingest: validate and fingerprint every file of the input partition.

Which files are read is decided from the listing (imgfeat.inputs); a file rejected there gets its
quarantine row without being read. The rest are decoded whole here (decode.inspect).
"""

from __future__ import annotations

import hashlib

import pandas as pd

from imgfeat import decode, inputs

STAGE = "ingest"
PAYLOAD = ("width", "height", "format", "content")
COLUMNS = ["image_id", "sha256", "width", "height", "format", "size_bytes", "orientation_ok", "content",
           "quarantine_stage", "quarantine_reason"]


def _row(image_id: str, size: int, sha256: str | None = None) -> dict:
    return {"image_id": image_id, "sha256": sha256, "size_bytes": size, "width": None, "height": None,
            "format": None, "orientation_ok": None, "content": None,
            "quarantine_stage": None, "quarantine_reason": None}


def rejected(entry: inputs.Listed) -> dict:
    """The quarantine row of a file rejected from the listing (never read, so no sha256)."""
    row = _row(entry.image_id, entry.size)
    row["quarantine_stage"], row["quarantine_reason"] = STAGE, entry.problem[:500]
    return row


def ingest_file(image_id: str, content: bytes, max_pixels: int = decode.MAX_PIXELS) -> dict:
    content = bytes(content or b"")
    row = _row(image_id, len(content), hashlib.sha256(content).hexdigest())
    try:
        if not decode.has_image_extension(image_id):
            raise decode.BadImage("unsupported_extension", image_id.rsplit("/", 1)[-1])
        info = decode.inspect(content, max_pixels=max_pixels)
    except decode.BadImage as e:
        row["quarantine_stage"], row["quarantine_reason"] = STAGE, e.reason[:500]
        return row
    row.update(width=info.width, height=info.height, format=info.format, content=content,
               orientation_ok=getattr(info, "orientation_ok", True))
    return row


def ingest_batch(files: pd.DataFrame, max_pixels: int = decode.MAX_PIXELS) -> pd.DataFrame:
    """`files`: `image_id` and `content` (null: the listed file was gone when it was read)."""
    rows = []
    for image_id, content in zip(files["image_id"], files["content"]):
        if content is None:
            rows.append(rejected(inputs.Listed(image_id, 0, "vanished: listed, but gone before it was read")))
        else:
            rows.append(ingest_file(image_id, content, max_pixels))
    return pd.DataFrame(rows, columns=COLUMNS)


def read_and_ingest_batch(files: pd.DataFrame, partition_dir: str, max_pixels: int = decode.MAX_PIXELS) -> pd.DataFrame:
    """`files`: `image_id` of files of the local directory `partition_dir`, read here."""
    rows = []
    for image_id in files["image_id"]:
        try:
            content = inputs.read_local(f"{partition_dir.rstrip('/')}/{image_id}")
        except OSError as e:  # vanished or unreadable since it was listed
            rows.append(rejected(inputs.Listed(image_id, 0, f"unreadable: {e.strerror or type(e).__name__}")))
            continue
        rows.append(ingest_file(image_id, content, max_pixels))
    return pd.DataFrame(rows, columns=COLUMNS)

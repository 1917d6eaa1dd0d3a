"""The input partition: which files it holds, and which of them are read.

Every decision here is made from the listing (name, size, kind) before a byte is read, so a video,
a FIFO, a link out of the partition or a name that is not UTF-8 never reaches a reader; each such
entry becomes one quarantine row with a stable reason code:

  unsupported_extension  the name has none of decode.EXTENSIONS
  empty_file             0 bytes
  too_large              more than MAX_FILE_BYTES (Spark cannot read a file over 2 GiB at all)
  invalid_name           the name is not UTF-8; its image_id escapes the bytes (backslashreplace)
  broken_link            a symbolic link to nothing
  link_outside_partition a symbolic link whose target is not inside the partition
  directory_link         a symbolic link to a directory (not followed: its files would be listed twice)
  not_a_regular_file     a FIFO, socket or device
  unreadable_directory   a directory that could not be listed (one row for the directory)

`image_id` is always the exact path relative to the partition, '/'-separated. The same rules serve
Airflow (checkpoints.input_listing, without Spark) and the ingest stage, so both see one listing.
Hidden names (layout.is_listed) are not input files, as for every Hadoop tool.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from imgfeat import decode
from imgfeat.layout import is_listed, listing_digest

# Larger than any real picture we accept (MAX_PIXELS at a few bytes per pixel); far below Spark's 2 GiB.
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Listed:
    image_id: str
    size: int
    problem: str | None = None  # quarantine reason decided from the listing; None: read the file


def check(image_id: str, size: int) -> str | None:
    """The reason a listed regular file is not read, or None."""
    if not decode.has_image_extension(image_id):
        return f"unsupported_extension: {image_id.rsplit('/', 1)[-1][-100:]}"
    if size == 0:
        return "empty_file: 0 bytes"
    if size > MAX_FILE_BYTES:
        return f"too_large: {size} bytes > {MAX_FILE_BYTES}"
    return None


def digest(entries: list[Listed]) -> str:
    """What Airflow compares to tell whether a partition changed since it was ingested."""
    return listing_digest((e.image_id, e.size) for e in entries)


def _name(rel: bytes) -> tuple[str, str | None]:
    try:
        return rel.decode("utf-8"), None
    except UnicodeDecodeError:
        escaped = rel.decode("utf-8", "backslashreplace")
        return escaped, "invalid_name: the file name is not UTF-8"


def _inside(path: bytes, real_root: bytes) -> bool:
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(b"/") + b"/")


def list_local(part: str) -> list[Listed] | None:
    """Every input file of a local partition directory (None when it does not exist)."""
    root = os.fsencode(part)
    if not os.path.isdir(root):
        return None
    real_root = os.path.realpath(root)
    out = []
    def unreadable(e: OSError) -> None:  # a directory that cannot be listed is not silently skipped
        rel, problem = _name(os.path.relpath(e.filename, root))
        out.append(Listed(rel, 0, problem or f"unreadable_directory: {e.strerror}"))

    # os.walk does not descend into directory links (followlinks=False); they are listed as entries.
    for dirpath, dirs, files in os.walk(root, onerror=unreadable):
        rel_dir = os.path.relpath(dirpath, root)
        rel = (lambda n: n) if rel_dir == b"." else (lambda n, d=rel_dir: d + b"/" + n)
        kept = []
        for d in dirs:
            if not is_listed(os.fsdecode(d)):
                continue
            if os.path.islink(os.path.join(dirpath, d)):
                files.append(d)  # a link to a directory: one entry, not a tree
            else:
                kept.append(d)
        dirs[:] = kept
        for f in files:
            if is_listed(os.fsdecode(f)):
                out.append(_local_entry(os.path.join(dirpath, f), rel(f), real_root))
    return sorted(out, key=lambda e: e.image_id)


def _local_entry(path: bytes, rel: bytes, real_root: bytes) -> Listed:
    image_id, problem = _name(rel)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(path)
        except OSError:
            return Listed(image_id, 0, problem or "broken_link: the link's target does not exist")
        if stat.S_ISDIR(st.st_mode):
            return Listed(image_id, 0, problem or "directory_link: links to directories are not followed")
        if not _inside(path, real_root):
            return Listed(image_id, st.st_size, problem or "link_outside_partition: the link's target is "
                                                            "not inside the partition")
    if not stat.S_ISREG(st.st_mode):
        return Listed(image_id, 0, problem or "not_a_regular_file: a FIFO, socket or device")
    return Listed(image_id, st.st_size, problem or check(image_id, st.st_size))


def list_files(entries: list[tuple[str, int]]) -> list[Listed]:
    """Entries (relative path, size) of a remote file system's regular files, decided by `check`."""
    return sorted((Listed(i, s, check(i, s)) for i, s in entries), key=lambda e: e.image_id)


def read_local(path: str) -> bytes:
    """The bytes of a listed local file (a link's target stays inside the partition: see list_local)."""
    with open(os.fsencode(path), "rb") as f:
        return f.read(MAX_FILE_BYTES + 1)

"""Run parameters and their validation, shared by the DAG, the stage apps and the CLI.

A bad value raises `ParamError` whose message starts with the parameter's name, and every caller
validates before it starts any Spark job.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from urllib.parse import urlparse

DEFAULTS = {
    "score_threshold": 0.3,
    "code_bits": 64,
    "engine": "openvino",
    "batch_size": 16,
    # A stage fails when more than this share of the images it infers fail inference (and more than
    # one): a broken engine must fail the run, not quarantine the whole partition.
    "max_inference_failures": 0.05,
    # After a publish, the intermediate checkpoints (ingest to embed) of partitions published more
    # than this many days ago are deleted (0: kept for ever); see imgfeat/spark/retention.py.
    "keep_checkpoints_days": 30,
}
# The readiness gate before ingest (wait_for_partition, README "Daily runs"): the marker file a
# producer writes last ("" = none: wait for a quiet listing instead), seconds.
READY_DEFAULTS = {
    "ready_marker": "_SUCCESS",
    "quiet_period_s": 900,
    "poke_interval_s": 300,
    "wait_timeout_s": 12 * 3600,
    # Late files: scheduled runs look back this many days before their partition and revisit the
    # partitions whose input gained or changed files since their ingest (0: off).
    "lookback_days": 3,
}
MAX_LOOKBACK_DAYS = 90
# The run parameters that shape each stage's checkpoint (recorded in its `_stage.json`): a checkpoint
# made with other values is recomputed, and every later stage with it (through upstream_commit).
# `weights` is a digest of the model weights; publish follows embed.
SHAPING = {
    "ingest": (),
    "detect": ("engine", "score_threshold", "weights", "reuse", "code_bits"),
    "crop": (),
    "embed": ("engine", "code_bits", "weights"),
    "publish": (),
}
# These shape detect only through the rows it marked as reused (looked up by a model name that
# names the code): a detect checkpoint without reused rows holds the same values whatever they are.
REUSE_ONLY = ("reuse", "code_bits")
URI_SCHEMES = ("hdfs", "file", "webhdfs", "viewfs", "s3a", "abfs", "abfss", "gs")
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
MIN_CODE_BITS, MAX_CODE_BITS = 8, 1024


def shaping(stage: str, values) -> dict:
    """The values of `stage`'s shaping parameters in `values` (parsed stage arguments)."""
    return {k: getattr(values, k) for k in SHAPING[stage]}


def changed(stage: str, meta: dict, asked: dict) -> list[tuple[str, object, object]]:
    """(name, value the checkpoint was made with, value asked) of each shaping parameter that differs."""
    made = meta.get("params") or {}
    out = []
    for name, value in asked.items():
        if stage == "detect" and name in REUSE_ONLY and meta.get("reused") == 0 and "params" in meta:
            continue
        if made.get(name, "(not recorded)") != value:
            out.append((name, made.get(name, "(not recorded)"), value))
    return out


class ParamError(ValueError):
    def __init__(self, name: str, problem: str):
        super().__init__(f"{name}: {problem}")
        self.name = name


def partition_date(value: str, name: str = "partition_date") -> str:
    value = str(value or "").strip()
    if not re.match(DATE_PATTERN, value):
        raise ParamError(name, f"expected a date YYYY-MM-DD, got {value!r}")
    try:
        dt.date.fromisoformat(value)
    except ValueError as e:
        raise ParamError(name, f"{value!r} is not a calendar date ({e})") from None
    return value


def partition_dates(value, name: str) -> list[str]:
    """Comma-separated partition dates ("" for none), sorted, without repeats."""
    return sorted({partition_date(v, name) for v in str(value or "").split(",") if v.strip()})


def is_uri(root: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", root))


def local_path(path: str) -> str | None:
    """The local path of `path` (a plain path or a file: URI), or None when it is on a remote file system."""
    if path.startswith("file:"):
        return "/" + path.removeprefix("file:").lstrip("/")
    return None if is_uri(path) else path


def allowed_roots(environ=os.environ) -> list[str]:
    """IMGFEAT_ALLOWED_ROOTS: comma-separated prefixes (paths or URIs) that every input and
    warehouse root must live under; unset: any root. Platform teams set it so that a UI trigger
    cannot point the pipeline at someone else's data."""
    return [r.strip().rstrip("/") for r in environ.get("IMGFEAT_ALLOWED_ROOTS", "").split(",") if r.strip()]


def _check_allowed(value: str, name: str) -> str:
    allowed = allowed_roots()
    if allowed and not any(value == a or value.startswith(a + "/") for a in allowed):
        raise ParamError(name, f"{value!r} is outside the allowed roots ({', '.join(allowed)})")
    return value


def root(value: str, name: str) -> str:
    """A local directory path or a Hadoop URI; never relative traversal; under an allowed root."""
    value = str(value or "").strip()
    if not value:
        raise ParamError(name, "is empty")
    if ".." in value.split("/"):
        raise ParamError(name, f"{value!r} contains '..'")
    if is_uri(value):
        parsed = urlparse(value)
        if parsed.scheme not in URI_SCHEMES:
            raise ParamError(name, f"unsupported scheme {parsed.scheme!r} in {value!r} (use one of {', '.join(URI_SCHEMES)})")
        if parsed.scheme == "hdfs" and not parsed.netloc:
            raise ParamError(name, f"{value!r} names no NameNode (hdfs://HOST:PORT/path)")
        return _check_allowed(value.rstrip("/"), name)
    if not value.startswith("/"):
        value = os.path.abspath(value)
    return _check_allowed(value.rstrip("/") or "/", name)


def input_root(value: str, name: str = "input_root") -> str:
    value = root(value, name)
    if not is_uri(value) and not os.path.isdir(value):
        raise ParamError(name, f"{value!r} is not a directory")
    return value


def warehouse_root(value: str, name: str = "warehouse_root") -> str:
    value = root(value, name)
    if not is_uri(value):
        existing = value
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise ParamError(name, f"{existing!r} is a file, not a directory")
        if not os.access(existing, os.W_OK):
            raise ParamError(name, f"{existing!r} is not writable")
    return value


EVENT_KEYS = ("partition_date", "warehouse_root")  # the `extra` of the features Asset's events


def asset_event_partitions(extras) -> list[tuple[str, str]]:
    """(warehouse_root, partition_date) named by Asset events' `extra` dicts, validated, sorted by
    date, without repeats.

    publish emits {"partition_date": "YYYY-MM-DD", "warehouse_root": <absolute root>}; an event
    lacking either (an event posted by hand, say) or carrying a bad value raises ParamError naming
    the key, so a consumer refuses the run before it reads or writes anything."""
    found = set()
    for extra in extras:
        extra = extra if isinstance(extra, dict) else {}
        for name in EVENT_KEYS:
            value = extra.get(name)
            if value is None:
                raise ParamError(name, f"missing from the Asset event's extra (keys: {sorted(map(str, extra))!r})")
            if not isinstance(value, str):
                raise ParamError(name, f"expected a string in the Asset event's extra, got {type(value).__name__}")
        date = partition_date(extra["partition_date"])
        root_value = extra["warehouse_root"].strip()
        if not is_uri(root_value) and not root_value.startswith("/"):
            raise ParamError("warehouse_root", f"{root_value!r} in the Asset event's extra is not an absolute path or URI")
        found.add((warehouse_root(root_value), date))
    return sorted(found, key=lambda wd: (wd[1], wd[0]))


def score_threshold(value, name: str = "score_threshold") -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ParamError(name, f"expected a number in (0, 1), got {value!r}") from None
    if not 0.0 < x < 1.0:
        raise ParamError(name, f"expected a number in (0, 1), got {x}")
    return x


def share(value, name: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ParamError(name, f"expected a number in [0, 1], got {value!r}") from None
    if not 0.0 <= x <= 1.0:
        raise ParamError(name, f"expected a number in [0, 1], got {x}")
    return x


def similarity(value, name: str = "duplicate_similarity") -> float:
    """A cosine in [-1, 1] (-1 keeps every match within the radius)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ParamError(name, f"expected a number in [-1, 1], got {value!r}") from None
    if not -1.0 <= x <= 1.0:
        raise ParamError(name, f"expected a number in [-1, 1], got {x}")
    return x


def code_bits(value, name: str = "code_bits") -> int:
    try:
        k = int(str(value))
    except ValueError:
        raise ParamError(name, f"expected an integer, got {value!r}") from None
    if k % 8 or not MIN_CODE_BITS <= k <= MAX_CODE_BITS:
        raise ParamError(name, f"expected a multiple of 8 in [{MIN_CODE_BITS}, {MAX_CODE_BITS}], got {k}")
    return k


def engine(value: str, name: str = "engine") -> str:
    from imgfeat.engines import ENGINES

    if value not in ENGINES:
        raise ParamError(name, f"unknown engine {value!r}, expected one of {', '.join(ENGINES)}")
    return value


def boolean(value, name: str = "reuse") -> bool:
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v not in ("true", "false"):
        raise ParamError(name, f"expected true or false, got {value!r}")
    return v == "true"


def positive_int(value, name: str) -> int:
    return _integer(value, name, 1, "a positive integer")


# The training sample is held on the driver: this many crops x 10 views x 1280 floats (512 MB).
MAX_CROPS = 10_000


def max_crops(value, name: str = "max_crops") -> int:
    n = positive_int(value, name)
    if n > MAX_CROPS:
        raise ParamError(name, f"at most {MAX_CROPS} (the driver holds the sample's descriptors), got {n}")
    return n


def non_negative_int(value, name: str) -> int:
    return _integer(value, name, 0, "an integer >= 0")


def _integer(value, name: str, minimum: int, expected: str) -> int:
    try:
        n = int(str(value))
    except ValueError:
        raise ParamError(name, f"expected {expected}, got {value!r}") from None
    if n < minimum:
        raise ParamError(name, f"expected {expected}, got {n}")
    return n


def ready_marker(value, name: str = "ready_marker") -> str:
    """The name of the marker file a producer writes into a complete partition, or "" for none.
    A plain hidden name (`_x` or `.x`): a listed name would be read by ingest as an input file."""
    from imgfeat.layout import is_listed

    value = "" if value is None else str(value).strip()
    if not value:
        return ""
    if not re.match(r"^[A-Za-z0-9._-]{1,255}$", value) or value in (".", ".."):
        raise ParamError(name, f"expected a file name (letters, digits, '.', '_', '-') or empty, got {value!r}")
    if is_listed(value):
        raise ParamError(name, f"{value!r} would be read as an input file: use a hidden name "
                               "(starting with '_' or '.'), or empty for no marker")
    return value


def lookback_days(value, name: str = "lookback_days") -> int:
    days = non_negative_int(value, name)
    if days > MAX_LOOKBACK_DAYS:
        raise ParamError(name, f"expected at most {MAX_LOOKBACK_DAYS} days, got {days}")
    return days


def seconds(value, name: str, positive: bool = False) -> float:
    """A duration in seconds: a number >= 0 (> 0 with `positive`)."""
    expected = "a number of seconds " + ("> 0" if positive else ">= 0")
    if isinstance(value, bool):
        raise ParamError(name, f"expected {expected}, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ParamError(name, f"expected {expected}, got {value!r}") from None
    if x != x or x in (float("inf"), float("-inf")) or x < 0 or (positive and x == 0):
        raise ParamError(name, f"expected {expected}, got {value!r}")
    return x
